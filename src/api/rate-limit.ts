import rateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { Redis } from 'ioredis';
import { ApiError, ErrorCode } from './errors.ts';

/** The per-tenant request limit, and where it is counted (docs/scaling.md, "Rate limits across replicas"). */
export interface RateLimitSettings {
  /** RELAY_RATE_LIMIT_PER_MIN: requests per tenant per 60 s window. */
  perMin: number;
  /** RELAY_REDIS_URL: count in this Redis, one count for every replica. Unset: each process counts its own. */
  redisUrl?: string;
  /**
   * RELAY_RATE_LIMIT_REQUIRED: with Redis unreachable, answer 503 `rate_limit_unavailable` (and
   * /readyz 503) instead of serving uncounted. Default false: the limit is not worth an outage.
   */
  required?: boolean;
}

export interface RateLimiterDeps {
  log: FastifyBaseLogger;
  /** Counts one request whose count Redis could not make (`relay_rate_limit_store_errors_total`). */
  onStoreError: () => void;
}

export interface RateLimiter {
  /** Registers @fastify/rate-limit on `api`'s routes, keyed by the request's tenant. */
  register(api: FastifyInstance, key: (req: FastifyRequest) => string): Promise<void>;
  /** /readyz's `rate_limit_store` check; null when the limit is counted per process. */
  readiness(): Promise<{ ok: boolean; detail: string }> | null;
  /** Closes the Redis connection (on shutdown). */
  close(): Promise<void>;
}

const WINDOW_MS = 60_000;
const WARN_EVERY_MS = 60_000;
const RETRY_AFTER_S = '5';
/** A dead or hung Redis must not stall requests: connect, command and wait bounds, no queueing. */
const CONNECT_TIMEOUT_MS = 1000;
const COMMAND_TIMEOUT_MS = 500;

/** The URL as it may be logged: scheme, host, port and database, never a user or password. */
export function redactRedisUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname === '/' ? '' : u.pathname}`;
}

/** An error as the warning shows it: its code and message, any URL credentials cut out. */
function describe(err: unknown): { code?: string; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  const message = String(e?.message ?? err).replace(/\/\/[^@/\s]*@/g, '//').slice(0, 300);
  return typeof e?.code === 'string' ? { code: e.code, message } : { message };
}

/** Builds the limiter: per process without a Redis URL, else counted in Redis by the library's own store. */
export async function createRateLimiter(settings: RateLimitSettings, deps: RateLimiterDeps): Promise<RateLimiter> {
  const common = {
    max: settings.perMin,
    timeWindow: WINDOW_MS,
    hook: 'onRequest' as const,
    errorResponseBuilder: (_req: FastifyRequest, ctx: { after: string }) => new ApiError(429, ErrorCode.RateLimited, `too many requests for this tenant; retry in ${ctx.after}`),
  };
  if (!settings.redisUrl) {
    return {
      register: async (api, key) => void (await api.register(rateLimit, { ...common, keyGenerator: key })),
      readiness: () => null,
      close: async () => undefined,
    };
  }

  const required = settings.required === true;
  const target = redactRedisUrl(settings.redisUrl);
  let lastWarnAt = -Infinity;
  const warn = (err: unknown) => {
    const now = Date.now();
    if (now - lastWarnAt < WARN_EVERY_MS) return;
    lastWarnAt = now;
    const outcome = required ? 'requests get 503 rate_limit_unavailable (RELAY_RATE_LIMIT_REQUIRED=true)' : 'requests are served uncounted';
    // Under `error`, not `err`: pino's err serializer would make it an empty stack of type Object.
    deps.log.warn({ redis: target, error: describe(err) }, `rate-limit store unreachable: ${outcome}; logged at most once a minute, counted in relay_rate_limit_store_errors_total`);
  };

  const redis = new Redis(settings.redisUrl, {
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    // While disconnected a command fails at once instead of waiting in a queue for a reconnect,
    // and one in flight when the connection drops fails with it.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Reconnects forever, at most every 2 s: the count resumes once Redis is back.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  // Connection errors (each failed reconnect) go to the same once-a-minute warning.
  redis.on('error', warn);
  // Give it a moment to connect, so the first requests are counted; never refuse to start for it.
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, CONNECT_TIMEOUT_MS);
    redis.once('ready', done);
  });

  const inner = new RedisStore(false, false, redis, 'relay:rate-limit:');
  /** The library's Redis store, with each failure counted, warned about, and answered as configured. */
  class CountedRedisStore implements FastifyRateLimitStore {
    incr(key: string, done: (err: Error | null, result?: { current: number; ttl: number }) => void, timeWindow = WINDOW_MS, max = settings.perMin): void {
      inner.incr(
        key,
        (err, result) => {
          if (!err) return done(null, result);
          deps.onStoreError();
          warn(err);
          // Not required: the library's skipOnError serves the request uncounted.
          done(required ? new ApiError(503, ErrorCode.RateLimitUnavailable, 'the rate-limit store is unreachable; retry later', { 'retry-after': RETRY_AFTER_S }) : err);
        },
        timeWindow,
        max,
      );
    }
    child(): FastifyRateLimitStore {
      return this;
    }
  }

  return {
    register: async (api, key) => void (await api.register(rateLimit, { ...common, keyGenerator: key, store: CountedRedisStore as FastifyRateLimitStoreCtor, skipOnError: !required })),
    readiness: async () => {
      const up = redis.status === 'ready' && (await redis.ping().then(() => true, () => false));
      return { ok: up || !required, detail: up ? 'ok' : required ? 'unreachable' : 'unreachable (failing open)' };
    },
    close: async () => {
      redis.off('error', warn);
      redis.on('error', () => undefined);
      if (redis.status === 'ready') await redis.quit().catch(() => undefined);
      redis.disconnect();
    },
  };
}

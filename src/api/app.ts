import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { registerBodyParser } from './body-parser.ts';
import type { ApiDeps } from './context.ts';
import { ApiError, ErrorCode } from './errors.ts';
import { registerCors } from './cors.ts';
import { frameworkError, installErrorHandler } from './error-handler.ts';
import { registerOpenApi } from './openapi.ts';
import { createRateLimiter } from './rate-limit.ts';
import { Health, Readiness } from './responses.ts';
import { documented } from './route-docs.ts';
import { erasureRoute } from './routes/erasure.ts';
import { exportRoute } from './routes/export.ts';
import { memoryItemRoutes } from './routes/memory-item.ts';
import { memoryListRoute } from './routes/memory-list.ts';
import { memoryQueryRoute } from './routes/memory-query.ts';
import { memoryWriteRoute } from './routes/memory-write.ts';

/** Constant-time comparison of a presented bearer token with the expected one. */
function bearerMatches(header: string | undefined, expected: string): boolean {
  const m = /^bearer +(\S+)$/i.exec(header?.trim() ?? '');
  if (!m) return false;
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export interface AppOptions extends ApiDeps {
  /** Fastify's logger option: options (see `logOptions`), or false. */
  logger?: FastifyServerOptions['logger'];
  /** Or a pino logger to use as it is (tests capture the log with it). */
  loggerInstance?: FastifyBaseLogger;
  /** True once a shutdown's drain has begun: /readyz answers 503 so the balancer takes this replica out (server.ts). */
  draining?: () => boolean;
}

/** Builds the HTTP app without listening; `server.ts` listens, tests use inject() or a real port. */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.loggerInstance ? { loggerInstance: opts.loggerInstance } : { logger: opts.logger ?? false }),
    bodyLimit: opts.limits.bodyLimitBytes,
    // A user id (up to 256 characters, percent-encoded up to 9 bytes each) fits in a path parameter.
    routerOptions: { maxParamLength: 2400 },
    frameworkErrors: frameworkError,
    // Never log the Authorization header (pino's default request serializer logs no headers).
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : crypto.randomUUID();
    },
  });
  app.decorateRequest('principal', null);
  app.decorateRequest('acceptedAt', 0);
  app.addHook('onRequest', async (req, reply) => {
    req.acceptedAt = performance.now();
    // On the raw response, so hijacked (SSE) replies are counted too; the route is the
    // pattern, never the URL (which can hold ids).
    reply.raw.once('close', () => {
      const route = req.routeOptions.url ?? 'unmatched';
      opts.metrics.api.request(route, reply.raw.statusCode, (performance.now() - req.acceptedAt) / 1000, req.principal?.tenantId ?? null);
    });
  });
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  installErrorHandler(app);
  registerBodyParser(app);
  await registerCors(app, opts.limits.corsOrigins);
  await registerOpenApi(app);
  // Per process, or counted in Redis for every replica (RELAY_REDIS_URL); its connection closes with the app.
  const limiter = await createRateLimiter(
    { perMin: opts.limits.rateLimitPerMin, redisUrl: opts.limits.redisUrl, required: opts.limits.rateLimitRequired },
    { log: app.log, onStoreError: opts.metrics.api.rateLimitStoreError },
  );
  app.addHook('onClose', () => limiter.close());

  const health = documented({ operationId: 'getHealth', summary: 'The process is up', tag: 'operations', bearer: 'none', answers: { 200: { description: 'up', json: Health } }, errors: [] });
  app.get('/healthz', health, async () => ({ status: 'ok' }));

  const readiness = documented({
    operationId: 'getReadiness',
    bearer: 'none',
    summary: 'Ready to serve: store reachable, migrations current, master key right, models loaded',
    tag: 'operations',
    answers: { 200: { description: 'ready', json: Readiness }, 503: { description: 'not ready (store unreachable, schema behind, wrong master key, a model not loaded, the rate-limit Redis unreachable with RELAY_RATE_LIMIT_REQUIRED=true, draining for a shutdown)', json: Readiness } },
    errors: [],
  });
  app.get('/readyz', readiness, async (_req, reply) => {
    const r = await opts.store.readiness();
    const models = Object.entries(opts.models ?? {}).map(([name, m]) => [name, m.check()] as const);
    // The master key must open the key catalog, or every data request would fail (a wrong key).
    const masterKey = !opts.masterKeyCheck ? null : r.ok ? await opts.masterKeyCheck().catch(() => ({ ok: false, detail: 'unchecked' })) : { ok: false, detail: 'unchecked' };
    // The Redis of the rate limit: unreachable is not ready only with RELAY_RATE_LIMIT_REQUIRED=true (else the limit fails open).
    const rateLimitStore = await limiter.readiness();
    // Shutting down: still serving, but the balancer should send nothing new (RELAY_DRAIN_MS).
    const draining = opts.draining?.() ?? false;
    const ok = r.ok && models.every(([, m]) => m.ok) && masterKey?.ok !== false && rateLimitStore?.ok !== false && !draining;
    const body: Readiness = {
      status: ok ? 'ready' : 'not_ready',
      checks: {
        store: r.error ? 'unreachable' : 'ok',
        migrations: r.schemaVersion === r.expectedVersion ? 'current' : `at ${r.schemaVersion}, expected ${r.expectedVersion}`,
        // The embedder (and its model, if any) is loaded before the app is built.
        embedder: opts.memory.embedderId,
        ...(masterKey ? { master_key: masterKey.detail } : {}),
        ...Object.fromEntries(models.map(([name, m]) => [name, m.detail])),
        ...(rateLimitStore ? { rate_limit_store: rateLimitStore.detail } : {}),
        ...(draining ? { shutdown: 'draining' } : {}),
      },
    };
    return reply.code(ok ? 200 : 503).send(body);
  });

  const metricsDoc = documented({
    operationId: 'getMetrics',
    summary: 'Prometheus metrics (docs/observability.md)',
    tag: 'operations',
    bearer: 'optional',
    description: 'Needs the metrics bearer token when RELAY_METRICS_TOKEN is set (not a memory API token).',
    answers: { 200: { description: 'Prometheus text exposition format', content: { [opts.metrics.contentType]: { type: 'string' } } } },
    errors: [ErrorCode.Unauthorized, ErrorCode.NotFound],
  });
  app.get('/metrics/memory', metricsDoc, async (req, reply) => {
    if (!opts.metrics.enabled) throw new ApiError(404, ErrorCode.NotFound, 'metrics are off (RELAY_METRICS=off)');
    if (opts.metricsToken && !bearerMatches(req.headers.authorization, opts.metricsToken)) {
      throw new ApiError(401, ErrorCode.Unauthorized, 'this endpoint needs the metrics bearer token', { 'www-authenticate': 'Bearer realm="metrics"' });
    }
    reply.header('content-type', opts.metrics.contentType);
    return opts.metrics.render();
  });

  // The memory API: every route needs a token, then counts against its tenant's rate limit.
  await app.register(async (api) => {
    api.addHook('onRequest', async (req) => {
      req.principal = await opts.verifier.verify(req.headers.authorization);
    });
    await limiter.register(api, (req) => `tenant:${req.principal?.tenantId ?? ''}`);
    for (const route of [memoryWriteRoute, memoryQueryRoute, memoryItemRoutes, memoryListRoute, erasureRoute, exportRoute]) route(api, opts);
  });

  return app;
}

import { z } from 'zod';

const intIn = (min: number, max: number, dflt: number) => z.coerce.number().int().min(min).max(max).default(dflt);
const bool = (dflt: boolean) =>
  z.enum(['true', 'false', '1', '0', 'yes', 'no']).default(dflt ? 'true' : 'false').transform((v) => ['true', '1', 'yes'].includes(v));
const pgUrl = z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL');

/** Every environment variable the service reads; README's configuration table lists the same. */
export const EnvSchema = z.object({
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: intIn(0, 65535, 8080),
  RELAY_DATA_DIR: z.string().min(1).default('./.relay'),
  DATABASE_URL: pgUrl.optional(),
  RELAY_MIGRATE_URL: pgUrl.optional(),
  RELAY_MIGRATE_ON_START: bool(true),
  RELAY_APP_ROLE: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier').default('app_user'),
  RELAY_EMBED_DIM: intIn(1, 16000, 384),
  RELAY_VECTOR_TRANSFORM: z.enum(['on', 'off']).default('on'),
  RELAY_DB_POOL_MAX: intIn(1, 1000, 10),
  RELAY_STATEMENT_TIMEOUT_MS: intIn(1, 3_600_000, 5000),
  RELAY_DB_POOLER: z.enum(['none', 'transaction']).default('none'),
  RELAY_DB_LISTEN_URL: pgUrl.optional(),
  RELAY_READ_DATABASE_URL: pgUrl.optional(),
  RELAY_READ_WAIT_MS: intIn(0, 60_000, 200),
  RELAY_MAX_STANDBY_LAG_MS: intIn(1, 3_600_000, 5000),
  RELAY_SEARCH_EXACT_MAX: intIn(0, 10_000_000, 2000),
  RELAY_HNSW_EF_SEARCH: intIn(1, 1000, 100),
  RELAY_HNSW_EF_SEARCH_SHARED: intIn(1, 1000, 150),
  RELAY_HNSW_MAX_SCAN_TUPLES: intIn(1, 100_000_000, 20000),
  RELAY_EMBEDDER: z.enum(['hash', 'openai', 'onnx']).default('hash'),
  RELAY_EMBED_BATCH_SIZE: intIn(1, 2048, 64),
  RELAY_EMBED_TIMEOUT_MS: intIn(1, 600_000, 10_000),
  RELAY_EMBED_RETRIES: intIn(0, 10, 3),
  RELAY_OPENAI_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.openai.com/v1'),
  RELAY_OPENAI_API_KEY: z.string().min(1).optional(),
  RELAY_OPENAI_MODEL: z.string().min(1).default('text-embedding-3-small'),
  RELAY_ONNX_MODEL_DIR: z.string().min(1).optional(),
  RELAY_CHUNK_MAX_CHARS: intIn(50, 100_000, 1000),
  RELAY_CHUNK_OVERLAP_CHARS: intIn(0, 50_000, 100),
  RELAY_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  RELAY_JWT_PUBLIC_KEY_FILE: z.string().min(1).optional(),
  RELAY_JWT_JWKS_FILE: z.string().min(1).optional(),
  RELAY_JWT_ISSUER: z.string().min(1).optional(),
  RELAY_JWT_AUDIENCE: z.string().min(1).optional(),
  RELAY_RATE_LIMIT_PER_MIN: intIn(1, 10_000_000, 6000),
  RELAY_REDIS_URL: z.url({ protocol: /^rediss?$/, hostname: /^\S+$/, error: 'must be a redis:// or rediss:// URL, such as redis://127.0.0.1:6379' }).optional(),
  RELAY_RATE_LIMIT_REQUIRED: bool(false),
  RELAY_BODY_LIMIT_BYTES: intIn(1024, 64 * 1024 * 1024, 1024 * 1024),
  RELAY_SSE_HEARTBEAT_MS: intIn(100, 3_600_000, 15_000),
  RELAY_SWEEP_INTERVAL_S: intIn(1, 86_400, 60),
  RELAY_SHUTDOWN_GRACE_MS: intIn(0, 600_000, 10_000),
  RELAY_DRAIN_MS: intIn(0, 600_000, 5000),
  RELAY_KEY_EVENT_GRACE_MS: intIn(0, 300_000, 1000),
  RELAY_RERANK: z.enum(['on', 'off']).default('on'),
  RELAY_RERANKER: z.enum(['lexical', 'onnx', 'http']).default('lexical'),
  RELAY_RERANK_PERCENT: intIn(0, 100, 100),
  RELAY_RERANK_BUDGET_MS: intIn(1, 60_000, 100),
  RELAY_RERANK_CANDIDATES: intIn(1, 20, 4),
  RELAY_RERANK_BATCH: intIn(1, 1024, 16),
  RELAY_RERANK_MODEL_DIR: z.string().min(1).optional(),
  RELAY_RERANK_MAX_LENGTH: intIn(8, 8192, 512),
  RELAY_RERANK_EXECUTION_PROVIDERS: z.string().regex(/^[a-z]+(,[a-z]+)*$/, 'a comma-separated list such as cuda,cpu').default('cpu'),
  RELAY_RERANK_THREADS: intIn(0, 256, 0),
  RELAY_RERANK_QUANTIZED: z.enum(['on', 'off']).default('off'),
  RELAY_RERANK_URL: z.url({ protocol: /^https?$/ }).optional(),
  RELAY_RERANK_API_KEY: z.string().min(1).optional(),
  RELAY_RERANK_MODEL: z.string().min(1).optional(),
  RELAY_RERANK_FORMAT: z.enum(['tei', 'cohere']).default('tei'),
  RELAY_RERANK_TIMEOUT_MS: intIn(1, 600_000, 2000),
  RELAY_RERANK_BREAKER_FAILURES: intIn(1, 1000, 5),
  RELAY_RERANK_BREAKER_COOLDOWN_MS: intIn(1, 3_600_000, 30_000),
  RELAY_METRICS: z.enum(['on', 'off']).default('on'),
  RELAY_METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  RELAY_METRICS_TENANT_LABELS: intIn(0, 1000, 0),
  RELAY_RELEASE: z.string().min(1).default('dev'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  RELAY_CORS_ORIGINS: z
    .string()
    .regex(/^\s*(\*|https?:\/\/[^\s,/]+)(\s*,\s*https?:\/\/[^\s,/]+)*\s*$/, 'must be * or a comma-separated list of origins such as https://app.example.com')
    .optional(),
  RELAY_FAULTS: z.string().optional(),
  NODE_ENV: z.string().optional(),
});

/**
 * Debug-only faults a release can be made to show (RELAY_FAULTS), so the canary controller's
 * tests can drive a candidate bad for real: slow first values, slow searches, refusals by the
 * database's RLS, failed streams. Refused when NODE_ENV=production.
 */
export interface Faults {
  /** Every query waits this long before its first result (so TTFV shows it). */
  ttfvDelayMs: number;
  /** Every search spends this much longer in the database (`pg_sleep`, so the ANN histogram shows it). */
  annDelayMs: number;
  /** Share of queries (0..1) that run a statement the database's RLS refuses, and fail with it. */
  rlsErrorRate: number;
  /** Share of queries (0..1) whose stream fails (`error`). */
  sseErrorRate: number;
  /** Every Nth query of this process fails its stream (0: none): a failure rate without chance. */
  sseErrorEvery: number;
}

const FaultsSchema = z
  .object({
    ttfv_delay_ms: z.coerce.number().int().min(0).max(600_000).default(0),
    ann_delay_ms: z.coerce.number().int().min(0).max(600_000).default(0),
    rls_error_rate: z.coerce.number().min(0).max(1).default(0),
    sse_error_rate: z.coerce.number().min(0).max(1).default(0),
    sse_error_every: z.coerce.number().int().min(0).max(1_000_000_000).default(0),
  })
  .strict();

/** `ttfv_delay_ms=2000,sse_error_rate=0.01` → Faults; a bad or unknown key is a ConfigError. */
export function parseFaults(spec: string, nodeEnv: string | undefined): Faults | undefined {
  if (nodeEnv === 'production') throw new ConfigError('invalid configuration:\n  RELAY_FAULTS: a test switch, refused when NODE_ENV=production');
  const pairs: Record<string, string> = {};
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([a-z_]+)=([^=\s]+)$/.exec(part);
    if (!m) throw new ConfigError(`invalid configuration:\n  RELAY_FAULTS: "${part}" is not key=value`);
    pairs[m[1]!] = m[2]!;
  }
  const parsed = FaultsSchema.safeParse(pairs);
  if (!parsed.success) {
    throw new ConfigError(`invalid configuration:\n${parsed.error.issues.map((i) => `  RELAY_FAULTS ${i.path.join('.') || ''}: ${i.message}`).join('\n')}`);
  }
  const f = parsed.data;
  const faults = { ttfvDelayMs: f.ttfv_delay_ms, annDelayMs: f.ann_delay_ms, rlsErrorRate: f.rls_error_rate, sseErrorRate: f.sse_error_rate, sseErrorEvery: f.sse_error_every };
  return Object.values(faults).some((v) => v > 0) ? faults : undefined;
}

export type Env = z.infer<typeof EnvSchema>;

export interface Config {
  host: string;
  port: number;
  logLevel: Env['LOG_LEVEL'];
  release: string;
  store:
    | { kind: 'pglite'; dataDir: string }
    | {
        kind: 'pg';
        databaseUrl: string;
        migrateUrl?: string;
        poolMax: number;
        statementTimeoutMs: number;
        /** RELAY_DB_POOLER: `transaction` behind PgBouncer pool_mode = transaction (docs/scaling.md). */
        pooler: 'none' | 'transaction';
        /** RELAY_DB_LISTEN_URL, else DATABASE_URL: where key events are listened for (a session). */
        listenUrl: string;
        /** RELAY_READ_DATABASE_URL (a hot standby) with RELAY_READ_WAIT_MS and RELAY_MAX_STANDBY_LAG_MS. */
        read?: { url: string; waitMs: number; maxLagMs: number };
      };
  migrateOnStart: boolean;
  appRole: string;
  embeddingDim: number;
  /** RELAY_VECTOR_TRANSFORM: new vectors stored under their scope's keyed orthogonal transform (docs/security.md). */
  vectorTransform: boolean;
  search: { exactMax: number; efSearch: number; efSearchShared: number; maxScanTuples: number };
  embed: EmbedConfig;
  auth: AuthConfig;
  api: ApiConfig;
  rerank: RerankConfig;
  metrics: { enabled: boolean; token?: string; tenantLabels: number };
  /** RELAY_KEY_EVENT_GRACE_MS: while the key events' connection is down, cached keys older than this are loaded afresh. */
  keyEventGraceMs: number;
  /** RELAY_FAULTS (tests only); undefined in any normal run. */
  faults?: Faults;
}

/** How query candidates are reranked (src/rerank, docs/rerank.md). */
export interface RerankConfig {
  /** `off`: never rerank (search order). */
  enabled: boolean;
  provider: 'lexical' | 'onnx' | 'http';
  /** Share of users (0..100, consistent per tenant and user) whose queries are reranked. */
  percent: number;
  /** Past this, the candidate order is kept and the late work cancelled. */
  budgetMs: number;
  /** Candidates fetched per result: top_k × this go to the reranker. */
  candidatesFactor: number;
  batchSize: number;
  onnx: { modelDir?: string; maxLength: number; executionProviders: string[]; threads: number; quantized: boolean };
  http: { url?: string; apiKey?: string; model?: string; format: 'tei' | 'cohere'; timeoutMs: number };
  breaker: { failures: number; cooldownMs: number };
}

/** Which embedder turns text into vectors, and how long text is cut into chunks. */
export interface EmbedConfig {
  kind: 'hash' | 'openai' | 'onnx';
  /** D: every embedder must produce this many dimensions (RELAY_EMBED_DIM). */
  dimensions: number;
  batchSize: number;
  timeoutMs: number;
  retries: number;
  openai: { baseUrl: string; apiKey?: string; model: string };
  onnx: { modelDir?: string };
  chunk: { maxChars: number; overlapChars: number };
}

/** How bearer tokens are verified: an HS256 secret, or a public key / JWKS file (RS256, ES256, EdDSA). */
export interface AuthConfig {
  secret?: string;
  publicKeyFile?: string;
  jwksFile?: string;
  issuer?: string;
  audience?: string;
}

export interface ApiConfig {
  /** Requests per minute per tenant. */
  rateLimitPerMin: number;
  /** RELAY_REDIS_URL: the limit is counted in this Redis, once for every replica; unset: per process. */
  redisUrl?: string;
  /** RELAY_RATE_LIMIT_REQUIRED: Redis unreachable → 503 rate_limit_unavailable instead of serving uncounted. */
  rateLimitRequired: boolean;
  bodyLimitBytes: number;
  heartbeatMs: number;
  sweepIntervalS: number;
  shutdownGraceMs: number;
  /** RELAY_DRAIN_MS: on SIGTERM, how long /readyz says 503 while every request is still served, before the close (0: close at once). */
  drainMs: number;
  /** RELAY_CORS_ORIGINS: browser origins allowed to call the API (`*`: any); empty: no CORS headers. */
  corsOrigins: string[];
}

export class ConfigError extends Error {
  readonly code = 'invalid_config';
}

/** Parses the environment once, failing fast with the name of every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.RELAY_CHUNK_OVERLAP_CHARS >= e.RELAY_CHUNK_MAX_CHARS) {
    throw new ConfigError('invalid configuration:\n  RELAY_CHUNK_OVERLAP_CHARS: must be less than RELAY_CHUNK_MAX_CHARS');
  }
  if (e.RELAY_RERANKER === 'onnx' && !e.RELAY_RERANK_MODEL_DIR) {
    throw new ConfigError('invalid configuration:\n  RELAY_RERANK_MODEL_DIR: required when RELAY_RERANKER=onnx');
  }
  if (e.RELAY_RERANKER === 'http' && !e.RELAY_RERANK_URL) {
    throw new ConfigError('invalid configuration:\n  RELAY_RERANK_URL: required when RELAY_RERANKER=http');
  }
  if (e.RELAY_RATE_LIMIT_REQUIRED && !e.RELAY_REDIS_URL) {
    throw new ConfigError('invalid configuration:\n  RELAY_RATE_LIMIT_REQUIRED: needs RELAY_REDIS_URL (without it the limit is counted per process and is always available)');
  }
  if (e.RELAY_DB_POOLER === 'transaction' && !e.DATABASE_URL) {
    throw new ConfigError('invalid configuration:\n  RELAY_DB_POOLER: transaction needs DATABASE_URL (the server store; the embedded one has no pooler)');
  }
  if (e.RELAY_DB_POOLER === 'transaction' && !e.RELAY_DB_LISTEN_URL) {
    throw new ConfigError(
      'invalid configuration:\n  RELAY_DB_LISTEN_URL: required when RELAY_DB_POOLER=transaction: key events need LISTEN on a session of their own, which a transaction pooler cannot keep; point it at PostgreSQL directly (docs/scaling.md)',
    );
  }
  if (e.RELAY_READ_DATABASE_URL && !e.DATABASE_URL) {
    throw new ConfigError('invalid configuration:\n  RELAY_READ_DATABASE_URL: needs DATABASE_URL (a standby of the server store; the embedded store has none)');
  }
  if (e.RELAY_DB_LISTEN_URL && !e.DATABASE_URL) {
    throw new ConfigError('invalid configuration:\n  RELAY_DB_LISTEN_URL: needs DATABASE_URL (the embedded store listens in-process)');
  }
  if (e.RELAY_EMBEDDER === 'onnx' && !e.RELAY_ONNX_MODEL_DIR) {
    throw new ConfigError('invalid configuration:\n  RELAY_ONNX_MODEL_DIR: required when RELAY_EMBEDDER=onnx');
  }
  if (e.RELAY_EMBEDDER === 'openai' && !e.RELAY_OPENAI_API_KEY && e.RELAY_OPENAI_BASE_URL.startsWith('https://api.openai.com')) {
    throw new ConfigError('invalid configuration:\n  RELAY_OPENAI_API_KEY: required for api.openai.com');
  }
  const faults = e.RELAY_FAULTS ? parseFaults(e.RELAY_FAULTS, e.NODE_ENV) : undefined;
  return {
    faults,
    host: e.HOST,
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    release: e.RELAY_RELEASE,
    store: e.DATABASE_URL
      ? {
          kind: 'pg',
          databaseUrl: e.DATABASE_URL,
          migrateUrl: e.RELAY_MIGRATE_URL,
          poolMax: e.RELAY_DB_POOL_MAX,
          statementTimeoutMs: e.RELAY_STATEMENT_TIMEOUT_MS,
          pooler: e.RELAY_DB_POOLER,
          listenUrl: e.RELAY_DB_LISTEN_URL ?? e.DATABASE_URL,
          read: e.RELAY_READ_DATABASE_URL ? { url: e.RELAY_READ_DATABASE_URL, waitMs: e.RELAY_READ_WAIT_MS, maxLagMs: e.RELAY_MAX_STANDBY_LAG_MS } : undefined,
        }
      : { kind: 'pglite', dataDir: e.RELAY_DATA_DIR },
    migrateOnStart: e.RELAY_MIGRATE_ON_START,
    keyEventGraceMs: e.RELAY_KEY_EVENT_GRACE_MS,
    appRole: e.RELAY_APP_ROLE,
    embeddingDim: e.RELAY_EMBED_DIM,
    vectorTransform: e.RELAY_VECTOR_TRANSFORM === 'on',
    search: { exactMax: e.RELAY_SEARCH_EXACT_MAX, efSearch: e.RELAY_HNSW_EF_SEARCH, efSearchShared: e.RELAY_HNSW_EF_SEARCH_SHARED, maxScanTuples: e.RELAY_HNSW_MAX_SCAN_TUPLES },
    embed: {
      kind: e.RELAY_EMBEDDER,
      dimensions: e.RELAY_EMBED_DIM,
      batchSize: e.RELAY_EMBED_BATCH_SIZE,
      timeoutMs: e.RELAY_EMBED_TIMEOUT_MS,
      retries: e.RELAY_EMBED_RETRIES,
      openai: { baseUrl: e.RELAY_OPENAI_BASE_URL.replace(/\/+$/, ''), apiKey: e.RELAY_OPENAI_API_KEY, model: e.RELAY_OPENAI_MODEL },
      onnx: { modelDir: e.RELAY_ONNX_MODEL_DIR },
      chunk: { maxChars: e.RELAY_CHUNK_MAX_CHARS, overlapChars: e.RELAY_CHUNK_OVERLAP_CHARS },
    },
    auth: {
      secret: e.RELAY_JWT_SECRET,
      publicKeyFile: e.RELAY_JWT_PUBLIC_KEY_FILE,
      jwksFile: e.RELAY_JWT_JWKS_FILE,
      issuer: e.RELAY_JWT_ISSUER,
      audience: e.RELAY_JWT_AUDIENCE,
    },
    api: {
      rateLimitPerMin: e.RELAY_RATE_LIMIT_PER_MIN,
      redisUrl: e.RELAY_REDIS_URL,
      rateLimitRequired: e.RELAY_RATE_LIMIT_REQUIRED,
      bodyLimitBytes: e.RELAY_BODY_LIMIT_BYTES,
      heartbeatMs: e.RELAY_SSE_HEARTBEAT_MS,
      sweepIntervalS: e.RELAY_SWEEP_INTERVAL_S,
      shutdownGraceMs: e.RELAY_SHUTDOWN_GRACE_MS,
      drainMs: e.RELAY_DRAIN_MS,
      corsOrigins: e.RELAY_CORS_ORIGINS ? e.RELAY_CORS_ORIGINS.split(',').map((o) => o.trim()) : [],
    },
    metrics: { enabled: e.RELAY_METRICS === 'on', token: e.RELAY_METRICS_TOKEN, tenantLabels: e.RELAY_METRICS_TENANT_LABELS },
    rerank: {
      enabled: e.RELAY_RERANK === 'on',
      provider: e.RELAY_RERANKER,
      percent: e.RELAY_RERANK_PERCENT,
      budgetMs: e.RELAY_RERANK_BUDGET_MS,
      candidatesFactor: e.RELAY_RERANK_CANDIDATES,
      batchSize: e.RELAY_RERANK_BATCH,
      onnx: {
        modelDir: e.RELAY_RERANK_MODEL_DIR,
        maxLength: e.RELAY_RERANK_MAX_LENGTH,
        executionProviders: e.RELAY_RERANK_EXECUTION_PROVIDERS.split(','),
        threads: e.RELAY_RERANK_THREADS,
        quantized: e.RELAY_RERANK_QUANTIZED === 'on',
      },
      http: {
        url: e.RELAY_RERANK_URL?.replace(/\/+$/, ''),
        apiKey: e.RELAY_RERANK_API_KEY,
        model: e.RELAY_RERANK_MODEL,
        format: e.RELAY_RERANK_FORMAT,
        timeoutMs: e.RELAY_RERANK_TIMEOUT_MS,
      },
      breaker: { failures: e.RELAY_RERANK_BREAKER_FAILURES, cooldownMs: e.RELAY_RERANK_BREAKER_COOLDOWN_MS },
    },
  };
}

import { z } from 'zod';

const intIn = (min: number, max: number, dflt: number) => z.coerce.number().int().min(min).max(max).default(dflt);
const bool = (dflt: boolean) =>
  z.enum(['true', 'false', '1', '0', 'yes', 'no']).default(dflt ? 'true' : 'false').transform((v) => ['true', '1', 'yes'].includes(v));
const pgUrl = z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL');

/** Every environment variable the service reads; README's configuration table lists the same. */
const EnvSchema = z.object({
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: intIn(0, 65535, 8080),
  RELAY_DATA_DIR: z.string().min(1).default('./.relay'),
  DATABASE_URL: pgUrl.optional(),
  RELAY_MIGRATE_URL: pgUrl.optional(),
  RELAY_MIGRATE_ON_START: bool(true),
  RELAY_APP_ROLE: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier').default('app_user'),
  RELAY_EMBED_DIM: intIn(1, 16000, 384),
  RELAY_DB_POOL_MAX: intIn(1, 1000, 10),
  RELAY_STATEMENT_TIMEOUT_MS: intIn(1, 3_600_000, 5000),
  RELAY_SEARCH_EXACT_MAX: intIn(0, 10_000_000, 2000),
  RELAY_HNSW_EF_SEARCH: intIn(1, 1000, 100),
  RELAY_HNSW_MAX_SCAN_TUPLES: intIn(1, 100_000_000, 20000),
  RELAY_RELEASE: z.string().min(1).default('dev'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Env = z.infer<typeof EnvSchema>;

export interface Config {
  host: string;
  port: number;
  logLevel: Env['LOG_LEVEL'];
  release: string;
  store:
    | { kind: 'pglite'; dataDir: string }
    | { kind: 'pg'; databaseUrl: string; migrateUrl?: string; poolMax: number; statementTimeoutMs: number };
  migrateOnStart: boolean;
  appRole: string;
  embeddingDim: number;
  search: { exactMax: number; efSearch: number; maxScanTuples: number };
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
  return {
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
        }
      : { kind: 'pglite', dataDir: e.RELAY_DATA_DIR },
    migrateOnStart: e.RELAY_MIGRATE_ON_START,
    appRole: e.RELAY_APP_ROLE,
    embeddingDim: e.RELAY_EMBED_DIM,
    search: { exactMax: e.RELAY_SEARCH_EXACT_MAX, efSearch: e.RELAY_HNSW_EF_SEARCH, maxScanTuples: e.RELAY_HNSW_MAX_SCAN_TUPLES },
  };
}

import { randomBytes } from 'node:crypto';
import { createEventSource } from 'eventsource-client';
import type { FastifyBaseLogger } from 'fastify';
import { startServer, type ApiDeps, type RunningServer } from '../../src/api/index.ts';
import { createTokenVerifier, mintToken } from '../../src/auth/index.ts';
import type { ApiConfig } from '../../src/config/index.ts';
import { Keyring, LocalKeyProvider } from '../../src/crypto/index.ts';
import { createHashEmbedder, type Embedder } from '../../src/embed/index.ts';
import { MemoryService, rerankWith, SealedMemory, type Rerank } from '../../src/memory/index.ts';
import { createLexicalReranker, createMaybeRerank, type MaybeRerankOptions, type RerankProvider } from '../../src/rerank/index.ts';
import { createMetrics, type Metrics } from '../../src/metrics/index.ts';
import { SqlKeyRepository, type Store } from '../../src/store/index.ts';
import type { Target } from './targets.ts';

export interface TestApi {
  url: string;
  store: Store;
  metrics: Metrics;
  keyring: Keyring;
  embedder: Embedder;
  server: RunningServer;
  /** A token of `tenant` for `user`, or a service token when `user` is omitted. */
  token(tenant: string, user?: string): Promise<string>;
  /** A token signed with another secret (a forgery). */
  forged(tenant: string, user?: string): Promise<string>;
  close(): Promise<void>;
}

export interface TestApiOptions {
  limits?: Partial<Pick<ApiConfig, 'rateLimitPerMin' | 'bodyLimitBytes' | 'heartbeatMs' | 'corsOrigins'>>;
  /** Wraps the hash embedder (to slow it down, fail it, count calls). */
  embedder?: (inner: Embedder) => Embedder;
  /** The reranker behind maybeRerank (default: the lexical one, as `relay serve` has it). */
  reranker?: RerankProvider;
  /** maybeRerank's options besides the reranker and hooks. */
  rerankOptions?: Partial<Omit<MaybeRerankOptions, 'reranker' | 'hooks'>>;
  /** Or a whole Rerank seam of the test's own. */
  rerank?: Rerank;
  /**
   * The store the memory layer reads through (default: the real one). A test wraps it to play a
   * release with a scope bug, e.g. statements run under another user's scope.
   */
  memoryStore?: (real: Store) => Store;
  models?: ApiDeps['models'];
  /** /readyz's master key check, as `relay serve` wires it (default: none). */
  masterKeyCheck?: ApiDeps['masterKeyCheck'];
  shutdownGraceMs?: number;
  /** How long `server.drain()` keeps serving with /readyz at 503 (default 0). */
  drainMs?: number;
  sweepIntervalS?: number;
  /** A pino logger for the app (to capture its log). */
  logger?: FastifyBaseLogger;
  metricsToken?: string;
  /** The HS256 token secret (default: a random one); tests that craft their own tokens pass it. */
  secret?: string;
  /** The API's scope checks (default: all on); a test turns one off to show a suite notices. */
  scopeChecks?: ApiDeps['scopeChecks'];
  /** Rows per page of the export (default: the service's 500); small, so that a test pages. */
  exportPageSize?: number;
}

/** The whole service on a real port over one target store, as `relay serve` wires it. */
export async function startTestApi(target: Target, opts: TestApiOptions = {}): Promise<TestApi> {
  const secret = opts.secret ?? randomBytes(32).toString('base64url');
  const metrics = createMetrics({ release: 'test-release' });
  const store = await target.open({ observer: metrics.storeObserver });
  metrics.watchPool(() => store.poolStats());
  const keyring = new Keyring({
    provider: new LocalKeyProvider(randomBytes(32)),
    repository: new SqlKeyRepository(store.driver, 'app'),
    onOpenFailure: metrics.openFailure,
  });
  const hash = await createHashEmbedder(store.embeddingDim);
  const embedder = opts.embedder ? opts.embedder(hash) : hash;
  const maybe = createMaybeRerank({ budgetMs: 1000, ...opts.rerankOptions, reranker: opts.reranker ?? createLexicalReranker(), hooks: metrics.rerank });
  let serverLog: { error(obj: object, msg: string): void } | null = null;
  const memory = new MemoryService({
    // As `relay serve` wires it: every row served is checked against the request's scope.
    memory: new SealedMemory(opts.memoryStore ? opts.memoryStore(store) : store, keyring, {
      onScopeViolation: ({ chunkId, mismatch }) => {
        metrics.scopeViolation();
        serverLog?.error({ chunkId, mismatch }, 'scope violation: a row outside the request scope was about to be served; dropped');
      },
    }),
    embedder,
    chunking: { maxChars: 200, overlapChars: 20 },
    rerank: opts.rerank ?? rerankWith(maybe),
    exportPageSize: opts.exportPageSize,
  });
  const server = await startServer({
    store,
    metrics,
    memory,
    verifier: await createTokenVerifier({ secret }),
    limits: { rateLimitPerMin: 1_000_000, bodyLimitBytes: 1024 * 1024, heartbeatMs: 15_000, ...opts.limits },
    host: '127.0.0.1',
    port: 0,
    shutdownGraceMs: opts.shutdownGraceMs ?? 5000,
    drainMs: opts.drainMs,
    sweepIntervalS: opts.sweepIntervalS ?? 0,
    loggerInstance: opts.logger,
    models: opts.models,
    masterKeyCheck: opts.masterKeyCheck,
    metricsToken: opts.metricsToken,
    scopeChecks: opts.scopeChecks,
  });
  serverLog = server.app.log;
  const mint = (s: string, tenant: string, user?: string) =>
    mintToken({ secret: s, tenant, ...(user === undefined ? { service: true } : { user }), ttlSeconds: 3600 });
  return {
    url: server.url,
    store,
    metrics,
    keyring,
    embedder,
    server,
    token: (tenant, user) => mint(secret, tenant, user),
    forged: (tenant, user) => mint(randomBytes(32).toString('base64url'), tenant, user),
    close: () => server.close(),
  };
}

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

/** One JSON request with a bearer token. */
export async function call(url: string, method: string, token: string | null, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export interface StreamEvent {
  event: string | undefined;
  id: string | undefined;
  data: string;
}

/**
 * A query over SSE through a real EventSource client (eventsource-client): collects events up
 * to and including `done` or `error`, then closes (the client would otherwise reconnect).
 */
export async function sseQuery(url: string, token: string, body: unknown, opts: { timeoutMs?: number; onEvent?: (e: StreamEvent, close: () => void) => void } = {}): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  const es = createEventSource({
    url: `${url}/api/v1/memory/query`,
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const timer = setTimeout(() => es.close(), opts.timeoutMs ?? 10_000);
  try {
    for await (const m of es) {
      const e = { event: m.event, id: m.id, data: m.data };
      events.push(e);
      let closed = false;
      opts.onEvent?.(e, () => {
        closed = true;
        es.close();
      });
      if (closed || e.event === 'done' || e.event === 'error') break;
    }
  } finally {
    clearTimeout(timer);
    es.close();
  }
  return events;
}

/** Value of a counter (optionally one label set) in the metrics registry. */
export async function counter(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  // A histogram's series (`…_count`, `…_sum`) live under the histogram's own name.
  const m = metrics.registry.getSingleMetric(name) ?? metrics.registry.getSingleMetric(name.replace(/_(count|sum)$/, ''));
  if (!m) throw new Error(`no metric ${name}`);
  const values = (await m.get()).values;
  return values
    .filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))
    .filter((v) => !('metricName' in v) || v.metricName === name || v.metricName === undefined)
    .reduce((sum, v) => sum + v.value, 0);
}

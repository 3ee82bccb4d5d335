import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { OPEN_FAILURE_REASONS } from '../crypto/index.ts';
import { KEY_EVENT_KINDS, READ_ROUTES, type PoolStats, type SearchStrategy } from '../store/index.ts';
import { RERANK_FALLBACK_REASONS, RERANK_PROVIDERS, STREAM_OUTCOMES, SWEEP_OUTCOMES, WRITE_OUTCOMES, type Metrics } from './observers.ts';

export interface MetricsOptions {
  /** `relay_build_info{release}`: RELAY_RELEASE, so a canary and its baseline can be told apart. Default `dev`. */
  release?: string;
  /** `relay_build_info{version}`: the package version. Default `0.0.0`. */
  version?: string;
  /** Process metrics (CPU, memory, event loop lag). Default true. */
  defaultMetrics?: boolean;
  /** RELAY_METRICS=off: no-op hooks, nothing exported. Default true. */
  enabled?: boolean;
  /**
   * RELAY_METRICS_TENANT_LABELS: count requests per tenant in `relay_tenant_requests_total{tenant}`
   * for at most this many tenants (the rest as `_other`). 0 (default): no tenant id in any label.
   */
  tenantLabels?: number;
}

/** Every way a search is answered, so each is exported at 0 from the start. */
export const SEARCH_STRATEGIES = ['exact', 'hnsw', 'hnsw_then_exact'] as const satisfies readonly SearchStrategy[];
// Fails to compile when SearchStrategy gains a value the list above lacks.
const allStrategies: readonly SearchStrategy[] extends readonly (typeof SEARCH_STRATEGIES)[number][] ? true : never = true;
void allStrategies;

/** Seconds buckets: the guardrails' thresholds (50 ms goal, 1.5 s TTFV; 150/200/250 ms) are edges. */
const TTFV_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10];
const ANN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5];
const RERANK_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5];
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10];

/** One registry per process; names and labels follow DESIGN.md's guardrail table and issue 6. */
export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const enabled = opts.enabled !== false;
  if (enabled && opts.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    // Gauges named like counters, which promtool rightly flags; their per-type twins
    // (nodejs_active_handles{type}, …) stay.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  }
  const registers = [registry];
  let poolStats: (() => PoolStats) | null = null;

  const rlsErrors = new Counter({ name: 'relay_rls_errors_total', help: 'RLS violations and missing-scope errors raised by the database', registers });
  const annSeconds = new Histogram({ name: 'relay_ann_query_seconds', help: 'The ANN/exact search statements of one query', buckets: ANN_BUCKETS, registers });
  const searches = new Counter({ name: 'relay_search_total', help: 'Vector searches by how they were answered (exact, hnsw, hnsw_then_exact)', labelNames: ['strategy'] as const, registers });
  const underfilled = new Counter({ name: 'relay_query_underfilled_total', help: 'Searches that returned fewer than min(k, matching rows); should stay 0', registers });
  const openFailures = new Counter({ name: 'relay_open_failures_total', help: 'Sealed values that failed to open (tamper, wrong context, missing or shredded key), by reason', labelNames: ['reason'] as const, registers });
  const ttfv = new Histogram({ name: 'relay_ttfv_seconds', help: 'Query accepted → first result written (the done event when there is none)', buckets: TTFV_BUCKETS, registers });
  const streams = new Counter({ name: 'relay_sse_streams_total', help: 'Finished query streams by outcome (success, error, client_abort)', labelNames: ['outcome'] as const, registers });
  const crossTenant = new Counter({ name: 'relay_cross_tenant_attempts_total', help: "Requests whose body, query or path reached outside their token's tenant or user", registers });
  const scopeViolations = new Counter({ name: 'relay_scope_violations_total', help: "Rows the service was about to serve whose tenant or user differs from the request's scope (dropped; only a bad release causes one)", registers });
  const writes = new Counter({ name: 'relay_memory_writes_total', help: 'POST /api/v1/memory by outcome (success, replayed, rejected, error)', labelNames: ['outcome'] as const, registers });
  const requests = new Counter({ name: 'relay_http_requests_total', help: 'HTTP requests by route pattern and status', labelNames: ['route', 'status'] as const, registers });
  const requestSeconds = new Histogram({ name: 'relay_http_request_duration_seconds', help: 'HTTP request accepted → response finished, by route pattern', labelNames: ['route'] as const, buckets: HTTP_BUCKETS, registers });
  const rerankSeconds = new Histogram({ name: 'relay_rerank_seconds', help: 'One rerank call, by provider', labelNames: ['provider'] as const, buckets: RERANK_BUCKETS, registers });
  const rerankFallbacks = new Counter({ name: 'relay_rerank_fallbacks_total', help: 'Queries that kept search order instead of reranking, by reason', labelNames: ['reason'] as const, registers });
  // Every label value known in advance is exported at 0 from the start, so a first event shows as an increase.
  for (const reason of OPEN_FAILURE_REASONS) openFailures.inc({ reason }, 0);
  const keyEvents = new Counter({ name: 'relay_key_events_total', help: "Key events received (another process changed a tenant's keys; its cached keys were dropped), by kind", labelNames: ['kind'] as const, registers });
  for (const kind of KEY_EVENT_KINDS) keyEvents.inc({ kind }, 0);
  let keyEventsListening: (() => boolean) | undefined;
  new Gauge({
    name: 'relay_key_events_listening',
    help: "1 while the key events' connection listens; 0 while it is down (cached keys are then used only within RELAY_KEY_EVENT_GRACE_MS)",
    registers,
    collect() {
      this.set(keyEventsListening?.() ? 1 : 0);
    },
  });
  const sweeps = new Counter({ name: 'relay_sweeps_total', help: 'Expiry sweep turns of this replica: ran (it swept) or skipped (another replica is sweeping or took the turn)', labelNames: ['outcome'] as const, registers });
  for (const outcome of SWEEP_OUTCOMES) sweeps.inc({ outcome }, 0);
  const rateLimitStoreErrors = new Counter({
    name: 'relay_rate_limit_store_errors_total',
    help: 'Requests whose rate-limit count the Redis of RELAY_REDIS_URL could not make: served uncounted, or 503 rate_limit_unavailable when RELAY_RATE_LIMIT_REQUIRED=true',
    registers,
  });
  const readRoutes = new Counter({
    name: 'relay_read_route_total',
    help: 'Reads (query, get, list) by where they ran (standby, primary) and why (docs/scaling.md)',
    labelNames: ['target', 'reason'] as const,
    registers,
  });
  for (const route of READ_ROUTES) readRoutes.inc(route, 0);
  const standbyLag = new Gauge({
    name: 'relay_standby_replay_lag_seconds',
    help: "Replay lag of RELAY_READ_DATABASE_URL's standby at its last probe (0 when it has replayed all it received); unchanged while it does not answer",
    registers,
  });
  const standbyUp = new Gauge({ name: 'relay_standby_up', help: "1 while RELAY_READ_DATABASE_URL's standby answers its probes; 0 while it does not, or without one", registers });
  for (const strategy of SEARCH_STRATEGIES) searches.inc({ strategy }, 0);
  for (const outcome of STREAM_OUTCOMES) streams.inc({ outcome }, 0);
  for (const outcome of WRITE_OUTCOMES) writes.inc({ outcome }, 0);
  for (const reason of RERANK_FALLBACK_REASONS) rerankFallbacks.inc({ reason }, 0);
  for (const provider of RERANK_PROVIDERS) rerankSeconds.zero({ provider });
  new Gauge({
    name: 'relay_db_pool_utilization',
    help: 'Busy database connections / pool size, read at scrape time',
    registers,
    collect() {
      const s = poolStats?.();
      this.set(s && s.size > 0 ? s.busy / s.size : 0);
    },
  });
  new Gauge({
    name: 'relay_db_pool_waiting',
    help: 'Callers waiting for a database connection, read at scrape time',
    registers,
    collect() {
      this.set(poolStats?.().waiting ?? 0);
    },
  });
  new Gauge({ name: 'relay_build_info', help: 'Version and release of this process', labelNames: ['version', 'release'] as const, registers }).set(
    { version: opts.version ?? '0.0.0', release: opts.release ?? 'dev' },
    1,
  );

  const tenantLimit = opts.tenantLabels ?? 0;
  const tenantRequests =
    tenantLimit > 0
      ? new Counter({ name: 'relay_tenant_requests_total', help: `API requests per tenant (the first ${tenantLimit} tenants seen; the rest as _other)`, labelNames: ['tenant'] as const, registers })
      : null;
  const seenTenants = new Set<string>();
  const tenantLabel = (tenantId: string) => {
    if (seenTenants.has(tenantId)) return tenantId;
    if (seenTenants.size < tenantLimit) {
      seenTenants.add(tenantId);
      return tenantId;
    }
    return '_other';
  };

  const on = <A extends unknown[]>(fn: (...args: A) => void) => (enabled ? fn : () => undefined);
  return {
    enabled,
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    storeObserver: {
      rlsError: on(() => rlsErrors.inc()),
      search: on((seconds, strategy) => {
        annSeconds.observe(seconds);
        searches.inc({ strategy });
      }),
      underfilled: on(() => underfilled.inc()),
      readRoute: on((target, reason) => readRoutes.inc({ target, reason })),
      standbyLag: on((seconds) => {
        standbyUp.set(seconds === null ? 0 : 1);
        if (seconds !== null) standbyLag.set(seconds);
      }),
    },
    watchPool(stats) {
      poolStats = stats;
    },
    openFailure: on((reason) => openFailures.inc({ reason })),
    scopeViolation: on(() => scopeViolations.inc()),
    keyEvent: on((kind) => keyEvents.inc({ kind })),
    watchKeyEvents(listening) {
      keyEventsListening = listening;
    },
    sweep: on((outcome) => sweeps.inc({ outcome })),
    api: {
      ttfv: on((seconds) => ttfv.observe(seconds)),
      stream: on((outcome) => streams.inc({ outcome })),
      crossTenantAttempt: on(() => crossTenant.inc()),
      write: on((outcome) => writes.inc({ outcome })),
      request: on((route, status, seconds, tenantId) => {
        requests.inc({ route, status: String(status) });
        requestSeconds.observe({ route }, seconds);
        if (tenantRequests && tenantId) tenantRequests.inc({ tenant: tenantLabel(tenantId) });
      }),
      rateLimitStoreError: on(() => rateLimitStoreErrors.inc()),
    },
    rerank: {
      seconds: on((provider, seconds) => rerankSeconds.observe({ provider }, seconds)),
      fallback: on((reason) => rerankFallbacks.inc({ reason })),
    },
  };
}

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { OPEN_FAILURE_REASONS, type OpenFailureHook } from '../crypto/index.ts';
import type { PoolStats, StoreObserver } from '../store/index.ts';

export interface Metrics {
  registry: Registry;
  /** Hooks for the store: RLS refusals and search timings. */
  storeObserver: StoreObserver;
  /** Reads pool numbers at scrape time, so the gauge is live. */
  watchPool(stats: () => PoolStats): void;
  /** Counts sealed values that failed to open: pass as the keyring's `onOpenFailure`. */
  openFailure: OpenFailureHook;
  /** The HTTP API's guardrails. */
  api: ApiObserver;
}

export type StreamOutcome = 'success' | 'error' | 'client_abort';
export const STREAM_OUTCOMES: readonly StreamOutcome[] = ['success', 'error', 'client_abort'];

export interface ApiObserver {
  /** Request accepted → first result written. */
  ttfv(seconds: number): void;
  /** A query stream (or JSON query) finished. */
  stream(outcome: StreamOutcome): void;
  /** A request named a tenant or user outside its token's scope. */
  crossTenantAttempt(): void;
}

/** One registry per process; names and labels follow DESIGN.md's guardrail table. */
export function createMetrics(opts: { release?: string; defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  let poolStats: (() => PoolStats) | null = null;

  const rlsErrors = new Counter({
    name: 'relay_rls_errors_total',
    help: 'RLS violations and missing-scope errors raised by the database',
    registers: [registry],
  });
  const annSeconds = new Histogram({
    name: 'relay_ann_query_seconds',
    help: 'The ANN/exact search statements of one query',
    // 200 ms and 250 ms (the guardrail and its warning) are bucket edges.
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const searches = new Counter({
    name: 'relay_search_total',
    help: 'Vector searches by how they were answered (exact, hnsw, hnsw_then_exact)',
    labelNames: ['strategy'] as const,
    registers: [registry],
  });
  const openFailures = new Counter({
    name: 'relay_open_failures_total',
    help: 'Sealed values that failed to open (tamper, wrong context, missing or shredded key), by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // Every reason is exported from the start at 0, so a first failure shows as an increase.
  for (const reason of OPEN_FAILURE_REASONS) openFailures.inc({ reason }, 0);
  const ttfv = new Histogram({
    name: 'relay_ttfv_seconds',
    help: 'Query accepted → first result written (the done event when there is none)',
    // 1.5 s (the canary's guardrail) is a bucket edge, and so is the 50 ms goal.
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10],
    registers: [registry],
  });
  const streams = new Counter({
    name: 'relay_sse_streams_total',
    help: 'Finished query streams by outcome (success, error, client_abort)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  for (const outcome of STREAM_OUTCOMES) streams.inc({ outcome }, 0);
  const crossTenant = new Counter({
    name: 'relay_cross_tenant_attempts_total',
    help: "Requests whose body, query or path reached outside their token's tenant or user",
    registers: [registry],
  });
  new Gauge({
    name: 'relay_db_pool_utilization',
    help: 'Busy database connections / pool size',
    registers: [registry],
    collect() {
      const s = poolStats?.();
      this.set(s && s.size > 0 ? s.busy / s.size : 0);
    },
  });
  new Gauge({
    name: 'relay_build_info',
    help: 'Build and release of this process',
    labelNames: ['release'] as const,
    registers: [registry],
  }).set({ release: opts.release ?? 'dev' }, 1);

  return {
    registry,
    storeObserver: {
      rlsError: () => rlsErrors.inc(),
      search: (seconds, strategy) => {
        annSeconds.observe(seconds);
        searches.inc({ strategy });
      },
    },
    watchPool(stats) {
      poolStats = stats;
    },
    openFailure: (reason) => openFailures.inc({ reason }),
    api: {
      ttfv: (seconds) => ttfv.observe(seconds),
      stream: (outcome) => streams.inc({ outcome }),
      crossTenantAttempt: () => crossTenant.inc(),
    },
  };
}

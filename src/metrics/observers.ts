import type { OpenFailureHook } from '../crypto/index.ts';
import type { KeyEventKind, PoolStats, StoreObserver } from '../store/index.ts';

export type StreamOutcome = 'success' | 'error' | 'client_abort';
export const STREAM_OUTCOMES: readonly StreamOutcome[] = ['success', 'error', 'client_abort'];

export type WriteOutcome = 'success' | 'replayed' | 'rejected' | 'error';
export const WRITE_OUTCOMES: readonly WriteOutcome[] = ['success', 'replayed', 'rejected', 'error'];

export type RerankFallbackReason = 'disabled' | 'timeout' | 'error' | 'circuit_open' | 'few_candidates';
export const RERANK_FALLBACK_REASONS: readonly RerankFallbackReason[] = ['disabled', 'timeout', 'error', 'circuit_open', 'few_candidates'];
export const RERANK_PROVIDERS = ['lexical', 'onnx', 'http'] as const;

/** `ran`: this replica took the expiry sweep's turn; `skipped`: another replica had it (docs/scaling.md). */
export type SweepOutcome = 'ran' | 'skipped';
export const SWEEP_OUTCOMES: readonly SweepOutcome[] = ['ran', 'skipped'];

export interface ApiObserver {
  /** Request accepted → first result written. */
  ttfv(seconds: number): void;
  /** A query stream finished. */
  stream(outcome: StreamOutcome): void;
  /** A request named a tenant or user outside its token's scope. */
  crossTenantAttempt(): void;
  /** A POST /api/v1/memory finished. */
  write(outcome: WriteOutcome): void;
  /** Any HTTP request finished: `route` is the route pattern (never the raw URL), or `unmatched`. */
  request(route: string, status: number, seconds: number, tenantId: string | null): void;
  /** A request's rate-limit count could not be made in Redis (RELAY_REDIS_URL): served uncounted, or 503 when required. */
  rateLimitStoreError(): void;
}

export interface RerankObserver {
  seconds(provider: string, seconds: number): void;
  fallback(reason: RerankFallbackReason): void;
}

export interface Metrics {
  /** False when RELAY_METRICS=off: every hook is a no-op and nothing is exported. */
  readonly enabled: boolean;
  /** Prometheus text exposition of everything registered. */
  render(): Promise<string>;
  readonly contentType: string;
  /** Hooks for the store: RLS refusals, search timings, underfilled searches. */
  storeObserver: StoreObserver;
  /** Reads pool numbers at scrape time, so the gauges are live. */
  watchPool(stats: () => PoolStats): void;
  /** Counts sealed values that failed to open: pass as the keyring's `onOpenFailure`. */
  openFailure: OpenFailureHook;
  /** Counts rows dropped because their tenant or user was not the request's (`relay_scope_violations_total`): only a bad release causes one. */
  scopeViolation(): void;
  /** Counts key events received (`relay_key_events_total{kind}`). */
  keyEvent(kind: KeyEventKind): void;
  /** Reads at scrape time whether the key events' connection listens (`relay_key_events_listening`). */
  watchKeyEvents(listening: () => boolean): void;
  /** Counts the expiry sweep's turns (`relay_sweeps_total{outcome}`). */
  sweep(outcome: SweepOutcome): void;
  api: ApiObserver;
  rerank: RerankObserver;
  /** The registry itself, for tests and for adding process-specific metrics. */
  registry: import('prom-client').Registry;
}

export { createMetrics, type MetricsOptions } from './registry.ts';
export {
  RERANK_FALLBACK_REASONS,
  STREAM_OUTCOMES,
  SWEEP_OUTCOMES,
  WRITE_OUTCOMES,
  type ApiObserver,
  type Metrics,
  type RerankFallbackReason,
  type RerankObserver,
  type StreamOutcome,
  type SweepOutcome,
  type WriteOutcome,
} from './observers.ts';

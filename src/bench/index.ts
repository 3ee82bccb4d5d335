export { benchAnn, type AnnBenchOptions } from './ann.ts';
export { ClusteredSpace, gaussian, normalize, rng } from './synthetic.ts';
export { benchQuery, type QueryBenchOptions } from './query.ts';
export { closedLoop, errorCode, openLoop, percentile, postJson, sseRequest, SseParser, type Frame, type Outcome } from './load.ts';
export { benchLoad, rssMb, type LoadBenchOptions } from './mixed-load.ts';
export { buildBaselineApp } from './sse-baseline.ts';
export { measureKeyEventLatency, type KeyEventLatency, type KeyEventLatencyOptions } from './key-events.ts';
export { benchReplicas, type ReplicasBenchOptions } from './replicas.ts';
export { benchRerank, type RerankBenchOptions, type RerankBenchSummary } from './rerank.ts';

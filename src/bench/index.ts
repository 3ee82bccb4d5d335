export { benchAnn, type AnnBenchOptions } from './ann.ts';
export { ClusteredSpace, gaussian, normalize, rng } from './synthetic.ts';
export { benchQuery, type QueryBenchOptions } from './query.ts';
export { closedLoop, openLoop, percentile, sseRequest, SseParser, type Frame, type Outcome } from './load.ts';
export { buildBaselineApp } from './sse-baseline.ts';
export { benchRerank, type RerankBenchOptions, type RerankBenchSummary } from './rerank.ts';

export type { RerankCallOptions, RerankCandidate, RerankProvider, RerankScore } from './types.ts';
export { rerank, type Reranked, type RerankOptions } from './rerank.ts';
export { RerankError, type RerankErrorCode } from './errors.ts';
export { createLexicalReranker, scoreLexical, LEXICAL_VERSION, type LexicalRerankerOptions } from './lexical.ts';
export { createHttpReranker, type HttpRerankerOptions } from './http.ts';
export {
  createMaybeRerank,
  rolloutBucket,
  type BreakerState,
  type MaybeRerank,
  type MaybeRerankOptions,
  type MaybeRerankResult,
  type Ranked,
  type RerankContext,
  type RerankFallbackReason,
  type RerankHooks,
  type RerankMode,
} from './maybe.ts';
export { closeCrossEncoders, createCrossEncoderCache, createReranker, getCrossEncoder, warmCrossEncoder, type CrossEncoderCache } from './factory.ts';
export { trackModel, type ModelReadiness } from './readiness.ts';

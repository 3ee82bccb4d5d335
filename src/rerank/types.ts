/** One candidate of a query: a chunk's id and text, and the vector search's similarity. */
export interface RerankCandidate {
  id: string;
  text: string;
  /** Cosine similarity from the search (1 − distance), roughly −1..1. */
  score: number;
}

/** A candidate's relevance to the query by a reranker, in [0, 1]; higher is better. */
export interface RerankScore {
  id: string;
  score: number;
}

export interface RerankCallOptions {
  /** Aborts the work (an HTTP call, queued inference); the promise rejects with the reason. */
  signal?: AbortSignal;
}

/**
 * A reranker: scores (query, candidate) pairs. Created by a factory from config; every provider
 * (lexical, onnx, http) implements this and nothing more is assumed by `maybeRerank`.
 */
export interface RerankProvider {
  /** The metrics label of `relay_rerank_seconds{provider}`: `lexical`, `onnx` or `http`. */
  readonly provider: 'lexical' | 'onnx' | 'http';
  /** What is loaded, for /readyz and logs (e.g. `onnx/minilm-l6-shape@1a2b3c4d5e6f`). */
  readonly id: string;
  /** Scores every candidate; returns them best first. Never returns fewer or other ids. */
  rerank(query: string, candidates: readonly RerankCandidate[], opts?: RerankCallOptions): Promise<RerankScore[]>;
  /**
   * Predicted milliseconds to score each candidate with this query, from its token count and
   * the throughput measured so far; `maybeRerank` uses it to pick what fits the budget. A
   * provider whose cost does not depend on the candidate may leave it out.
   */
  estimateMs?(query: string, candidates: readonly RerankCandidate[]): number[];
  /** Loads and runs once so the first request does not pay for it. */
  warm?(): Promise<void>;
  close?(): Promise<void>;
}

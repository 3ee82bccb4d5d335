import type { MaybeRerank } from '../rerank/index.ts';
import type { Rerank } from './service.ts';

/**
 * The query path's reranker: `maybeRerank` (never throws; keeps search order on any trouble).
 * A reranked result's score is the reranker's relevance in [0, 1]; results below them, which it
 * did not score, keep their search similarity.
 */
export function rerankWith(maybe: MaybeRerank): Rerank {
  return async (query, candidates, ctx) => {
    const r = await maybe(query, candidates, ctx);
    return {
      // One copy per reranked candidate (its rerankScore rides along unread: answers are built field by field).
      results: r.candidates.map((c) => (c.rerankScore === undefined ? c : { ...c, score: c.rerankScore })),
      reranked: r.reranked,
      fallback: r.fallback,
    };
  };
}

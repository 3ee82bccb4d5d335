import { hashWords } from '../embed/hash.ts';
import type { RerankCandidate, RerankProvider, RerankScore } from './types.ts';

export interface LexicalRerankerOptions {
  /** Weight of the normalised BM25 score against the vector score, in [0, 1]. Default 0.5. */
  alpha?: number;
  /** BM25 term-frequency saturation. Default 1.2. */
  k1?: number;
  /** BM25 length normalisation, in [0, 1]. Default 0.75. */
  b?: number;
}

/** Names what `scoreLexical` computes (docs/rerank.md); bump it when the formula changes. */
export const LEXICAL_VERSION = 'bm25-v1';

/** Cosine similarity −1..1 → 0..1; a missing or broken score counts as orthogonal (0.5). */
function vectorPart(score: number): number {
  if (!Number.isFinite(score)) return 0.5;
  return (Math.min(1, Math.max(-1, score)) + 1) / 2;
}

/**
 * The blended score of every candidate, in candidate order: BM25 of the query's distinct words
 * over the candidate set (IDF from the candidates themselves, so a word every candidate has
 * weighs little), divided by the best candidate's BM25, blended with the vector score.
 */
export function scoreLexical(query: string, candidates: readonly RerankCandidate[], opts: LexicalRerankerOptions = {}): number[] {
  const alpha = opts.alpha ?? 0.5;
  const k1 = opts.k1 ?? 1.2;
  const b = opts.b ?? 0.75;
  const terms = [...new Set(hashWords(query))];
  const termIndex = new Map(terms.map((t, i) => [t, i]));
  // Only the query's words count: each candidate keeps their frequencies alone, not a map of all its words.
  const docs = candidates.map((c) => {
    const tf = new Array<number>(terms.length).fill(0);
    const words = hashWords(c.text);
    for (const w of words) {
      const i = termIndex.get(w);
      if (i !== undefined) tf[i]!++;
    }
    return { tf, length: words.length };
  });
  const n = docs.length;
  const avgdl = n === 0 ? 0 : docs.reduce((s, d) => s + d.length, 0) / n;
  // Lucene's IDF: never negative, so a word in more than half the candidates still helps a little.
  const idf = terms.map((_, i) => {
    const df = docs.reduce((s, d) => s + (d.tf[i]! > 0 ? 1 : 0), 0);
    return Math.log(1 + (n - df + 0.5) / (df + 0.5));
  });
  const bm25 = docs.map((d) => {
    const norm = avgdl > 0 ? 1 - b + (b * d.length) / avgdl : 1;
    let s = 0;
    for (let i = 0; i < terms.length; i++) {
      const f = d.tf[i]!;
      if (f > 0) s += (idf[i]! * f * (k1 + 1)) / (f + k1 * norm);
    }
    return s;
  });
  const best = Math.max(0, ...bm25);
  return candidates.map((c, i) => {
    const lexical = best > 0 ? bm25[i]! / best : 0;
    const blended = alpha * lexical + (1 - alpha) * vectorPart(c.score);
    return Math.min(1, Math.max(0, blended));
  });
}

/**
 * The default reranker: no model, no network, microseconds per candidate. Deterministic: the same
 * query and candidates give the same order in every process, ties keeping the search order.
 * Its tokenisation is the hash embedder's (NFKC, lower case, runs of letters, marks and digits),
 * so the words that made a chunk a candidate are the words scored here.
 */
export function createLexicalReranker(opts: LexicalRerankerOptions = {}): RerankProvider {
  const alpha = opts.alpha ?? 0.5;
  const k1 = opts.k1 ?? 1.2;
  const b = opts.b ?? 0.75;
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`lexical reranker: alpha must be in [0, 1], got ${alpha}`);
  if (!(k1 >= 0 && Number.isFinite(k1))) throw new RangeError(`lexical reranker: k1 must be a finite number ≥ 0, got ${k1}`);
  if (!(b >= 0 && b <= 1)) throw new RangeError(`lexical reranker: b must be in [0, 1], got ${b}`);
  return {
    provider: 'lexical',
    id: `lexical/${LEXICAL_VERSION}@a${alpha}`,
    async rerank(query, candidates, callOpts): Promise<RerankScore[]> {
      callOpts?.signal?.throwIfAborted();
      const scores = scoreLexical(query, candidates, { alpha, k1, b });
      return candidates
        .map((c, i) => ({ id: c.id, score: scores[i]!, i }))
        .sort((x, y) => y.score - x.score || x.i - y.i)
        .map(({ id, score }) => ({ id, score }));
    },
  };
}

import { loadConfig, type RerankConfig } from '../config/index.ts';
import { RerankError } from './errors.ts';
import { getCrossEncoder } from './factory.ts';
import type { RerankCallOptions, RerankCandidate, RerankProvider } from './types.ts';

export interface RerankOptions extends RerankCallOptions {
  /** The reranker to ask. Default: the process's configured one, `getCrossEncoder(config)`, loaded once. */
  reranker?: RerankProvider;
  /** The settings of that default. Default: `loadConfig().rerank` (RELAY_RERANKER and friends). */
  config?: RerankConfig;
}

/** A candidate with the reranker's relevance in [0, 1]; its own fields (the search `score` too) are kept. */
export type Reranked<T extends RerankCandidate> = T & { rerankScore: number };

/**
 * Scores every candidate against the query and returns them all, best first. Unlike
 * `maybeRerank`, which never fails and keeps to a budget, this is the plain call: it rejects
 * when the reranker fails or `signal` aborts. Candidate ids must be unique.
 */
export async function rerank<T extends RerankCandidate>(query: string, candidates: readonly T[], opts: RerankOptions = {}): Promise<Reranked<T>[]> {
  const byId = new Map<string, T>();
  for (const c of candidates) {
    if (byId.has(c.id)) throw new TypeError(`rerank: candidate id ${JSON.stringify(c.id)} appears twice`);
    byId.set(c.id, c);
  }
  if (candidates.length === 0) return [];
  const reranker = opts.reranker ?? (await getCrossEncoder(opts.config ?? loadConfig().rerank));
  const scores = await reranker.rerank(query, candidates, opts.signal ? { signal: opts.signal } : {});
  const out: Reranked<T>[] = [];
  for (const s of scores) {
    const c = byId.get(s.id);
    if (!c || !Number.isFinite(s.score) || s.score < 0 || s.score > 1) {
      throw new RerankError('rerank_bad_response', `${reranker.provider} reranker returned an unknown id or a score outside [0, 1]`);
    }
    byId.delete(s.id);
    out.push({ ...c, rerankScore: s.score });
  }
  if (byId.size > 0) throw new RerankError('rerank_bad_response', `${reranker.provider} reranker left ${byId.size} candidate(s) unscored`);
  return out.sort((a, b) => b.rerankScore - a.rerankScore);
}

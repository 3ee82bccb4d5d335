import { RerankError } from './errors.ts';
import type { RerankCandidate, RerankProvider, RerankScore } from './types.ts';

export interface HttpRerankerOptions {
  /** Base URL without a trailing slash; TEI requests go to `{url}/rerank`, Cohere-style ones to `{url}/v1/rerank`. */
  url: string;
  /** Sent as `Authorization: Bearer …` when set. Default none. */
  apiKey?: string;
  /** `model` of Cohere-style requests (TEI serves one model and takes none). Default none: left out. */
  model?: string;
  /** `tei`: Hugging Face Text Embeddings Inference; `cohere`: Cohere's `/v1/rerank` and the servers that copy it. */
  format: 'tei' | 'cohere';
  /** Limit on one HTTP request, response body included. */
  timeoutMs: number;
  /**
   * Texts per request; the requests of one call run concurrently. TEI refuses more than its
   * `--max-client-batch-size` (32 by default) texts. Default: all in one request.
   */
  batchSize?: number;
  /** Default the global `fetch`. */
  fetch?: typeof fetch;
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** The `[index, score]` pairs of a response body, or why it is not one. */
function pairsOf(format: 'tei' | 'cohere', body: unknown): Array<[unknown, unknown]> | string {
  const items = format === 'tei' ? body : (body as { results?: unknown } | null)?.results;
  if (!Array.isArray(items)) return format === 'tei' ? 'not an array' : 'no results array';
  const scoreKey = format === 'tei' ? 'score' : 'relevance_score';
  return items.map((item: unknown) => {
    const o = (item ?? {}) as Record<string, unknown>;
    return [o.index, o[scoreKey]];
  });
}

/**
 * A rerank service over HTTP: a GPU pool serving many API replicas. One attempt per request, no
 * retries: the query's budget is shorter than any backoff, and `maybeRerank`'s breaker handles
 * an outage. Scores are used as given when all lie in [0, 1] (TEI's probabilities, Cohere's
 * relevance); a response with any score outside carries logits, and all of them go through a
 * sigmoid, which keeps their order.
 */
export function createHttpReranker(opts: HttpRerankerOptions): RerankProvider {
  const endpoint = `${opts.url.replace(/\/+$/, '')}${opts.format === 'tei' ? '/rerank' : '/v1/rerank'}`;
  // Errors name the host only: a URL may carry credentials in its user-info part.
  const host = new URL(endpoint).host;
  const doFetch = opts.fetch ?? fetch;
  const batchSize = opts.batchSize ?? Number.POSITIVE_INFINITY;
  if (!(batchSize >= 1)) throw new RangeError(`http reranker: batchSize must be ≥ 1, got ${batchSize}`);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;

  function requestBody(query: string, texts: string[]): string {
    if (opts.format === 'tei') return JSON.stringify({ query, texts, raw_scores: false, return_text: false, truncate: true });
    return JSON.stringify({ ...(opts.model ? { model: opts.model } : {}), query, documents: texts, top_n: texts.length });
  }

  /** One score per text, in text order. */
  function parse(body: unknown, count: number, status: number): number[] {
    const bad = (why: string) => new RerankError('rerank_bad_response', `rerank response from ${host} is malformed: ${why}`, { statusCode: status });
    const pairs = pairsOf(opts.format, body);
    if (typeof pairs === 'string') throw bad(pairs);
    if (pairs.length !== count) throw bad(`${pairs.length} scores for ${count} texts`);
    const scores = new Array<number | undefined>(count);
    for (const [index, score] of pairs) {
      if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= count) throw bad('an index out of range');
      if (scores[index] !== undefined) throw bad('a repeated index');
      if (typeof score !== 'number' || !Number.isFinite(score)) throw bad('a score that is not a finite number');
      scores[index] = score;
    }
    const all = scores as number[];
    return all.every((s) => s >= 0 && s <= 1) ? all : all.map(sigmoid);
  }

  async function post(query: string, texts: string[], caller: AbortSignal): Promise<number[]> {
    const timeout = AbortSignal.timeout(opts.timeoutMs);
    const signal = AbortSignal.any([caller, timeout]);
    let res: Response;
    let text: string;
    try {
      res = await doFetch(endpoint, { method: 'POST', headers, body: requestBody(query, texts), signal });
      text = await res.text();
    } catch (err) {
      if (caller.aborted) throw caller.reason;
      if (timeout.aborted) throw new RerankError('rerank_unavailable', `rerank request to ${host} timed out after ${opts.timeoutMs} ms`);
      const cause = (err as { cause?: { code?: unknown } }).cause?.code;
      throw new RerankError('rerank_unavailable', `rerank request to ${host} failed${typeof cause === 'string' ? `: ${cause}` : ''}`);
    }
    // The body of an error is not quoted: a server may echo the query or the texts in it.
    if (!res.ok) throw new RerankError('rerank_unavailable', `${host} answered ${res.status} to a rerank request`, { statusCode: res.status });
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new RerankError('rerank_bad_response', `rerank response from ${host} is not JSON`, { statusCode: res.status });
    }
    return parse(body, texts.length, res.status);
  }

  return {
    provider: 'http',
    id: `http/${opts.format}/${opts.model ?? host}`,
    async rerank(query: string, candidates: readonly RerankCandidate[], callOpts): Promise<RerankScore[]> {
      callOpts?.signal?.throwIfAborted();
      if (candidates.length === 0) return [];
      // One failed batch makes the whole call fail: cancel its siblings rather than wait for them.
      const local = new AbortController();
      const signal = callOpts?.signal ? AbortSignal.any([callOpts.signal, local.signal]) : local.signal;
      const texts = candidates.map((c) => c.text);
      const batches: Array<Promise<number[]>> = [];
      for (let i = 0; i < texts.length; i += batchSize) batches.push(post(query, texts.slice(i, i + batchSize), signal));
      let scores: number[];
      try {
        scores = (await Promise.all(batches)).flat();
      } catch (err) {
        local.abort();
        // The siblings' rejections are the abort just caused: nothing to report.
        for (const p of batches) p.catch(() => {});
        throw err;
      }
      return candidates
        .map((c, i) => ({ id: c.id, score: scores[i]!, i }))
        .sort((x, y) => y.score - x.score || x.i - y.i)
        .map(({ id, score }) => ({ id, score }));
    },
  };
}

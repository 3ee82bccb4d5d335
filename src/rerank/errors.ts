/**
 * Why a rerank service gave no ranking. `rerank_unavailable`: it could not be reached, timed out,
 * or answered with an error status; `rerank_bad_response`: it answered 2xx, but not with one
 * finite score for each candidate. `maybeRerank` turns both into the `error` fallback, so a query
 * never fails because of them. Messages name the host only: never an API key, a query or a text.
 */
export type RerankErrorCode = 'rerank_unavailable' | 'rerank_bad_response';

export class RerankError extends Error {
  override readonly name = 'RerankError';
  readonly code: RerankErrorCode;
  /** The upstream HTTP status, when there was a response. */
  readonly statusCode?: number;

  constructor(code: RerankErrorCode, message: string, opts: { statusCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    if (opts.statusCode !== undefined) this.statusCode = opts.statusCode;
  }
}

/**
 * Why an embedding could not be made. `embedder_unavailable`: the embedder is down or cannot
 * start (the API answers 503, a caller may retry when `retryable`); `embedder_failed`: it
 * answered, but not usefully (a rejected request, a malformed response).
 * Messages never carry an API key or any of the input text.
 */
export type EmbedderErrorCode = 'embedder_unavailable' | 'embedder_failed';

export class EmbedderError extends Error {
  override readonly name = 'EmbedderError';
  readonly code: EmbedderErrorCode;
  readonly retryable: boolean;
  /** The upstream HTTP status, when there was a response. */
  readonly statusCode?: number;

  constructor(code: EmbedderErrorCode, message: string, opts: { retryable?: boolean; statusCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retryable = opts.retryable ?? false;
    if (opts.statusCode !== undefined) this.statusCode = opts.statusCode;
  }
}

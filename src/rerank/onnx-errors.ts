/**
 * Why the ONNX reranker failed. `rerank_unavailable`: it cannot start (a missing file, a
 * model it cannot read, an execution provider this onnxruntime build lacks); `rerank_failed`:
 * an inference failed; `rerank_closed`: a call after `close()`. `maybeRerank` turns any of
 * them into a fallback to the candidate order; at startup they fail the process loudly.
 */
export type OnnxRerankErrorCode = 'rerank_unavailable' | 'rerank_failed' | 'rerank_closed';

export class OnnxRerankError extends Error {
  override readonly name = 'OnnxRerankError';
  readonly code: OnnxRerankErrorCode;

  constructor(code: OnnxRerankErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
  }
}

export interface EmbedOptions {
  /** Aborts the work at once; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface Embedder {
  /** Recorded in memory_chunks.embedder_id; queries only match rows of the active embedder. Stable across processes/versions for the same model+D. */
  readonly id: string;
  readonly dimensions: number;
  /** One vector per text, in order, each L2-normalised Float32Array of `dimensions`. Never a zero vector (pgvector cosine of a zero vector is NaN). */
  embed(texts: readonly string[], opts?: EmbedOptions): Promise<Float32Array[]>;
  close?(): Promise<void>;
}

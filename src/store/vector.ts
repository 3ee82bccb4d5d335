/** pgvector's text form: `[1,2,3]`. Rejects NaN and infinities, which pgvector refuses too. */
export function toSqlVector(values: ArrayLike<number>, dim: number): string {
  if (values.length !== dim) throw new RangeError(`embedding has ${values.length} dimensions, the store expects ${dim}`);
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) throw new RangeError(`embedding[${i}] is not a finite number`);
    parts[i] = String(v);
  }
  return `[${parts.join(',')}]`;
}

/** bytea comes back as Buffer from pg and as Uint8Array from PGlite. */
export function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError('expected bytea');
}

/** The Euclidean norm, in double precision whatever the input's type. */
export function l2norm(v: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += (v[i] as number) * (v[i] as number);
  return Math.sqrt(sum);
}

/** `v / |v|` as float32; null when `v` has no direction (zero or not finite), which callers must not store. */
export function normalized(v: ArrayLike<number>): Float32Array | null {
  const norm = l2norm(v);
  if (!(norm > 0) || !Number.isFinite(norm)) return null;
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = (v[i] as number) / norm;
  return out;
}

/** Deterministic clustered vectors for benchmarks and tests (no model needed). */

/** mulberry32: small, fast, seedable; good enough to place synthetic points. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = rand() || Number.MIN_VALUE;
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

export function normalize(v: Float32Array): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n) || 1;
  for (let i = 0; i < v.length; i++) v[i] = (v[i] as number) / n;
  return v;
}

export class ClusteredSpace {
  readonly centers: Float32Array[];
  private readonly gauss: () => number;

  constructor(
    readonly dim: number,
    clusters: number,
    seed: number,
    /** Per-dimension noise around a center, before normalising. */
    private readonly spread = 0.03,
  ) {
    this.gauss = gaussian(rng(seed));
    this.centers = Array.from({ length: clusters }, () => {
      const c = new Float32Array(dim);
      for (let i = 0; i < dim; i++) c[i] = this.gauss();
      return normalize(c);
    });
  }

  /** A unit vector near center `c`. */
  near(c: number): Float32Array {
    const center = this.centers[c];
    if (!center) throw new RangeError(`no cluster ${c}`);
    const v = new Float32Array(this.dim);
    for (let i = 0; i < this.dim; i++) v[i] = (center[i] as number) + this.spread * this.gauss();
    return normalize(v);
  }
}

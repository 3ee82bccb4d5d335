/**
 * A keyed orthogonal transform of embeddings, one per (tenant, user, data key version): what is
 * stored, and what a query searches with, is Q·v instead of v (docs/security.md, "Vectors at
 * rest"). Q is orthogonal, so cosine and L2 distances between two vectors of one scope are
 * what they were; across scopes, or against the public model's own embeddings, they mean nothing.
 *
 * Q is structured, never a d×d matrix: ROUNDS rounds of a random sign flip, a random
 * permutation and a normalized fast Walsh–Hadamard transform on power-of-two blocks that
 * cover the dimension (384 = 256 + 128). Each step is orthogonal, so their product is. The
 * signs and permutations come from AES-256-CTR keyed with HKDF(data key's vector seed,
 * salt = user pseudonym, info = label + dimension): O(d log d) per vector, 9 bytes of state
 * per dimension (3.4 KB at 384).
 */
import { createCipheriv, hkdfSync } from 'node:crypto';

/** Rounds of sign flip, permutation and block Walsh–Hadamard. */
export const TRANSFORM_ROUNDS = 3;

const INFO_LABEL = 'relay/vector-transform/v1\0';

interface Round {
  /** y[i] = x[perm[i]] · mult[i] (dimensions are at most 65536). */
  perm: Uint16Array;
  /**
   * The round's random sign of input coordinate perm[i], times the Walsh–Hadamard normalisation
   * the previous round left for it: each block's 1/√n is applied one pass later, on the way in.
   */
  mult: Float64Array;
}

/** Powers of two, largest first, summing to `dim` (its binary digits). */
function blocksOf(dim: number): number[] {
  const blocks: number[] = [];
  for (let bit = 1 << 30; bit >= 1; bit >>>= 1) if (dim & bit) blocks.push(bit);
  return blocks;
}

/** In place, unnormalised (H·H = n·I), on `x[from, from + n)`; n a power of two. */
function walshHadamard(x: Float64Array, from: number, n: number): void {
  const end = from + n;
  let h = 1;
  if (n >= 4) {
    // The first two stages at once (a radix-4 butterfly): the inner loops of h = 1 and 2 are all overhead.
    for (let i = from; i < end; i += 4) {
      const a = x[i]!;
      const b = x[i + 1]!;
      const c = x[i + 2]!;
      const d = x[i + 3]!;
      const ab = a + b;
      const amb = a - b;
      const cd = c + d;
      const cmd = c - d;
      x[i] = ab + cd;
      x[i + 1] = amb + cmd;
      x[i + 2] = ab - cd;
      x[i + 3] = amb - cmd;
    }
    h = 4;
  }
  for (; h < n; h <<= 1) {
    for (let i = from; i < end; i += h << 1) {
      for (let j = i; j < i + h; j++) {
        const a = x[j]!;
        const b = x[j + h]!;
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

/** A stream of unbiased integers from a key (AES-256-CTR over zeros). */
class KeyedStream {
  readonly #cipher;
  #buf = Buffer.alloc(0);
  #at = 0;
  constructor(key: Buffer) {
    this.#cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }
  uint32(): number {
    if (this.#at + 4 > this.#buf.length) {
      this.#buf = this.#cipher.update(Buffer.alloc(4096));
      this.#at = 0;
    }
    const v = this.#buf.readUInt32LE(this.#at);
    this.#at += 4;
    return v;
  }
  /** Uniform in [0, n), by rejection. */
  below(n: number): number {
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const v = this.uint32();
      if (v < limit) return v % n;
    }
  }
}

/**
 * Working space of `apply` and `invert`, one pair per dimension: both run synchronously, so one
 * pair serves every transform of the process. A Float64Array of 384 lives outside the JS heap
 * and costs ~3 µs to allocate, as much as a third of the transform itself.
 */
const scratch = new Map<number, [Float64Array, Float64Array]>();
function scratchFor(dim: number): [Float64Array, Float64Array] {
  let pair = scratch.get(dim);
  if (pair === undefined) scratch.set(dim, (pair = [new Float64Array(dim), new Float64Array(dim)]));
  return pair;
}

export class VectorTransform {
  readonly #rounds: readonly Round[];
  readonly #blocks: readonly number[];
  /** 1/√n of the block coordinate i is in: the last round's normalisation. */
  readonly #scale: Float64Array;

  private constructor(
    readonly dim: number,
    rounds: Round[],
    blocks: number[],
    scale: Float64Array,
  ) {
    this.#rounds = rounds;
    this.#blocks = blocks;
    this.#scale = scale;
  }

  /**
   * The transform for `dim`-dimensional vectors keyed by `seed` (32 bytes: a data key's vector
   * seed) and `salt` (the user's pseudonym). The same inputs always give the same transform.
   */
  static derive(seed: Uint8Array, salt: Uint8Array, dim: number): VectorTransform {
    if (seed.length !== 32) throw new RangeError('vector transform seed must be 32 bytes');
    if (!Number.isInteger(dim) || dim < 1 || dim > 65536) throw new RangeError('dimension must be an integer in 1..65536');
    const key = Buffer.from(hkdfSync('sha256', seed, salt, Buffer.from(`${INFO_LABEL}${dim}`, 'utf8'), 32));
    const stream = new KeyedStream(key);
    key.fill(0);
    const blocks = blocksOf(dim);
    const scale = new Float64Array(dim);
    for (let from = 0, b = 0; b < blocks.length; from += blocks[b]!, b++) scale.fill(1 / Math.sqrt(blocks[b]!), from, from + blocks[b]!);
    const rounds: Round[] = [];
    const signs = new Int8Array(dim);
    for (let r = 0; r < TRANSFORM_ROUNDS; r++) {
      let bits = 0;
      for (let i = 0; i < dim; i++) {
        if (i % 32 === 0) bits = stream.uint32();
        signs[i] = (bits >>> (i % 32)) & 1 ? -1 : 1;
      }
      const perm = new Uint16Array(dim);
      for (let i = 0; i < dim; i++) perm[i] = i;
      for (let i = dim - 1; i > 0; i--) {
        const j = stream.below(i + 1);
        const t = perm[i]!;
        perm[i] = perm[j]!;
        perm[j] = t;
      }
      const mult = new Float64Array(dim);
      for (let i = 0; i < dim; i++) mult[i] = signs[perm[i]!]! * (r === 0 ? 1 : scale[perm[i]!]!);
      rounds.push({ perm, mult });
    }
    return new VectorTransform(dim, rounds, blocks, scale);
  }

  #check(v: ArrayLike<number>): void {
    if (v.length !== this.dim) throw new RangeError(`embedding has ${v.length} dimensions, the transform expects ${this.dim}`);
  }

  #hadamardBlocks(x: Float64Array): void {
    let from = 0;
    for (const n of this.#blocks) {
      walshHadamard(x, from, n);
      from += n;
    }
  }

  /** Q·v: per round, sign and permute (one pass), Walsh–Hadamard; the last normalisation at the end. */
  apply(v: ArrayLike<number>): number[] {
    this.#check(v);
    const dim = this.dim;
    let [x, y] = scratchFor(dim);
    for (let i = 0; i < dim; i++) x[i] = v[i]!;
    for (const { perm, mult } of this.#rounds) {
      for (let i = 0; i < dim; i++) y[i] = x[perm[i]!]! * mult[i]!;
      this.#hadamardBlocks(y);
      [x, y] = [y, x];
    }
    const scale = this.#scale;
    const out = new Array<number>(dim);
    for (let i = 0; i < dim; i++) out[i] = x[i]! * scale[i]!;
    return out;
  }

  /** Qᵀ·w: the vector `apply` was given (each step undone, in reverse). */
  invert(w: ArrayLike<number>): number[] {
    this.#check(w);
    const dim = this.dim;
    let [y, x] = scratchFor(dim);
    // Undo the last normalisation; then each round: H·H = n·I, so H·u/n undoes H.
    const scale = this.#scale;
    for (let i = 0; i < dim; i++) y[i] = w[i]! / scale[i]!;
    for (let r = this.#rounds.length - 1; r >= 0; r--) {
      const { perm, mult } = this.#rounds[r]!;
      this.#hadamardBlocks(y);
      // y = H·z with z[i] = x[perm[i]]·mult[i], and H·H = n·I: z[i] = y[i]/n = y[i]·scale[i]².
      for (let i = 0; i < dim; i++) x[perm[i]!] = (y[i]! * scale[i]! * scale[i]!) / mult[i]!;
      [x, y] = [y, x];
    }
    return Array.from(y);
  }
}

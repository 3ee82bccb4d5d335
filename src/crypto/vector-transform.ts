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
  /** ±1 per coordinate, applied first. */
  signs: Int8Array;
  /** y[i] = x[perm[i]] (dimensions are at most 65536). */
  perm: Uint16Array;
}

/** Powers of two, largest first, summing to `dim` (its binary digits). */
function blocksOf(dim: number): number[] {
  const blocks: number[] = [];
  for (let bit = 1 << 30; bit >= 1; bit >>>= 1) if (dim & bit) blocks.push(bit);
  return blocks;
}

/** In place, normalized (so it is its own inverse), on `x[from, from + n)`; n a power of two. */
function walshHadamard(x: Float64Array, from: number, n: number): void {
  for (let h = 1; h < n; h <<= 1) {
    for (let i = from; i < from + n; i += h << 1) {
      for (let j = i; j < i + h; j++) {
        const a = x[j]!;
        const b = x[j + h]!;
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  const scale = 1 / Math.sqrt(n);
  for (let i = from; i < from + n; i++) x[i]! *= scale;
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

export class VectorTransform {
  readonly #rounds: readonly Round[];
  readonly #blocks: readonly number[];

  private constructor(
    readonly dim: number,
    rounds: Round[],
  ) {
    this.#rounds = rounds;
    this.#blocks = blocksOf(dim);
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
    const rounds: Round[] = [];
    for (let r = 0; r < TRANSFORM_ROUNDS; r++) {
      const signs = new Int8Array(dim);
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
      rounds.push({ signs, perm });
    }
    return new VectorTransform(dim, rounds);
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

  /** Q·v. */
  apply(v: ArrayLike<number>): Float64Array {
    this.#check(v);
    let x = Float64Array.from(v);
    let y = new Float64Array(this.dim);
    for (const { signs, perm } of this.#rounds) {
      for (let i = 0; i < this.dim; i++) x[i]! *= signs[i]!;
      for (let i = 0; i < this.dim; i++) y[i] = x[perm[i]!]!;
      this.#hadamardBlocks(y);
      [x, y] = [y, x];
    }
    return x;
  }

  /** Qᵀ·w: the vector `apply` was given. */
  invert(w: ArrayLike<number>): Float64Array {
    this.#check(w);
    let y = Float64Array.from(w);
    let x = new Float64Array(this.dim);
    for (let r = this.#rounds.length - 1; r >= 0; r--) {
      const { signs, perm } = this.#rounds[r]!;
      this.#hadamardBlocks(y);
      for (let i = 0; i < this.dim; i++) x[perm[i]!] = y[i]!;
      for (let i = 0; i < this.dim; i++) x[i]! *= signs[i]!;
      [x, y] = [y, x];
    }
    return y;
  }
}

import { LRUCache } from 'lru-cache';
import { CryptoError, describeSealed, VectorTransform, type Keyring } from '../crypto/index.ts';
import type { KeyedVector, Scope, SearchVectors } from '../store/index.ts';

/**
 * Where embeddings live at rest (docs/security.md, "Vectors at rest"). With the transform on
 * (the default), a row's vector is stored under the keyed orthogonal transform of its scope and
 * of the data key version that sealed its text (`vector_key` = that version), and a query
 * searches with the same transform of its own vector. With it off, vectors are stored as the
 * model made them (`vector_key` null). Either way a query can read rows written either way:
 * it carries its vector in every space the tenant's keys allow.
 */
export class VectorSpace {
  /**
   * Derived transforms of recent (seed, user) pairs: deriving costs ~4 applications (HKDF, an
   * AES-CTR stream, three shuffles), and a user's queries come in runs. 3.4 KB each at 384-d.
   * Keyed by the seed's identity, never its bytes: a seed the keyring dropped (a shred) is never
   * handed out again, so what was derived from it is unreachable and ages out.
   */
  readonly #cache = new LRUCache<string, VectorTransform>({ max: 1024, ttl: 300_000 });
  readonly #seedIds = new WeakMap<Buffer, number>();
  #nextSeedId = 0;

  constructor(
    private readonly keyring: Keyring,
    readonly dim: number,
    /** New vectors under the transform (RELAY_VECTOR_TRANSFORM, default on). */
    readonly transform: boolean,
  ) {}

  #derive(seed: Buffer, userHash: Buffer): VectorTransform {
    let id = this.#seedIds.get(seed);
    if (id === undefined) this.#seedIds.set(seed, (id = this.#nextSeedId++));
    const slot = `${id}:${userHash.toString('hex')}`;
    let t = this.#cache.get(slot);
    if (t === undefined) this.#cache.set(slot, (t = VectorTransform.derive(seed, userHash, this.dim)));
    return t;
  }

  /** The transform of the scope under data key `version`. */
  async transformFor(scope: Scope, version: number): Promise<VectorTransform> {
    const seed = (await this.keyring.vectorSeeds(scope.tenantId, version)).get(version);
    if (seed === undefined) throw new CryptoError('unknown_key');
    return this.#derive(seed, scope.userHash);
  }

  /**
   * How a row whose text is `sealed` stores `embedding`: under the transform of the data key
   * version that sealed it, or as it is with the transform off.
   */
  async forRow(scope: Scope, sealed: Buffer, embedding: ArrayLike<number>): Promise<KeyedVector> {
    if (!this.transform) return { key: null, vector: embedding };
    const version = describeSealed(sealed).keyVersion;
    return { key: version, vector: (await this.transformFor(scope, version)).apply(embedding) };
  }

  /**
   * The query vector in every space the scope's rows may be in: the model's own, and each of
   * the tenant's data key versions. The primary one (the index searches with it) is where new
   * rows go: the newest version's with the transform on, the model's own with it off. The
   * others are computed when first read: the search reads them only for a scope that holds rows
   * in more than one space (between a `keys rotate` and its `keys reseal`).
   */
  async query(scope: Scope, embedding: ArrayLike<number>): Promise<SearchVectors> {
    const seeds = await this.keyring.vectorSeeds(scope.tenantId);
    const transformed = (version: number) => this.#derive(seeds.get(version)!, scope.userHash).apply(embedding);
    const lazily = (key: number): KeyedVector => {
      let vector: number[] | undefined;
      return {
        key,
        get vector() {
          return (vector ??= transformed(key));
        },
      };
    };
    const versions = [...seeds.keys()].sort((a, b) => b - a);
    const raw: KeyedVector = { key: null, vector: embedding };
    const [newest, ...older] = versions;
    if (!this.transform || newest === undefined) return { primary: raw, others: versions.map(lazily) };
    return { primary: { key: newest, vector: transformed(newest) }, others: [...older.map(lazily), raw] };
  }
}

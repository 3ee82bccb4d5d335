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
  constructor(
    private readonly keyring: Keyring,
    readonly dim: number,
    /** New vectors under the transform (RELAY_VECTOR_TRANSFORM, default on). */
    readonly transform: boolean,
  ) {}

  /** The transform of the scope under data key `version`. */
  async transformFor(scope: Scope, version: number): Promise<VectorTransform> {
    const seed = (await this.keyring.vectorSeeds(scope.tenantId, version)).get(version);
    if (seed === undefined) throw new CryptoError('unknown_key');
    return VectorTransform.derive(seed, scope.userHash, this.dim);
  }

  /**
   * How a row whose text is `sealed` stores `embedding`: under the transform of the data key
   * version that sealed it, or as it is with the transform off. `cache` spares a batch of rows
   * deriving one transform per row.
   */
  async forRow(scope: Scope, sealed: Buffer, embedding: ArrayLike<number>, cache?: Map<number, VectorTransform>): Promise<KeyedVector> {
    if (!this.transform) return { key: null, vector: embedding };
    const version = describeSealed(sealed).keyVersion;
    let t = cache?.get(version);
    if (t === undefined) {
      t = await this.transformFor(scope, version);
      cache?.set(version, t);
    }
    return { key: version, vector: t.apply(embedding) };
  }

  /**
   * The query vector in every space the scope's rows may be in: the model's own, and each of
   * the tenant's data key versions. The primary one (the index searches with it) is where new
   * rows go: the newest version's with the transform on, the model's own with it off.
   */
  async query(scope: Scope, embedding: ArrayLike<number>): Promise<SearchVectors> {
    const seeds = await this.keyring.vectorSeeds(scope.tenantId);
    const keyed: KeyedVector[] = [...seeds.keys()]
      .sort((a, b) => b - a)
      .map((version) => ({ key: version, vector: VectorTransform.derive(seeds.get(version)!, scope.userHash, this.dim).apply(embedding) }));
    const raw: KeyedVector = { key: null, vector: embedding };
    const [newest, ...older] = keyed;
    if (!this.transform || newest === undefined) return { primary: raw, others: keyed };
    return { primary: newest, others: [...older, raw] };
  }
}

/** Storage of wrapped tenant keys. The SQL implementation lives with the store. */

export type TenantKeyKind = 'data' | 'hmac';

export interface WrappedKey {
  tenantId: string;
  kind: TenantKeyKind;
  version: number;
  /** The key as the provider wrapped it, bound to (tenantId, kind, version). */
  wrapped: Buffer;
  /** `KeyProvider.id` of the provider that wrapped it. */
  providerId: string;
  createdAt: Date;
}

export interface TenantKeyRepository {
  /** every non-shredded key row of the tenant, all versions */
  list(tenantId: string): Promise<WrappedKey[]>;
  /** insert if (tenantId, kind, version) is free; false when another writer won the race */
  insert(key: WrappedKey): Promise<boolean>;
  /** true if the tenant's keys were shredded (then nothing may be created again silently) */
  isShredded(tenantId: string): Promise<boolean>;
  /** replace `wrapped` and `providerId` of the row (tenantId, kind, version): master key rotation */
  replaceWrapped?(key: WrappedKey): Promise<void>;
}

export interface SerializedKeyRepository {
  keys: { tenantId: string; kind: TenantKeyKind; version: number; wrapped: string; providerId: string; createdAt: string }[];
  shredded: string[];
}

const copy = (k: WrappedKey): WrappedKey => ({ ...k, wrapped: Buffer.from(k.wrapped), createdAt: new Date(k.createdAt) });

/**
 * An in-memory `TenantKeyRepository`, for tests and ephemeral use (a benchmark, a one-off
 * process): its keys die with the process, and so does everything sealed under them.
 */
export class MemoryKeyRepository implements TenantKeyRepository {
  readonly #keys = new Map<string, WrappedKey[]>();
  readonly #shredded = new Set<string>();

  async list(tenantId: string): Promise<WrappedKey[]> {
    if (this.#shredded.has(tenantId)) return [];
    return (this.#keys.get(tenantId) ?? []).map(copy);
  }

  async insert(key: WrappedKey): Promise<boolean> {
    if (this.#shredded.has(key.tenantId)) return false;
    const rows = this.#keys.get(key.tenantId) ?? [];
    if (rows.some((r) => r.kind === key.kind && r.version === key.version)) return false;
    rows.push(copy(key));
    this.#keys.set(key.tenantId, rows);
    return true;
  }

  async isShredded(tenantId: string): Promise<boolean> {
    return this.#shredded.has(tenantId);
  }

  async replaceWrapped(key: WrappedKey): Promise<void> {
    const rows = this.#keys.get(key.tenantId) ?? [];
    const i = rows.findIndex((r) => r.kind === key.kind && r.version === key.version);
    if (i < 0) throw new Error('replaceWrapped: no such key row');
    rows[i] = copy(key);
  }

  /** Destroys every key of the tenant and remembers that it did (crypto-shredding). */
  async shred(tenantId: string): Promise<void> {
    for (const row of this.#keys.get(tenantId) ?? []) row.wrapped.fill(0);
    this.#keys.delete(tenantId);
    this.#shredded.add(tenantId);
  }

  /** Removes one key row without marking the tenant shredded (tests of `unknown_key`). */
  async delete(tenantId: string, kind: TenantKeyKind, version: number): Promise<void> {
    const rows = this.#keys.get(tenantId) ?? [];
    this.#keys.set(tenantId, rows.filter((r) => !(r.kind === kind && r.version === version)));
  }

  tenants(): string[] {
    return [...this.#keys.keys()];
  }

  toJSON(): SerializedKeyRepository {
    const keys = [...this.#keys.values()].flat().map((k) => ({
      ...k,
      wrapped: k.wrapped.toString('base64'),
      createdAt: k.createdAt.toISOString(),
    }));
    return { keys, shredded: [...this.#shredded] };
  }

  static fromJSON(data: SerializedKeyRepository): MemoryKeyRepository {
    const repo = new MemoryKeyRepository();
    for (const k of data.keys) {
      const rows = repo.#keys.get(k.tenantId) ?? [];
      rows.push({ ...k, wrapped: Buffer.from(k.wrapped, 'base64'), createdAt: new Date(k.createdAt) });
      repo.#keys.set(k.tenantId, rows);
    }
    for (const t of data.shredded) repo.#shredded.add(t);
    return repo;
  }
}

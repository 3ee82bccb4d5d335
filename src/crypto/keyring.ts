/**
 * The keyring: per-tenant data keys and HMAC keys, wrapped by a `KeyProvider`, stored by a
 * `TenantKeyRepository`, unwrapped on first use and cached (LRU, TTL). `seal`, `openSealed`
 * and `hmacUser` return promises, but when the tenant's keys are cached they do all their
 * work synchronously, with no await inside.
 */
import { createHmac, randomBytes, type KeyObject, createSecretKey } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { encodeKeyAad, type SealContext } from './aad.ts';
import { CryptoError, KeyError, type OpenFailureHook } from './errors.ts';
import { KEY_BYTES } from './gcm.ts';
import type { KeyProvider } from './key-provider.ts';
import type { TenantKeyKind, TenantKeyRepository, WrappedKey } from './key-repository.ts';
import { openParsed, prepareDataKey, sealWithKey, type DataKey } from './seal.ts';
import { parseSealed, type SealedParts } from './sealed-format.ts';

/** Key id of tenant data keys in the sealed header. */
export const DATA_KEY_ID = 'dk';
/**
 * Seals per data key version (per process) before a new version is made: 2^28 is 1/16 of
 * the 2^32 messages NIST SP 800-38D allows one key with random 96-bit nonces.
 */
export const DEFAULT_ROTATE_AFTER = 2 ** 28;

export interface KeyringOptions {
  /** Wraps new keys; also unwraps keys it wrapped. */
  provider: KeyProvider;
  repository: TenantKeyRepository;
  /** Providers that wrapped older rows (e.g. the previous master key); unwrap only. */
  previousProviders?: readonly KeyProvider[];
  /** Tenants whose unwrapped keys stay cached; default 10,000. */
  cacheMaxTenants?: number;
  /** How long unwrapped keys stay cached, ms; default 300,000 (5 min). Also bounds how long
   * another replica may keep using keys after a shred. */
  cacheTtlMs?: number;
  /** Seals with one data key version in this process before rotating; default 2^28. */
  rotateAfter?: number;
  /** Called with the reason of every failed open (wire to `relay_open_failures_total`). */
  onOpenFailure?: OpenFailureHook;
  /** Clock for `createdAt`; default `() => new Date()`. */
  now?: () => Date;
  /**
   * Key changes made elsewhere (another process's `relay keys …`): the keyring drops what it
   * cached of a tenant when told, and all of it when changes may have been missed. While the
   * feed is not `live`, cached keys older than `staleAfterMs` are not used (loaded afresh).
   */
  changes?: KeyChangeFeed;
  /** With `changes`: how old cached keys may be while the feed is down, ms; default 1000. */
  staleAfterMs?: number;
}

/**
 * Where a keyring hears of key changes made by other processes (the store's key events:
 * PostgreSQL LISTEN/NOTIFY). `live` is false while the feed cannot promise to deliver them.
 */
export interface KeyChangeFeed {
  readonly live: boolean;
  /** `changed(tenantId)`: that tenant's keys changed (null: any tenant's); `missed()`: changes may have been lost. Returns the unsubscribe. */
  subscribe(listener: { changed(tenantId: string | null): void; missed(): void }): () => void;
}

interface SealCounter {
  version: number;
  sealed: number;
}

interface TenantKeys {
  /** performance.now() when loaded from the repository. */
  loadedAt: number;
  shredded: boolean;
  data: Map<number, DataKey>;
  /** Each data key version's vector seed (the same keys as `data`). */
  vectorSeeds: Map<number, Buffer>;
  newest: DataKey | undefined;
  hmac: KeyObject | undefined;
  counter: SealCounter | undefined;
}

const USER_HASH_LABEL = Buffer.from('relay/user-hash/v1\0', 'ascii');

/** Values the service hands out and takes back (`tag`): a label no user pseudonym's input starts with. */
const TAG_LABEL = Buffer.from('relay/tag/v1\0', 'ascii');

function toBytes(plaintext: Uint8Array | string): Uint8Array {
  if (typeof plaintext === 'string') return Buffer.from(plaintext, 'utf8');
  if (plaintext instanceof Uint8Array) return plaintext;
  throw new TypeError('plaintext must be a Buffer, Uint8Array or string');
}

function hmacWith(key: KeyObject, userId: string): Buffer {
  if (typeof userId !== 'string' || userId.length === 0) throw new TypeError('userId must be a non-empty string');
  if (!(userId as unknown as { isWellFormed(): boolean }).isWellFormed()) throw new TypeError('userId is not well-formed Unicode');
  return createHmac('sha256', key).update(USER_HASH_LABEL).update(userId, 'utf8').digest();
}

export class Keyring {
  #provider: KeyProvider;
  readonly #providers = new Map<string, KeyProvider>();
  readonly #repo: TenantKeyRepository;
  readonly #cache: LRUCache<string, TenantKeys>;
  readonly #rotateAfter: number;
  readonly #onOpenFailure: OpenFailureHook | undefined;
  readonly #now: () => Date;
  /** Survives cache eviction, so an evicted tenant does not restart its nonce budget. */
  readonly #counters = new Map<string, SealCounter>();
  readonly #loading = new Map<string, { gen: number; promise: Promise<TenantKeys> }>();
  readonly #generation = new Map<string, number>();
  readonly #creating = new Map<string, Promise<TenantKeys>>();
  /** Bumped by `forgetAll`: a load begun before it must not fill the cache. */
  #epoch = 0;
  readonly #changes: KeyChangeFeed | undefined;
  readonly #staleAfterMs: number;
  readonly #unsubscribe: (() => void) | undefined;

  constructor(opts: KeyringOptions) {
    this.#provider = opts.provider;
    for (const p of opts.previousProviders ?? []) this.#providers.set(p.id, p);
    this.#providers.set(opts.provider.id, opts.provider);
    this.#repo = opts.repository;
    this.#cache = new LRUCache({ max: opts.cacheMaxTenants ?? 10_000, ttl: opts.cacheTtlMs ?? 300_000 });
    const rotateAfter = opts.rotateAfter ?? DEFAULT_ROTATE_AFTER;
    if (!Number.isInteger(rotateAfter) || rotateAfter < 1 || rotateAfter > 2 ** 31) {
      throw new RangeError('rotateAfter must be an integer in 1..2^31');
    }
    this.#rotateAfter = rotateAfter;
    this.#onOpenFailure = opts.onOpenFailure;
    this.#now = opts.now ?? (() => new Date());
    this.#changes = opts.changes;
    this.#staleAfterMs = opts.staleAfterMs ?? 1000;
    this.#unsubscribe = opts.changes?.subscribe({
      changed: (tenantId) => (tenantId === null ? this.forgetAll() : this.forget(tenantId)),
      missed: () => this.forgetAll(),
    });
  }

  /** Stops listening to the change feed (the keyring still works, on its cache TTL alone). */
  close(): void {
    this.#unsubscribe?.();
  }

  /** The tenant's cached keys, unless the change feed is down and they are older than the grace. */
  #cached(tenantId: string): TenantKeys | undefined {
    const st = this.#cache.get(tenantId);
    if (st === undefined || this.#changes === undefined || this.#changes.live) return st;
    return performance.now() - st.loadedAt <= this.#staleAfterMs ? st : undefined;
  }

  /** Id of the provider that wraps new keys. */
  get providerId(): string {
    return this.#provider.id;
  }

  /** Seals under the tenant's newest data key (made on first use, rotated at the threshold). */
  seal(plaintext: Uint8Array | string, ctx: SealContext): Promise<Buffer> {
    try {
      const st = this.#cached(ctx.tenantId);
      if (st?.newest !== undefined && st.counter !== undefined && st.counter.sealed < this.#rotateAfter) {
        st.counter.sealed++;
        return Promise.resolve(sealWithKey(st.newest, toBytes(plaintext), ctx));
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#sealSlow(plaintext, ctx);
  }

  async #sealSlow(plaintext: Uint8Array | string, ctx: SealContext): Promise<Buffer> {
    const tenantId = ctx.tenantId;
    let st = await this.#keys(tenantId);
    for (let tries = 0; ; tries++) {
      if (st.shredded) throw new CryptoError('key_shredded');
      if (tries > 8) throw new Error('keyring: the repository did not show the data key it reported as created');
      if (st.newest === undefined || st.counter === undefined) st = await this.#create(tenantId, 'data', 1);
      else if (st.counter.sealed >= this.#rotateAfter) st = await this.#create(tenantId, 'data', st.newest.version + 1);
      else break;
    }
    st.counter.sealed++;
    return sealWithKey(st.newest, toBytes(plaintext), ctx);
  }

  /** Opens a sealed value for `ctx`; rejects with `CryptoError` (counted) when it cannot. */
  openSealed(sealed: Buffer, ctx: SealContext): Promise<Buffer> {
    let parts: SealedParts;
    let st: TenantKeys | undefined;
    try {
      parts = parseSealed(sealed);
      st = this.#cached(ctx.tenantId);
      const key = parts.keyId === DATA_KEY_ID ? st?.data.get(parts.keyVersion) : undefined;
      if (key !== undefined) return Promise.resolve(openParsed(key, parts, ctx));
    } catch (err) {
      return Promise.reject(this.#failed(err));
    }
    return this.#openSlow(parts, ctx, st);
  }

  async #openSlow(parts: SealedParts, ctx: SealContext, cached: TenantKeys | undefined): Promise<Buffer> {
    try {
      if (cached?.shredded) throw new CryptoError('key_shredded');
      if (parts.keyId !== DATA_KEY_ID) throw new CryptoError('unknown_key');
      // A version we do not know may have been made by another replica since we loaded: load
      // again (joining a load already under way, so a page of such values costs one load).
      const st = cached === undefined ? await this.#keys(ctx.tenantId) : await (this.#loading.get(ctx.tenantId)?.promise ?? this.#reload(ctx.tenantId));
      if (st.shredded) throw new CryptoError('key_shredded');
      const key = st.data.get(parts.keyVersion);
      if (key === undefined) throw new CryptoError('unknown_key');
      return openParsed(key, parts, ctx);
    } catch (err) {
      throw this.#failed(err);
    }
  }

  #failed(err: unknown): unknown {
    if (err instanceof CryptoError && this.#onOpenFailure) {
      try {
        this.#onOpenFailure(err.reason);
      } catch {
        // a metrics hook must never turn a counted failure into another error
      }
    }
    return err;
  }

  /** HMAC-SHA256 of the user id under the tenant's own HMAC key (made on first use). */
  hmacUser(tenantId: string, userId: string): Promise<Buffer> {
    try {
      const st = this.#cached(tenantId);
      if (st?.hmac !== undefined) return Promise.resolve(hmacWith(st.hmac, userId));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#hmacSlow(tenantId, userId);
  }

  async #hmacSlow(tenantId: string, userId: string): Promise<Buffer> {
    let st = await this.#keys(tenantId);
    // Counted: every request for a shredded tenant comes here first (its pseudonyms need the HMAC key).
    if (st.shredded) throw this.#failed(new CryptoError('key_shredded'));
    if (st.hmac === undefined) st = await this.#create(tenantId, 'hmac', 1);
    if (st.shredded) throw this.#failed(new CryptoError('key_shredded'));
    if (st.hmac === undefined) throw new Error('keyring: the repository did not show the HMAC key it reported as created');
    return hmacWith(st.hmac, userId);
  }

  /**
   * HMAC-SHA256 of `purpose` and `data` under the tenant's HMAC key (made on first use), kept
   * apart from user pseudonyms by its own label: authenticates values the service hands out and
   * takes back, such as list cursors. Every process of a deployment computes the same tag (the
   * key is the tenant's, in the key catalog); a shredded tenant has none (`key_shredded`).
   */
  async tag(tenantId: string, purpose: string, data: Uint8Array): Promise<Buffer> {
    if (purpose.length === 0 || purpose.includes('\0')) throw new TypeError('purpose must be non-empty, without NUL');
    let st = await this.#keys(tenantId);
    if (st.shredded) throw this.#failed(new CryptoError('key_shredded'));
    if (st.hmac === undefined) st = await this.#create(tenantId, 'hmac', 1);
    if (st.shredded) throw this.#failed(new CryptoError('key_shredded'));
    if (st.hmac === undefined) throw new Error('keyring: the repository did not show the HMAC key it reported as created');
    return createHmac('sha256', st.hmac).update(TAG_LABEL).update(purpose, 'utf8').update(Buffer.of(0)).update(data).digest();
  }

  /**
   * The vector seed of each of the tenant's data key versions (`VectorTransform.derive`), no key
   * made: a tenant that never sealed has none. With `need`, a version not among those cached
   * (made by another process since) loads the tenant afresh. Synchronous work when cached.
   */
  vectorSeeds(tenantId: string, need?: number): Promise<ReadonlyMap<number, Buffer>> {
    const st = this.#cached(tenantId);
    if (st !== undefined && !st.shredded && (need === undefined || st.vectorSeeds.has(need))) return Promise.resolve(st.vectorSeeds);
    return this.#vectorSeedsSlow(tenantId, st, need);
  }

  async #vectorSeedsSlow(tenantId: string, cached: TenantKeys | undefined, need: number | undefined): Promise<ReadonlyMap<number, Buffer>> {
    let st = cached ?? (await this.#keys(tenantId));
    if (!st.shredded && need !== undefined && !st.vectorSeeds.has(need)) st = await (this.#loading.get(tenantId)?.promise ?? this.#reload(tenantId));
    if (st.shredded) throw this.#failed(new CryptoError('key_shredded'));
    return st.vectorSeeds;
  }

  /** Makes a new data key version for the tenant; new seals use it, old values still open. */
  async rotate(tenantId: string): Promise<number> {
    const st = await this.#reload(tenantId);
    if (st.shredded) throw new CryptoError('key_shredded');
    const next = await this.#create(tenantId, 'data', (st.newest?.version ?? 0) + 1);
    if (next.shredded || next.newest === undefined) throw new CryptoError('key_shredded');
    return next.newest.version;
  }

  /**
   * Master key rotation: rewraps every key row of the given tenants that another provider
   * wrapped, checks the new wrapping opens, stores it with `repository.replaceWrapped` (when
   * the repository has it) and returns the new rows. Rows already under `newProvider` are
   * skipped, so a run cut short can simply be run again. From then on new keys are wrapped by
   * `newProvider`. The keys themselves do not change: nothing needs resealing.
   */
  async rewrap(newProvider: KeyProvider, tenantIds: Iterable<string>): Promise<WrappedKey[]> {
    this.#providers.set(newProvider.id, newProvider);
    const out: WrappedKey[] = [];
    for (const tenantId of tenantIds) {
      for (const row of await this.#repo.list(tenantId)) {
        if (row.providerId === newProvider.id) continue;
        const aad = encodeKeyAad(row);
        const root = await this.#providerFor(row.providerId).unwrap(row.wrapped, aad);
        try {
          const wrapped = await newProvider.wrap(root, aad);
          const check = await newProvider.unwrap(wrapped, aad);
          const same = check.equals(root);
          check.fill(0);
          if (!same) throw new KeyError('unwrap_failed', `provider ${newProvider.id} did not return the key it wrapped`);
          const next: WrappedKey = { ...row, wrapped, providerId: newProvider.id };
          await this.#repo.replaceWrapped?.(next);
          out.push(next);
        } finally {
          root.fill(0);
        }
      }
    }
    this.#provider = newProvider;
    return out;
  }

  /** Drops the tenant's cached keys (after a shred, so nothing opens from memory). */
  forget(tenantId: string): void {
    this.#cache.delete(tenantId);
    this.#loading.delete(tenantId);
    this.#generation.set(tenantId, (this.#generation.get(tenantId) ?? 0) + 1);
  }

  /** Drops every cached key (key changes may have been missed); loads under way do not fill the cache. */
  forgetAll(): void {
    this.#epoch++;
    this.#cache.clear();
    this.#loading.clear();
  }

  /** Tenants whose keys are cached now (tests, diagnostics). */
  get cachedTenants(): number {
    return this.#cache.size;
  }

  /** Loads the tenant's keys into the cache (e.g. before a burst of seals). */
  async warm(tenantId: string): Promise<void> {
    await this.#keys(tenantId);
  }

  #providerFor(id: string): KeyProvider {
    const p = this.#providers.get(id);
    if (p === undefined) throw new KeyError('unknown_provider', `no key provider "${id}" was configured for this keyring`);
    return p;
  }

  #keys(tenantId: string): Promise<TenantKeys> {
    const st = this.#cached(tenantId);
    if (st !== undefined) return Promise.resolve(st);
    return this.#loading.get(tenantId)?.promise ?? this.#reload(tenantId);
  }

  /** Loads afresh; only the newest load of a tenant may fill the cache. */
  #reload(tenantId: string): Promise<TenantKeys> {
    const gen = (this.#generation.get(tenantId) ?? 0) + 1;
    this.#generation.set(tenantId, gen);
    const epoch = this.#epoch;
    const promise = this.#load(tenantId).then(
      (st) => {
        if (this.#generation.get(tenantId) === gen && this.#epoch === epoch) {
          this.#cache.set(tenantId, st);
          this.#loading.delete(tenantId);
        }
        return st;
      },
      (err: unknown) => {
        if (this.#loading.get(tenantId)?.gen === gen) this.#loading.delete(tenantId);
        throw err;
      },
    );
    this.#loading.set(tenantId, { gen, promise });
    return promise;
  }

  async #load(tenantId: string): Promise<TenantKeys> {
    const loadedAt = performance.now();
    const [rows, shredded] = await Promise.all([this.#repo.list(tenantId), this.#repo.isShredded(tenantId)]);
    const st: TenantKeys = { loadedAt, shredded, data: new Map(), vectorSeeds: new Map(), newest: undefined, hmac: undefined, counter: undefined };
    if (shredded) return st;
    let hmacVersion = 0;
    const keys = await Promise.all(rows.map(async (row) => ({ row, root: await this.#unwrap(row) })));
    for (const { row, root } of keys) {
      if (row.kind === 'data') {
        const key = prepareDataKey(root, DATA_KEY_ID, row.version);
        st.data.set(row.version, key);
        st.vectorSeeds.set(row.version, key.vectorSeed);
        if (st.newest === undefined || row.version > st.newest.version) st.newest = key;
      } else if (row.kind === 'hmac' && row.version > hmacVersion) {
        hmacVersion = row.version;
        st.hmac = createSecretKey(root);
      }
      root.fill(0);
    }
    if (st.newest !== undefined) {
      let counter = this.#counters.get(tenantId);
      if (counter === undefined || counter.version !== st.newest.version) {
        counter = { version: st.newest.version, sealed: 0 };
        this.#counters.set(tenantId, counter);
      }
      st.counter = counter;
    }
    return st;
  }

  async #unwrap(row: WrappedKey): Promise<Buffer> {
    const root = await this.#providerFor(row.providerId).unwrap(row.wrapped, encodeKeyAad(row));
    if (root.length !== KEY_BYTES) throw new KeyError('unwrap_failed', 'unwrapped tenant key has the wrong length');
    return root;
  }

  /** Makes (tenant, kind, version) unless another writer did, then reloads. One at a time per key. */
  #create(tenantId: string, kind: TenantKeyKind, version: number): Promise<TenantKeys> {
    const slot = `${kind}\0${version}\0${tenantId}`;
    let p = this.#creating.get(slot);
    if (p === undefined) {
      p = this.#insert(tenantId, kind, version).finally(() => this.#creating.delete(slot));
      this.#creating.set(slot, p);
    }
    return p;
  }

  async #insert(tenantId: string, kind: TenantKeyKind, version: number): Promise<TenantKeys> {
    const root = randomBytes(KEY_BYTES);
    try {
      const wrapped = await this.#provider.wrap(root, encodeKeyAad({ tenantId, kind, version }));
      // false: another writer made this version first (or the tenant was shredded); the reload shows which
      await this.#repo.insert({ tenantId, kind, version, wrapped, providerId: this.#provider.id, createdAt: this.#now() });
    } finally {
      root.fill(0);
    }
    return this.#reload(tenantId);
  }
}

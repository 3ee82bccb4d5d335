import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  describeSealed,
  encodeKeyAad,
  KeyError,
  Keyring,
  LocalKeyProvider,
  MemoryKeyRepository,
  type TenantKeyRepository,
  type WrappedKey,
} from '../../src/crypto/index.ts';
import { ctxFor, makeRig, reasonOf } from './helpers.ts';

test('unknown key version → unknown_key', async () => {
  const { keyring, repo, provider } = makeRig();
  const ctx = ctxFor();
  const sealed = await keyring.seal('v1 text', ctx);
  await repo.delete(ctx.tenantId, 'data', 1);
  const fresh = new Keyring({ provider, repository: repo });
  assert.equal(await reasonOf(fresh.openSealed(sealed, ctx)), 'unknown_key');
  // an unknown key slot in the header is unknown_key too (a hand-made value: the header is authenticated anyway)
  const other = Buffer.from(sealed);
  other.write('zz', 5, 'ascii');
  assert.equal(await reasonOf(keyring.openSealed(other, ctx)), 'unknown_key');
});

test('shredded tenant → key_shredded for open, seal and hmacUser; other tenants unaffected', async () => {
  const { keyring, repo, provider, failures } = makeRig();
  const a = ctxFor('tenant-a');
  const b = ctxFor('tenant-b');
  const sealedA = await keyring.seal('tenant a memory', a);
  const sealedB = await keyring.seal('tenant b memory', b);
  await keyring.hmacUser('tenant-a', 'alice');
  await repo.shred('tenant-a');
  keyring.forget('tenant-a');
  assert.equal(await reasonOf(keyring.openSealed(sealedA, a)), 'key_shredded');
  assert.equal(await reasonOf(keyring.seal('new', a)), 'key_shredded');
  assert.equal(await reasonOf(keyring.hmacUser('tenant-a', 'alice')), 'key_shredded');
  assert.equal(await reasonOf(keyring.rotate('tenant-a')), 'key_shredded');
  // a new process with the same master key cannot open it either: the key is gone, not hidden
  const fresh = new Keyring({ provider, repository: repo });
  assert.equal(await reasonOf(fresh.openSealed(sealedA, a)), 'key_shredded');
  assert.equal((await keyring.openSealed(sealedB, b)).toString(), 'tenant b memory');
  // Counted: the open, and the refused user pseudonym (every request of a shredded tenant meets it first);
  // a refused seal or rotation is not an open.
  assert.deepEqual(failures, ['key_shredded', 'key_shredded']);
  assert.deepEqual(await repo.list('tenant-a'), []);
});

test('rotate: new seals use the new version, old and new values both open', async () => {
  const { keyring, provider, repo } = makeRig();
  const ctx = ctxFor();
  const old = await keyring.seal('before', ctx);
  assert.equal(await keyring.rotate(ctx.tenantId), 2);
  const neu = await keyring.seal('after', ctx);
  assert.equal(describeSealed(old).keyVersion, 1);
  assert.equal(describeSealed(neu).keyVersion, 2);
  assert.equal((await keyring.openSealed(old, ctx)).toString(), 'before');
  assert.equal((await keyring.openSealed(neu, ctx)).toString(), 'after');
  // a replica that cached versions 1 and 2 still opens version 3 made elsewhere (it reloads)
  const r2 = new Keyring({ provider, repository: repo });
  assert.equal((await r2.openSealed(old, ctx)).toString(), 'before');
  assert.equal(await keyring.rotate(ctx.tenantId), 3);
  const v3 = await keyring.seal('v3', ctx);
  assert.equal((await r2.openSealed(v3, ctx)).toString(), 'v3');
});

test('automatic rotation at the threshold, and old versions keep opening', async () => {
  const { keyring, repo } = makeRig({ rotateAfter: 3 });
  const ctx = ctxFor();
  const sealed: Buffer[] = [];
  for (let i = 0; i < 8; i++) sealed.push(await keyring.seal(`m${i}`, ctx));
  assert.deepEqual(
    sealed.map((s) => describeSealed(s).keyVersion),
    [1, 1, 1, 2, 2, 2, 3, 3],
  );
  for (let i = 0; i < 8; i++) assert.equal((await keyring.openSealed(sealed[i] as Buffer, ctx)).toString(), `m${i}`);
  assert.deepEqual(
    (await repo.list(ctx.tenantId)).filter((k) => k.kind === 'data').map((k) => k.version),
    [1, 2, 3],
  );
});

/** Counts repository calls, to see what the cache saves. */
class CountingRepo implements TenantKeyRepository {
  lists = 0;
  inserts = 0;
  readonly inner = new MemoryKeyRepository();
  async list(t: string): Promise<WrappedKey[]> {
    this.lists++;
    return this.inner.list(t);
  }
  async insert(k: WrappedKey): Promise<boolean> {
    this.inserts++;
    return this.inner.insert(k);
  }
  isShredded(t: string): Promise<boolean> {
    return this.inner.isShredded(t);
  }
}

test('concurrent first seals make one key; cached keys mean no repository calls', async () => {
  const repo = new CountingRepo();
  const keyring = new Keyring({ provider: new LocalKeyProvider(randomBytes(32)), repository: repo });
  const ctx = ctxFor();
  const first = await Promise.all(Array.from({ length: 20 }, (_, i) => keyring.seal(`x${i}`, ctx)));
  assert.ok(first.every((s) => describeSealed(s).keyVersion === 1));
  assert.equal(repo.inserts, 1);
  const lists = repo.lists;
  for (let i = 0; i < 200; i++) await keyring.openSealed(await keyring.seal('y', ctx), ctx);
  assert.equal(repo.lists, lists);
  // two replicas racing to create version 1: one insert wins, both use the winner's key
  const shared = new MemoryKeyRepository();
  const provider = new LocalKeyProvider(randomBytes(32));
  const [r1, r2] = [new Keyring({ provider, repository: shared }), new Keyring({ provider, repository: shared })];
  const [s1, s2] = await Promise.all([r1.seal('one', ctx), r2.seal('two', ctx)]);
  assert.equal((await r2.openSealed(s1, ctx)).toString(), 'one');
  assert.equal((await r1.openSealed(s2, ctx)).toString(), 'two');
});

test('KEK rotation: rewrap, then a keyring with only the new master key opens old values', async () => {
  const { keyring, repo, provider: oldProvider } = makeRig();
  const ctx = ctxFor();
  const sealed = await keyring.seal('survives master key rotation', ctx);
  const userHash = await keyring.hmacUser(ctx.tenantId, 'alice');
  await keyring.seal('b', ctxFor('tenant-b'));
  const newProvider = new LocalKeyProvider(randomBytes(32));
  assert.notEqual(newProvider.id, oldProvider.id);
  const rows = await keyring.rewrap(newProvider, repo.tenants());
  assert.equal(rows.length, 3); // tenant-a data + hmac, tenant-b data
  for (const t of repo.tenants()) for (const r of await repo.list(t)) assert.equal(r.providerId, newProvider.id);
  assert.deepEqual(await keyring.rewrap(newProvider, repo.tenants()), []); // resumable: nothing left to do
  assert.equal(keyring.providerId, newProvider.id);

  const after = new Keyring({ provider: newProvider, repository: repo });
  assert.equal((await after.openSealed(sealed, ctx)).toString(), 'survives master key rotation');
  assert.deepEqual(await after.hmacUser(ctx.tenantId, 'alice'), userHash);
  const stale = new Keyring({ provider: oldProvider, repository: repo });
  await assert.rejects(stale.openSealed(sealed, ctx), (e: unknown) => e instanceof KeyError && e.code === 'unknown_provider');
});

test('a wrapped key copied to another tenant, kind or version does not unwrap', async () => {
  const provider = new LocalKeyProvider(randomBytes(32));
  const repo = new MemoryKeyRepository();
  const keyring = new Keyring({ provider, repository: repo });
  await keyring.seal('x', ctxFor('victim'));
  const [row] = await repo.list('victim');
  assert.ok(row);
  const thief = new MemoryKeyRepository();
  await thief.insert({ ...row, tenantId: 'attacker' });
  const k2 = new Keyring({ provider, repository: thief });
  await assert.rejects(k2.seal('y', ctxFor('attacker')), (e: unknown) => e instanceof KeyError && e.code === 'unwrap_failed');
  const other = new LocalKeyProvider(randomBytes(32));
  await assert.rejects(other.unwrap(row.wrapped, Buffer.alloc(0)), (e: unknown) => e instanceof KeyError && /another master key/.test(e.message));
});

test('hmacUser: stable, per tenant, per key, and not an unkeyed hash of the ids', async () => {
  const masterKey = randomBytes(32);
  const { keyring, repo } = makeRig({ masterKey });
  const h1 = await keyring.hmacUser('tenant-a', 'alice');
  assert.equal(h1.length, 32);
  assert.deepEqual(await keyring.hmacUser('tenant-a', 'alice'), h1);
  assert.notDeepEqual(await keyring.hmacUser('tenant-a', 'bob'), h1);
  assert.notDeepEqual(await keyring.hmacUser('tenant-b', 'alice'), h1);
  // same master key and repository, fresh process state: same pseudonym
  const again = new Keyring({ provider: new LocalKeyProvider(masterKey), repository: MemoryKeyRepository.fromJSON(repo.toJSON()) });
  assert.deepEqual(await again.hmacUser('tenant-a', 'alice'), h1);
  // same tenant id and master key, but another HMAC key (a new repository): a different pseudonym
  const otherKeys = makeRig({ masterKey });
  assert.notDeepEqual(await otherKeys.keyring.hmacUser('tenant-a', 'alice'), h1);
  assert.notDeepEqual(h1, createHash('sha256').update('tenant-a').update('alice').digest());
  await assert.rejects(keyring.hmacUser('tenant-a', ''), TypeError);
});

test('hmacUser pinned vector: a fixed HMAC key gives a fixed pseudonym', async () => {
  const provider = new LocalKeyProvider(Buffer.alloc(32, 0x11));
  const repo = new MemoryKeyRepository();
  const hmacKey = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
  const binding = { tenantId: 'tenant-a', kind: 'hmac' as const, version: 1 };
  await repo.insert({ ...binding, wrapped: await provider.wrap(hmacKey, encodeKeyAad(binding)), providerId: provider.id, createdAt: new Date(0) });
  const keyring = new Keyring({ provider, repository: repo });
  // HMAC-SHA256(key, "relay/user-hash/v1\0" || "alice")
  assert.equal((await keyring.hmacUser('tenant-a', 'alice')).toString('hex'), PINNED_ALICE);
});

// computed independently: python3 -c "import hmac,hashlib; print(hmac.new(bytes(range(32)), b'relay/user-hash/v1\\x00alice', hashlib.sha256).hexdigest())"
const PINNED_ALICE = '3f41ea30582035a5ee7cafbf11aa5959fede517b2f96077ba93525ff7cd2d4ef';

/** A KeyChangeFeed the test drives: what the store's key events are to a running service. */
function manualFeed() {
  const listeners = new Set<{ changed(t: string | null): void; missed(): void }>();
  return {
    live: true,
    subscribe(l: { changed(t: string | null): void; missed(): void }) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    changed: (t: string | null) => listeners.forEach((l) => l.changed(t)),
    missed: () => listeners.forEach((l) => l.missed()),
  };
}

const versionOf = (sealed: Buffer) => describeSealed(sealed).keyVersion;

test('key change feed: a rotation made elsewhere is used from the event on; cached keys alone would keep the old version', async () => {
  const feed = manualFeed();
  const { keyring, repo, provider } = makeRig({ changes: feed });
  const ctx = ctxFor('tenant-feed');
  assert.equal(versionOf(await keyring.seal('one', ctx)), 1);
  // Another process (the CLI) rotates: same catalog, its own keyring.
  await new Keyring({ provider, repository: repo }).rotate('tenant-feed');
  assert.equal(versionOf(await keyring.seal('cached', ctx)), 1, 'without an event the cache still answers');
  feed.changed('tenant-feed');
  assert.equal(versionOf(await keyring.seal('after the event', ctx)), 2);
  // Every tenant (a master key rotation) and "missed" drop everything too.
  await new Keyring({ provider, repository: repo }).rotate('tenant-feed');
  feed.changed(null);
  assert.equal(versionOf(await keyring.seal('x', ctx)), 3);
  await new Keyring({ provider, repository: repo }).rotate('tenant-feed');
  feed.missed();
  assert.equal(keyring.cachedTenants, 0);
  assert.equal(versionOf(await keyring.seal('y', ctx)), 4);
  keyring.close();
  await new Keyring({ provider, repository: repo }).rotate('tenant-feed');
  feed.changed('tenant-feed');
  assert.equal(versionOf(await keyring.seal('z', ctx)), 4, 'closed: no longer listening');
});

test('key change feed down: cached keys older than the grace are loaded afresh, younger ones are used', async () => {
  const feed = manualFeed();
  const { keyring, repo, provider } = makeRig({ changes: feed, staleAfterMs: 50 });
  const ctx = ctxFor('tenant-grace');
  await keyring.seal('one', ctx);
  await new Keyring({ provider, repository: repo }).rotate('tenant-grace');
  feed.live = false;
  assert.equal(versionOf(await keyring.seal('within the grace', ctx)), 1);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(versionOf(await keyring.seal('past the grace', ctx)), 2);
  // Live again: the cache answers whatever its age.
  feed.live = true;
  await new Keyring({ provider, repository: repo }).rotate('tenant-grace');
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(versionOf(await keyring.seal('live', ctx)), 2);
});

test('forgetAll: a load under way when changes were missed does not fill the cache', async () => {
  const repo = new MemoryKeyRepository();
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const slow: TenantKeyRepository = {
    list: async (t) => {
      await gate;
      return repo.list(t);
    },
    insert: (k) => repo.insert(k),
    isShredded: (t) => repo.isShredded(t),
  };
  const feed = manualFeed();
  const { keyring, provider } = makeRig({ repository: slow, changes: feed, repo });
  await new Keyring({ provider, repository: repo }).rotate('tenant-race');
  const warming = keyring.warm('tenant-race');
  feed.missed();
  release();
  await warming;
  assert.equal(keyring.cachedTenants, 0);
});

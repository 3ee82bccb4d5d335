import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { describeSealed, Keyring, LocalKeyProvider } from '../src/crypto/index.ts';
import { ownerKeyring, SealedMemory, shredTenant, textContext } from '../src/memory/index.ts';
import { createPgDriver, KeyEvents, SqlKeyRepository, type Store } from '../src/store/index.ts';
import { call } from './helpers/api.ts';
import { terminateListeners } from './helpers/listeners.ts';
import { relayCli, SERVER_TEST_MASTER_KEY, startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';
import { targets } from './helpers/targets.ts';

const appUrl = process.env.RELAY_TEST_DATABASE_URL;
const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;
const adminUrl = process.env.RELAY_TEST_ADMIN_URL;
const codeOf = (body: unknown) => ((body as { error?: { code?: string } }).error ?? {}).code;

/** Polls `probe` until it returns a value (not undefined), for at most `ms`; resolves with it and the time taken. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<{ value: T; tookMs: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return { value, tookMs: Date.now() - started };
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Keys that change late (issue 17): a `relay serve` process on the server store, and the key CLI
 * as another process. What the CLI changes is seen by the service at once (its key cache lives
 * 5 minutes, so without key events these polls would time out), and after a shred no write is
 * accepted, not even the first one.
 */
describe('key events: relay serve and the key CLI, two processes (pg)', { skip: !appUrl || !ownerUrl ? 'RELAY_TEST_DATABASE_URL / RELAY_TEST_MIGRATE_URL not set' : false, timeout: 300_000 }, () => {
  let relay: RelayProcess;
  let owner: pg.Client;
  const T = `events-${randomBytes(4).toString('hex')}`;
  let token = '';

  before(async () => {
    relay = await startRelayProcess('pg', { RELAY_RERANK: 'off' });
    token = await relay.token(T, 'alice');
    owner = new pg.Client({ connectionString: ownerUrl });
    await owner.connect();
  });
  after(async () => {
    await owner?.end();
    await relay?.stop();
  });

  const keyIdOf = async (id: string) => (await owner.query<{ key_id: string }>('SELECT key_id FROM memory_chunks WHERE id = $1', [id])).rows[0]?.key_id;
  const rows = async () => (await owner.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1', [T])).rows[0]!.n;
  const write = async (text: string) => {
    const res = await call(`${relay.url}/api/v1/memory`, 'POST', token, { text });
    return { status: res.status, body: res.body, id: (res.body as { ids?: string[] }).ids?.[0] };
  };
  /** Writes until a new row is sealed under `keyId`. */
  const sealedUnder = (keyId: string) =>
    until(`new writes sealed under ${keyId}`, async () => {
      const w = await write(`a memory ${randomBytes(3).toString('hex')}`);
      assert.equal(w.status, 201, JSON.stringify(w.body));
      return (await keyIdOf(w.id!)) === keyId ? w.id : undefined;
    });

  it('keys rotate: new writes carry the new version at once', async () => {
    const first = await write('Alice parks on level 3.');
    assert.equal(first.status, 201);
    assert.equal(await keyIdOf(first.id!), 'dk:1');
    const rotated = await relayCli(['keys', 'rotate', '--tenant', T]);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /data key version 2\b/);
    const seen = await sealedUnder('dk:2');
    console.log(`# rotate seen by the service after ${seen.tookMs} ms`);
    assert.ok((await relay.metric('relay_key_events_total', { kind: 'rotate' })) >= 1, 'the event is counted');
    assert.equal(await relay.metric('relay_key_events_listening'), 1);
  });

  it('keys rotate then reseal: every row and every new write under the newest key', async () => {
    const rotated = await relayCli(['keys', 'rotate', '--tenant', T]);
    assert.equal(rotated.code, 0, rotated.stderr);
    await sealedUnder('dk:3');
    const resealed = await relayCli(['keys', 'reseal', '--tenant', T]);
    assert.equal(resealed.code, 0, resealed.stderr);
    const keyIds = (await owner.query<{ key_id: string }>('SELECT DISTINCT key_id FROM memory_chunks WHERE tenant_id = $1', [T])).rows.map((r) => r.key_id);
    assert.deepEqual(keyIds, ['dk:3']);
    const next = await write('written after the reseal');
    assert.equal(await keyIdOf(next.id!), 'dk:3');
    // Every row still opens for its owner.
    const list = await call(`${relay.url}/api/v1/memory?limit=100`, 'GET', token);
    assert.equal(list.status, 200);
    assert.equal((list.body as { items: unknown[] }).items.length, await rows());
  });

  it('a lost listening connection: the service reconnects and drops its whole key cache', async () => {
    // A new key version nobody announces (a replica's own rotation; or an event lost while the
    // connection was down): the service keeps sealing under its cached version...
    const driver = createPgDriver({ appUrl: appUrl!, poolMax: 1 });
    try {
      const silent = new Keyring({ provider: new LocalKeyProvider(Buffer.from(SERVER_TEST_MASTER_KEY, 'base64')), repository: new SqlKeyRepository(driver, 'app') });
      assert.equal(await silent.rotate(T), 4);
    } finally {
      await driver.close();
    }
    const cached = await write('still under the cached key');
    assert.equal(await keyIdOf(cached.id!), 'dk:3', 'no event: the cache answers');
    // ...until its listening connection is cut: then it reconnects and forgets every cached key.
    // Its listening connection only (other suites' services on this database keep theirs).
    assert.equal(await terminateListeners(adminUrl ?? ownerUrl!, appUrl!, [relay.pid]), 1, 'the listener was found');
    await relay.logged(/listening again; every cached key was dropped/, 10_000);
    assert.match(relay.log(), /the listening connection was lost; reconnecting/);
    await sealedUnder('dk:4');
    assert.equal(await relay.metric('relay_key_events_listening'), 1);
    // And listening again for real: the next rotation is seen too.
    const rotated = await relayCli(['keys', 'rotate', '--tenant', T]);
    assert.equal(rotated.code, 0, rotated.stderr);
    await sealedUnder('dk:5');
  });

  it('keys shred: no write is accepted after it returns, not even the first; reads answer 410', async () => {
    const kept = await write('the last memory before the shred');
    assert.equal(kept.status, 201);
    const shred = await relayCli(['keys', 'shred', '--tenant', T, '--yes']);
    assert.equal(shred.code, 0, shred.stderr);
    assert.equal(await rows(), 0, 'the shred deleted the rows');
    const first = await write('written after the shred');
    assert.equal(first.status, 410, JSON.stringify(first.body));
    assert.equal(codeOf(first.body), 'tenant_shredded');
    assert.equal(await rows(), 0, 'nothing written');
    const q = await call(`${relay.url}/api/v1/memory/query`, 'POST', token, { query: 'where does Alice park?', top_k: 3 });
    assert.equal(q.status, 410);
    assert.equal(codeOf(q.body), 'tenant_shredded');
    const list = await call(`${relay.url}/api/v1/memory`, 'GET', token);
    assert.equal(list.status, 410);
    assert.ok((await relay.metric('relay_open_failures_total', { reason: 'key_shredded' })) >= 2);
    const erase = await call(`${relay.url}/api/v1/users/alice/memory`, 'DELETE', token);
    assert.equal(erase.status, 200);
    assert.ok((await relay.metric('relay_key_events_total', { kind: 'shred' })) >= 1);
    assert.ok((await relay.metric('relay_key_events_total', { kind: 'reseal' })) >= 1);
  });
});

/**
 * The in-process path: service and key maintenance in one process (PGlite has only this one:
 * its data folder admits one process). The maintenance functions' events reach the service's
 * keyring through the same LISTEN/NOTIFY (PGlite's own notifications).
 */
for (const target of targets()) {
  describe(`key events in one process (${target.name})`, () => {
    let store: Store;
    let events: KeyEvents;
    let service: Keyring;
    let memory: SealedMemory;
    const provider = new LocalKeyProvider(randomBytes(32));
    const T = `inproc-${randomBytes(4).toString('hex')}`;

    before(async () => {
      store = await target.open();
      events = await KeyEvents.start(store.driver);
      service = new Keyring({ provider, repository: new SqlKeyRepository(store.driver, 'app'), changes: events });
      memory = new SealedMemory(store, service);
    });
    after(async () => {
      service?.close();
      await events?.close();
      await store?.close();
    });

    const sealVersion = async () => {
      const scope = await memory.scope(T, 'alice');
      return describeSealed(await service.seal('x', textContext(scope, '00000000-0000-4000-8000-000000000001'))).keyVersion;
    };

    it('listens, and a rotation by the maintenance keyring is used at once', async () => {
      assert.equal(events.live, true);
      assert.equal(events.connects, 1);
      assert.equal(await sealVersion(), 1);
      await ownerKeyring(store.driver, provider).rotate(T);
      await until('the rotation seen', async () => ((await sealVersion()) === 2 ? true : undefined), 5000);
    });

    it('a shred by the maintenance functions: the service keyring refuses at once, nothing is written', async () => {
      await memory.write(T, 'alice', [{ text: 'before', embedding: new Float32Array(store.embeddingDim).fill(0.1), embedderId: 'test' }]);
      await shredTenant(store.driver, null, T);
      await until('the shred seen', async () => (service.cachedTenants === 0 ? true : undefined), 5000);
      await assert.rejects(memory.write(T, 'alice', [{ text: 'after', embedding: new Float32Array(store.embeddingDim).fill(0.1), embedderId: 'test' }]), /destroyed/);
      const left = await store.driver.ownerTransaction((sql) => sql.query('SELECT 1 FROM memory_chunks WHERE tenant_id = $1', [T]));
      assert.equal(left.rowCount, 0);
    });
  });
}

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { shredTenant } from '../src/memory/index.ts';
import { SCOPE_SETTINGS, sqlState } from '../src/store/index.ts';
import { call, counter, startTestApi, type TestApi } from './helpers/api.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, unknown>;
const codeOf = (body: unknown) => ((body as { error?: { code?: string } }).error ?? {}).code;

/**
 * The shredded-tenant contract (docs/crypto.md): every read and write of a tenant whose keys
 * were destroyed answers 410 `tenant_shredded` and writes nothing; erasure succeeds and deletes
 * what is left; each refusal is counted under relay_open_failures_total{reason="key_shredded"};
 * the database itself refuses a row (or a new key) for a shredded tenant.
 */
for (const target of targets()) {
  describe(`a shredded tenant (${target.name})`, () => {
    let api: TestApi;
    const run = randomBytes(4).toString('hex');
    const T = `shred-${run}`;
    const OTHER = `kept-${run}`;
    let alice = '';
    let newUser = '';
    let service = '';
    let other = '';
    let aliceIds: string[] = [];

    before(async () => {
      api = await startTestApi(target);
      [alice, newUser, service, other] = await Promise.all([api.token(T, 'alice'), api.token(T, 'newcomer'), api.token(T), api.token(OTHER, 'olga')]);
    });
    after(async () => {
      await api?.close();
    });

    const url = (path: string) => `${api.url}${path}`;
    const rows = async (tenant: string) =>
      (await api.store.driver.ownerTransaction((sql) => sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1', [tenant]))).rows[0]!.n;
    const write = (token: string, body: Json) => call(url('/api/v1/memory'), 'POST', token, body);
    const shredded = (res: { status: number; body: unknown }, what: string) => {
      assert.equal(res.status, 410, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(codeOf(res.body), 'tenant_shredded', what);
    };

    it('before: the tenant works', async () => {
      const a = await write(alice, { chunks: ['Alice parks on level 3.', 'Alice likes oolong.'] });
      assert.equal(a.status, 201);
      aliceIds = (a.body as { ids: string[] }).ids;
      assert.equal((await write(service, { text: 'Bob is allergic to nuts.', user_id: 'bob' })).status, 201);
      assert.equal((await write(other, { text: 'Olga keeps her keys in the drawer.' })).status, 201);
      assert.equal(await rows(T), 3);
    });

    it('the database refuses a row even from a process that still has the keys cached', async () => {
      // Keys destroyed by another process (no event reaches this one: its keyring keeps the tenant cached).
      await shredTenant(api.store.driver, null, T, { deleteRows: false });
      const res = await write(alice, { text: 'written after the shred' });
      shredded(res, 'write with cached keys');
      assert.equal(await rows(T), 3, 'nothing written');
      const patch = await call(url(`/api/v1/memory/${aliceIds[0]}`), 'PATCH', alice, { text: 'new text after the shred' });
      shredded(patch, 'PATCH of the text with cached keys');
      // The process hears of it (here by hand; a running service by its key events).
      api.keyring.forget(T);
    });

    it('reads, writes, new users and get by id answer 410 tenant_shredded; nothing is written', async () => {
      const before = await counter(api.metrics, 'relay_open_failures_total', { reason: 'key_shredded' });
      shredded(await write(alice, { text: 'more' }), 'write');
      shredded(await write(newUser, { text: 'a new user' }), 'new user write');
      shredded(await write(service, { text: 'for carol', user_id: 'carol' }), 'service write for a new user');
      shredded(await call(url('/api/v1/memory/query'), 'POST', alice, { query: 'where does Alice park?', top_k: 3 }), 'JSON query');
      shredded(await call(url('/api/v1/memory/query'), 'POST', newUser, { query: 'anything', top_k: 3 }), 'new user query');
      shredded(await call(url('/api/v1/memory?limit=10'), 'GET', alice), 'list');
      shredded(await call(url(`/api/v1/memory/${aliceIds[0]}`), 'GET', alice), 'get by id');
      shredded(await call(url(`/api/v1/memory/${aliceIds[0]}`), 'PATCH', alice, { metadata: { a: 1 } }), 'PATCH');
      shredded(await call(url(`/api/v1/memory/${aliceIds[0]}`), 'DELETE', alice), 'DELETE one');
      shredded(await call(url('/api/v1/memory/query'), 'POST', alice, { query: 'where does Alice park?', top_k: 3 }, { accept: 'text/event-stream' }), 'SSE query');
      assert.equal(await rows(T), 3, 'nothing written, nothing changed');
      const after = await counter(api.metrics, 'relay_open_failures_total', { reason: 'key_shredded' });
      assert.ok(after - before >= 10, `each refusal is counted under key_shredded (${after - before})`);
      // Another tenant is untouched.
      const q = await call(url('/api/v1/memory/query'), 'POST', other, { query: 'where are the keys?', top_k: 1 });
      assert.equal(q.status, 200);
      assert.equal((await write(other, { text: 'Olga likes rye bread.' })).status, 201);
    });

    it('erasure succeeds and deletes every row left of the tenant; a second one finds nothing', async () => {
      const res = await call(url('/api/v1/users/alice/memory'), 'DELETE', alice);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal((res.body as { deleted: number }).deleted, 3);
      assert.equal(await rows(T), 0);
      const again = await call(url('/api/v1/users/bob/memory'), 'DELETE', service);
      assert.equal(again.status, 200);
      assert.equal((again.body as { deleted: number }).deleted, 0);
      assert.equal(await rows(OTHER), 2, "the other tenant's rows stay");
    });

    it('no key is ever made again for it: the tenant_keys INSERT policy refuses at the database', async () => {
      const attempt = api.store.driver.appTransaction([[SCOPE_SETTINGS.tenant, T]], (sql) =>
        sql.query("INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, provider_id) VALUES ($1, 'data', 9, $2, 'local:test')", [T, randomBytes(72)]),
      );
      await assert.rejects(attempt, (err: unknown) => sqlState(err) === '42501');
      const keys = await api.store.driver.ownerTransaction((sql) => sql.query('SELECT 1 FROM tenant_keys WHERE tenant_id = $1', [T]));
      assert.equal(keys.rowCount, 0);
      // The same statement for a tenant that was not shredded passes the policy (the test can fail).
      const fine = await api.store.driver.appTransaction([[SCOPE_SETTINGS.tenant, OTHER]], (sql) =>
        sql.query("INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, provider_id) VALUES ($1, 'data', 99, $2, 'local:test') RETURNING 1", [OTHER, randomBytes(72)]),
      );
      assert.equal(fine.rowCount, 1);
      await api.store.driver.ownerTransaction((sql) => sql.query("DELETE FROM tenant_keys WHERE tenant_id = $1 AND version = 99", [OTHER]));
    });
  });
}

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SCOPE_SETTINGS, type Store } from '../src/store/index.ts';
import { axis, chunk, scopeOf, testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

const sha = (s: string) => createHash('sha256').update(s).digest();

for (const target of targets()) {
  describe(`idempotency keys and the expiry sweep stay inside their scope (${target.name})`, () => {
    let store: Store;
    const A = testTenant('idem-a');
    const B = testTenant('idem-b');
    const alice = scopeOf(A, 'alice');
    const bob = scopeOf(A, 'bob');
    const mallory = scopeOf(B, 'mallory');

    before(async () => {
      store = await target.open();
      for (const s of [alice, bob, mallory]) {
        await store.withScope(s, (c) => c.claimIdempotencyKey(sha('k1'), sha(`body-${s.tenantId}`), { ids: [`for-${s.tenantId}`] }));
      }
    });
    after(async () => {
      await store?.close();
    });

    const as = <T>(settings: Array<[string, string]>, q: string, params: unknown[] = []) =>
      store.driver.appTransaction(settings, (sql) => sql.query<Record<string, unknown>>(q, params)) as Promise<{ rows: T[] }>;
    const scoped = (s: typeof alice): Array<[string, string]> => [
      [SCOPE_SETTINGS.tenant, s.tenantId],
      [SCOPE_SETTINGS.user, s.userHash.toString('hex')],
    ];

    it('each scope sees only its own key; no scope sees none', async () => {
      assert.equal((await as([], 'SELECT * FROM idempotency_keys')).rows.length, 0);
      assert.equal((await as([[SCOPE_SETTINGS.tenant, A]], 'SELECT * FROM idempotency_keys')).rows.length, 0);
      for (const s of [alice, bob, mallory]) {
        const rows = (await as<{ tenant_id: string }>(scoped(s), 'SELECT tenant_id FROM idempotency_keys')).rows;
        assert.deepEqual(rows.map((r) => r.tenant_id), [s.tenantId]);
      }
      // The same key in another scope is another claim: alice's replay is alice's own.
      const replay = await store.withScope(alice, (c) => c.findIdempotencyKey(sha('k1')));
      assert.deepEqual(replay?.response, { ids: [`for-${A}`] });
    });

    it('refuses claims for another scope, updates, and deletes outside the scope', async () => {
      await assert.rejects(
        as(scoped(alice), 'INSERT INTO idempotency_keys (tenant_id, user_hash, key_hash, request_hash, response) VALUES ($1, $2, $3, $3, $4)', [B, mallory.userHash, sha('k2'), '{}']),
        /row-level security/,
      );
      await assert.rejects(as(scoped(alice), "UPDATE idempotency_keys SET response = '{}'"), /permission denied/);
      const deleted = await store.driver.appTransaction(scoped(alice), (sql) => sql.query('DELETE FROM idempotency_keys WHERE tenant_id = $1', [B]));
      assert.equal(deleted.rowCount, 0);
      const left = await store.driver.ownerTransaction((sql) => sql.query('SELECT 1 FROM idempotency_keys WHERE tenant_id = $1', [B]));
      assert.equal(left.rows.length, 1);
    });

    it('the sweep deletes only expired chunks and day-old keys, and returns counts, never rows', async () => {
      const dim = store.embeddingDim;
      const live = chunk('live', axis(dim, 1));
      const later = chunk('later', axis(dim, 2), { expiresAt: new Date(Date.now() + 3600_000) });
      const gone = chunk('gone', axis(dim, 3), { expiresAt: new Date(Date.now() + 3600_000) });
      await store.withScope(mallory, (c) => c.insert([live, later, gone]));
      await store.driver.ownerTransaction(async (sql) => {
        await sql.query("UPDATE memory_chunks SET expires_at = now() - interval '1 minute' WHERE id = $1", [gone.id]);
        await sql.query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE tenant_id = $1", [B]);
      });
      let purged = { chunks: 0, idempotencyKeys: 0 };
      // Other suites' leftovers may be expired too: sweep until this tenant's are gone.
      for (let i = 0; i < 100; i++) {
        const round = await store.purgeExpired(1000);
        purged = { chunks: purged.chunks + round.chunks, idempotencyKeys: purged.idempotencyKeys + round.idempotencyKeys };
        if (round.chunks < 1000 && round.idempotencyKeys < 1000) break;
      }
      assert.ok(purged.chunks >= 1 && purged.idempotencyKeys >= 1);
      const ids = await store.driver.ownerTransaction((sql) => sql.query<{ id: string }>('SELECT id FROM memory_chunks WHERE tenant_id = $1 ORDER BY id', [B]));
      assert.deepEqual(ids.rows.map((r) => r.id).sort(), [live.id, later.id].sort());
      const keys = await store.driver.ownerTransaction((sql) => sql.query<{ tenant_id: string }>('SELECT tenant_id FROM idempotency_keys WHERE tenant_id IN ($1, $2)', [A, B]));
      assert.deepEqual(keys.rows.map((r) => r.tenant_id).sort(), [A, A]);
      await assert.rejects(store.purgeExpired(0), /batch must be in/);
    });

    it('a forged user hash in the scope reads nothing', async () => {
      const forged: Array<[string, string]> = [[SCOPE_SETTINGS.tenant, A], [SCOPE_SETTINGS.user, randomBytes(32).toString('hex')]];
      assert.equal((await as(forged, 'SELECT * FROM idempotency_keys')).rows.length, 0);
    });
  });
}

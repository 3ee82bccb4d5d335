import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { READ_ONLY, sqlState, type Store } from '../src/store/index.ts';
import { chunk, scopeOf, testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

// How an application transaction starts: BEGIN, the scope statement, then the caller's first
// statement. On the server driver the three are pipelined (sent in one write, answered in
// order); these are the promises that must hold however they travel.
for (const target of targets()) {
  describe(`transaction start (${target.name})`, () => {
    let store: Store;
    before(async () => {
      store = await target.open();
    });
    after(async () => {
      await store?.close();
    });

    it("the caller's first statement already sees the scope, and the next transaction does not", async () => {
      const seen = await store.driver.appTransaction([['relay.tenant_id', 'tenant-first'], ['relay.user_hash', 'aa']], async (sql) => {
        const r = await sql.query<{ t: string; u: string }>("SELECT current_setting('relay.tenant_id', true) AS t, current_setting('relay.user_hash', true) AS u");
        return r.rows[0];
      });
      assert.deepEqual(seen, { t: 'tenant-first', u: 'aa' });
      // Transaction-local: gone at COMMIT, whichever pooled connection runs next.
      for (let i = 0; i < 6; i++) {
        const later = await store.driver.appTransaction([], async (sql) => (await sql.query<{ t: string | null }>("SELECT nullif(current_setting('relay.tenant_id', true), '') AS t")).rows[0]);
        assert.deepEqual(later, { t: null });
      }
    });

    it('a scope statement that fails is the error thrown; the statements queued behind it never run', async () => {
      let firstAnswered = false;
      const err = await store.driver
        .appTransaction([['relay.tenant_id', 'tenant-bad'], ['plan_cache_mode', 'not-a-mode']], async (sql) => {
          await sql.query('SELECT 1');
          firstAnswered = true;
          await sql.query('SELECT 2');
        })
        .then(
          () => assert.fail('the transaction succeeded'),
          (e: unknown) => e,
        );
      // 22023 invalid_parameter_value from set_config, not 25P02 "current transaction is aborted".
      assert.equal(sqlState(err), '22023', String(err));
      assert.equal(firstAnswered, false);
      // The connection went back to the pool usable and outside any transaction.
      const ok = await store.driver.appTransaction([['relay.tenant_id', 'tenant-after']], async (sql) => (await sql.query<{ t: string }>("SELECT current_setting('relay.tenant_id', true) AS t")).rows[0]);
      assert.deepEqual(ok, { t: 'tenant-after' });
    });

    it('a failing first statement rolls back and throws its own error', async () => {
      const err = await store.driver
        .appTransaction([['relay.tenant_id', 'tenant-x']], (sql) => sql.query('SELECT 1/0'))
        .then(
          () => assert.fail('the transaction succeeded'),
          (e: unknown) => e,
        );
      assert.equal(sqlState(err), '22012', String(err));
    });

    // The scope statement's text depends only on how many settings it sets: the server driver
    // keeps it prepared on each connection (PGlite runs it unnamed each time).
    it('the scope statement is prepared once per server connection, and one whose execution failed stays usable', async () => {
      const onOne = target.name === 'pg' ? await target.open({ poolMax: 1 }) : store;
      const expected = (tenant: string) => ({ t: tenant, u: 'bb' });
      try {
        const failed = await onOne.driver
          .appTransaction([['relay.tenant_id', 'tenant-prep'], ['plan_cache_mode', 'not-a-mode']], (sql) => sql.query('SELECT 1'))
          .then(() => assert.fail('the transaction succeeded'), (e: unknown) => e);
        assert.equal(sqlState(failed), '22023', String(failed));
        for (let i = 0; i < 5; i++) {
          const tenant = `tenant-prep-${i}`;
          const seen = await onOne.driver.appTransaction([['relay.tenant_id', tenant], ['relay.user_hash', 'bb']], async (sql) => {
            return (await sql.query<{ t: string; u: string }>("SELECT current_setting('relay.tenant_id', true) AS t, current_setting('relay.user_hash', true) AS u")).rows[0];
          });
          assert.deepEqual(seen, expected(tenant));
        }
        const prepared = await onOne.driver.appTransaction([['relay.tenant_id', 'tenant-prep'], ['relay.user_hash', 'bb']], async (sql) => {
          return (await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement LIKE 'SELECT set_config(%'")).rows[0]!.n;
        });
        assert.equal(prepared, target.name === 'pg' ? 1 : 0);
      } finally {
        if (onOne !== store) await onOne.close();
      }
    });

    // The server driver does not wait for a read-only transaction's COMMIT (pg-driver.ts). What
    // must hold: the read's answer is complete, the connection is outside any transaction for
    // whatever runs on it next (a write right behind a read; had the read's transaction stayed
    // open, the write would run inside it, read-only, and fail).
    it('a read-only transaction, then writes and reads on the same connection: each sees the last commit', async () => {
      const onOne = target.name === 'pg' ? await target.open({ poolMax: 1 }) : store;
      const dim = onOne.embeddingDim;
      const scope = scopeOf(testTenant('read-then-write'), 'alice');
      try {
        for (let i = 0; i < 20; i++) {
          const seen = await onOne.withScope(scope, (c) => c.list(100), { read: {} });
          assert.equal(seen.chunks.length, i);
          await onOne.withScope(scope, (c) => c.insert([chunk(`row ${i}`, new Float32Array(dim).fill(0.01 * (i + 1)))]));
        }
        // A write the read-only setting refuses is still refused, and writes nothing.
        const refused = await onOne.driver
          .appTransaction([READ_ONLY], (sql) => sql.query('DELETE FROM memory_chunks'))
          .then(() => assert.fail('a DELETE ran in a read-only transaction'), (e: unknown) => e);
        assert.equal(sqlState(refused), '25006', String(refused));
        const last = await onOne.withScope(scope, (c) => c.search(new Float32Array(dim).fill(0.01), 50), { read: {} });
        assert.equal(last.hits.length, 20);
        const state = await onOne.driver.appTransaction([], async (sql) => (await sql.query<{ ro: string }>("SELECT current_setting('transaction_read_only') AS ro")).rows[0]);
        assert.deepEqual(state, { ro: 'off' });
      } finally {
        await store.withScope(scope, (c) => c.list(100)).then((page) => Promise.all(page.chunks.map((c) => store.withScope(scope, (s) => s.delete(c.id)))));
        if (onOne !== store) await onOne.close();
      }
    });
  });
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sqlState, type Store } from '../src/store/index.ts';
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
  });
}

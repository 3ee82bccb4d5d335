import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../src/store/index.ts';
import { targets } from './helpers/targets.ts';

class Gone extends Error {}

for (const target of targets()) {
  describe(`a cancelled transaction stops its work (${target.name})`, () => {
    let store: Store;
    before(async () => {
      store = await target.open();
    });
    after(async () => {
      await store?.close();
    });

    it('runs nothing when the caller left before it started', async () => {
      const ac = new AbortController();
      ac.abort(new Gone('left'));
      let ran = false;
      await assert.rejects(
        store.driver.appTransaction([], async () => {
          ran = true;
        }, { signal: ac.signal }),
        Gone,
      );
      assert.equal(ran, false);
    });

    it('stops before the next statement once the caller leaves', async () => {
      const ac = new AbortController();
      const statements: string[] = [];
      await assert.rejects(
        store.driver.appTransaction([], async (sql) => {
          await sql.query('SELECT 1');
          statements.push('first');
          ac.abort(new Gone('left'));
          await sql.query('SELECT 2');
          statements.push('second');
        }, { signal: ac.signal }),
        Gone,
      );
      assert.deepEqual(statements, ['first']);
      // The store is still usable afterwards.
      const ok = await store.driver.appTransaction([], (sql) => sql.query<{ one: number }>('SELECT 1 AS one'));
      assert.equal(ok.rows[0]?.one, 1);
    });

    if (target.name === 'pg') {
      it('cancels the running statement on the server', async () => {
        const ac = new AbortController();
        const running = store.driver.appTransaction([], (sql) => sql.query("SELECT pg_sleep(60), 'relay-cancel-probe'"), { signal: ac.signal });
        running.catch(() => undefined);
        // As the same role (a role sees its own sessions' query text, not other roles').
        const probe = () =>
          store.driver.appTransaction([], (sql) =>
            sql.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%relay-cancel-probe%' AND state = 'active' AND pid <> pg_backend_pid()"),
          );
        for (let i = 0; i < 200 && (await probe()).rows[0]!.n === 0; i++) await new Promise((r) => setTimeout(r, 25));
        assert.equal((await probe()).rows[0]!.n, 1, 'the statement is running');
        ac.abort(new Gone('left'));
        await assert.rejects(running, Gone);
        for (let i = 0; i < 200 && (await probe()).rows[0]!.n > 0; i++) await new Promise((r) => setTimeout(r, 25));
        assert.equal((await probe()).rows[0]!.n, 0, 'the statement no longer runs');
      });
    }
  });
}

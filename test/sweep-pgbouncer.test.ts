import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startPgBouncer, upstreamOf, type PgBouncer } from '../src/fleet/index.ts';
import { createPgDriver, Store } from '../src/store/index.ts';

/** The sweep turn's lock (migration 0005): class "RSWP", key 0. */
const SWEEP_LOCK = [1381193552, 0] as const;

/**
 * Behind PgBouncer in transaction mode (`default_pool_size = 1`: every client's transactions run
 * on one server connection, one after another): the sweep's lock must end with each transaction.
 * A session-level lock would stay on that server connection after the sweep, held for whichever
 * client runs there next.
 */
describe('the sweep behind PgBouncer in transaction mode (pg)', { skip: !process.env.RELAY_TEST_DATABASE_URL ? 'RELAY_TEST_DATABASE_URL not set' : false, timeout: 120_000 }, () => {
  const appUrl = process.env.RELAY_TEST_DATABASE_URL!;
  const upstream = new URL(appUrl);
  let bouncer: PgBouncer;
  const stores: Store[] = [];

  before(async () => {
    const password = randomBytes(12).toString('hex');
    bouncer = await startPgBouncer({
      ...upstreamOf(upstream),
      poolMode: 'transaction',
      defaultPoolSize: 1,
      users: [{ name: decodeURIComponent(upstream.username), password }],
    });
    for (let i = 0; i < 3; i++) {
      stores.push(new Store(createPgDriver({ appUrl: bouncer.url(decodeURIComponent(upstream.username)), ownerUrl: process.env.RELAY_TEST_MIGRATE_URL, pooler: 'transaction', listenUrl: appUrl, poolMax: 2 })));
    }
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await bouncer?.daemon.stop();
  });

  it('three stores sweeping and serving through one server connection: no error, and no sweep lock left on it', async () => {
    let ran = 0;
    for (let round = 0; round < 20; round++) {
      const results = await Promise.all(stores.flatMap((s) => [s.sweep({ minGapMs: 0 }), s.readiness().then(() => null)]));
      ran += results.filter((r) => r?.ran === true).length;
      // Asked through the same PgBouncer, so on its one server connection: does that session hold the lock?
      const held = await stores[0]!.driver.appTransaction([], (sql) =>
        sql.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2::oid AND pid = pg_backend_pid()", [...SWEEP_LOCK]),
      );
      assert.equal(held.rowCount, 0, `round ${round}: the sweep's lock is still held on the pooled server connection`);
    }
    // One at a time on the one server connection, each found the lock free.
    assert.ok(ran >= 20, `only ${ran} of 60 sweeps ran`);
  });
});

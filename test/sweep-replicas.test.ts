import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Store, SweepResult } from '../src/store/index.ts';
import { call } from './helpers/api.ts';
import { axis, chunk, scopeOf, testTenant } from './helpers/fixtures.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';
import { targets } from './helpers/targets.ts';

/** The sweep turn's lock (migration 0005): class "RSWP", key 0. */
const SWEEP_LOCK = [1381193552, 0] as const;

for (const target of targets()) {
  describe(`the expiry sweep takes turns (${target.name})`, { timeout: 120_000 }, () => {
    let store: Store;
    before(async () => {
      store = await target.open();
    });
    after(async () => {
      await store?.close();
    });

    /** A sweep that may skip because another process (a replica of another suite) sweeps right now: tried again. */
    const sweepUntilRan = async (): Promise<SweepResult> => {
      for (let i = 0; ; i++) {
        const r = await store.sweep({ minGapMs: 0 });
        if (r.ran || i >= 20) return r;
        await new Promise((res) => setTimeout(res, 50));
      }
    };

    it('deletes expired chunks and keeps the rest', async () => {
      const scope = scopeOf(testTenant('sweep'), 'alice');
      const dim = store.embeddingDim;
      const live = chunk('live', axis(dim, 1));
      const gone = chunk('gone', axis(dim, 2), { expiresAt: new Date(Date.now() + 3600_000) });
      await store.withScope(scope, (c) => c.insert([live, gone]));
      await store.driver.ownerTransaction((sql) => sql.query("UPDATE memory_chunks SET expires_at = now() - interval '1 minute' WHERE id = $1", [gone.id]));
      const swept = await sweepUntilRan();
      assert.equal(swept.ran, true);
      assert.ok(swept.chunks >= 1, JSON.stringify(swept));
      const ids = await store.driver.ownerTransaction((sql) => sql.query<{ id: string }>('SELECT id FROM memory_chunks WHERE tenant_id = $1', [scope.tenantId]));
      assert.deepEqual(ids.rows.map((r) => r.id), [live.id]);
      await assert.rejects(store.sweep({ batch: 0 }), /batch must be in/);
    });

    if (target.name === 'pglite') {
      it('on the embedded store (one process) it always runs, whatever the gap', async () => {
        for (let i = 0; i < 3; i++) assert.equal((await store.sweep({ minGapMs: 3_600_000 })).ran, true);
      });
      return;
    }

    it('a turn taken less than the gap ago is skipped', async () => {
      assert.equal((await sweepUntilRan()).ran, true);
      assert.deepEqual(await store.sweep({ minGapMs: 3_600_000 }), { ran: false, chunks: 0, idempotencyKeys: 0 });
    });

    it('while another sweeps (its transaction holds the lock) it skips at once instead of waiting', async () => {
      const other = new pg.Client({ connectionString: process.env.RELAY_TEST_MIGRATE_URL });
      await other.connect();
      try {
        await other.query('BEGIN');
        await other.query('SELECT pg_advisory_xact_lock($1, $2)', [...SWEEP_LOCK]);
        // Would hang (and time the test out) if the sweep waited for the lock.
        assert.equal((await store.sweep({ minGapMs: 0 })).ran, false);
        await other.query('ROLLBACK');
      } finally {
        await other.end();
      }
      // The lock was transaction-level: gone with the other transaction.
      assert.equal((await sweepUntilRan()).ran, true);
    });
  });
}

const adminUrl = process.env.RELAY_TEST_ADMIN_URL;
const intervalS = 1;

/**
 * Three `relay serve` replicas on a database of the test's own (so every expired row in it is
 * this test's), sweeping every second: one replica takes each turn, the others skip theirs.
 */
describe('one sweeper for the fleet: 3 replicas, RELAY_SWEEP_INTERVAL_S=1 (pg)', {
  skip: !process.env.RELAY_TEST_DATABASE_URL ? 'RELAY_TEST_DATABASE_URL not set' : !adminUrl ? 'needs RELAY_TEST_ADMIN_URL (a database of its own)' : false,
  timeout: 300_000,
}, () => {
  const db = `relay_sweep_${randomBytes(4).toString('hex')}`;
  const replicas: RelayProcess[] = [];
  let owner: pg.Client | undefined;
  const T = `sweep-${randomBytes(4).toString('hex')}`;

  before(async () => {
    const setup = spawnSync(process.execPath, ['bin/relay.mjs', 'db', 'setup', '--admin-url', adminUrl!, '--db', db], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(setup.status, 0, setup.stderr);
    const urls = Object.fromEntries(setup.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const server = { appUrl: urls.DATABASE_URL!, ownerUrl: urls.RELAY_MIGRATE_URL! };
    const env = { RELAY_JWT_SECRET: randomBytes(32).toString('base64url'), RELAY_SWEEP_INTERVAL_S: String(intervalS), RELAY_RERANK: 'off' };
    for (let i = 0; i < 3; i++) replicas.push(await startRelayProcess(server, env));
    owner = new pg.Client({ connectionString: server.ownerUrl });
    await owner.connect();
  });
  after(async () => {
    await owner?.end();
    await Promise.all(replicas.map((r) => r.stop()));
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await c.end();
  });

  const turns = async () => {
    let ran = 0;
    let skipped = 0;
    for (const r of replicas) {
      ran += await r.metric('relay_sweeps_total', { outcome: 'ran' });
      skipped += await r.metric('relay_sweeps_total', { outcome: 'skipped' });
    }
    return { ran, skipped };
  };
  const count = async (where: string) => (await owner!.query<{ n: number }>(`SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1 AND ${where}`, [T])).rows[0]!.n;

  it('expired rows are deleted once, and one replica sweeps per interval', async () => {
    const started = Date.now();
    const before = await turns();
    // 60 rows that expire in a second, written through every replica, and 5 that stay.
    for (const [i, r] of replicas.entries()) {
      const res = await call(`${r.url}/api/v1/memory`, 'POST', await r.token(T, 'alice'), { chunks: Array.from({ length: 20 }, (_, j) => `short-lived ${i}.${j}`), ttl_s: 1 });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    const kept = await call(`${replicas[0]!.url}/api/v1/memory`, 'POST', await replicas[0]!.token(T, 'alice'), { chunks: ['stays 1', 'stays 2', 'stays 3', 'stays 4', 'stays 5'] });
    assert.equal(kept.status, 201);
    assert.equal(await count('expires_at IS NOT NULL'), 60);

    for (let waited = 0; (await count('expires_at IS NOT NULL')) > 0; waited += 100) {
      assert.ok(waited < 30_000, 'the expired rows were not swept within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    // Watch the turns for at least 10 intervals in all.
    await new Promise((r) => setTimeout(r, Math.max(0, started + 10_000 * intervalS - Date.now())));
    const afterTurns = await turns();
    const elapsedS = (Date.now() - started) / 1000;
    const ran = afterTurns.ran - before.ran;
    const skipped = afterTurns.skipped - before.skipped;

    // What each replica swept, from its log: the 60 rows, each counted by exactly one of them.
    const swept = replicas.map((r) =>
      r
        .log()
        .split('\n')
        .filter((l) => l.includes('"expiry sweep"'))
        .reduce((n, l) => n + (JSON.parse(l) as { chunks: number }).chunks, 0),
    );
    console.log(`# ${elapsedS.toFixed(1)} s, interval ${intervalS} s, 3 replicas: ran ${ran}, skipped ${skipped}; rows swept per replica ${swept.join('/')}`);

    assert.equal(swept.reduce((a, b) => a + b, 0), 60, 'each expired row deleted once');
    assert.equal(await count('true'), 5, 'the rows without a TTL stay');
    for (const r of replicas) assert.doesNotMatch(r.log(), /expiry sweep failed/);
    // About one turn per interval for the fleet: turns are at least 0.9 interval apart (so at most
    // elapsed/0.9 + 1, plus one for the scrapes' skew); three replicas sweeping on their own would make
    // it about 3 per interval. At least a third of the intervals even on a machine that stalls.
    assert.ok(ran <= elapsedS / (0.9 * intervalS) + 2, `ran ${ran} times in ${elapsedS.toFixed(1)} s: more than one per interval`);
    assert.ok(ran >= Math.floor(elapsedS / (3 * intervalS)), `ran only ${ran} times in ${elapsedS.toFixed(1)} s`);
    // Each interval one replica runs and the others skip: two skips per run, give or take.
    assert.ok(skipped >= ran, `skipped ${skipped} < ran ${ran}`);
  });
});

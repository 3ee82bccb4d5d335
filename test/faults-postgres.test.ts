import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createPgDriver, isConnectionError } from '../src/store/index.ts';
import { eventually } from './helpers/eventually.ts';
import { postgresBinDir, startPgCluster, withClient, type PgCluster } from './helpers/pg-cluster.ts';
import { openQueryStream, sseEvents } from './helpers/raw-stream.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

/**
 * Database faults against a real `relay serve` on a PostgreSQL cluster of this test's own
 * (never the machine's shared server, which other suites use): a backend killed under a
 * stream, and the server stopped and started under a write load. Skipped, saying why, only on a
 * machine without PostgreSQL binaries.
 */

const bin = postgresBinDir();
const skip = bin ? false : 'no PostgreSQL binaries (initdb, pg_ctl) on this machine: the fault tests need a cluster of their own';
if (!bin) console.log(`# faults-postgres skipped: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function post(relay: RelayProcess, token: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${relay.url}/api/v1/memory`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as { ids?: string[]; error?: { code: string } } };
}

describe('database faults against relay serve on a PostgreSQL cluster of its own', { skip }, () => {
  let cluster: PgCluster;
  before(async () => {
    cluster = await startPgCluster(bin!);
  });
  after(() => {
    cluster?.destroy();
  });

  /** The relay transaction waiting on the table lock the test holds, as pg_stat_activity shows it. */
  const waitingBackend = () =>
    eventually('the query to wait on the lock', () =>
      withClient(cluster.adminUrl, async (c) => {
        const r = await c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE usename = 'app_user' AND wait_event_type = 'Lock'");
        return r.rows[0]?.pid;
      }),
    );

  /** Holds ACCESS EXCLUSIVE on memory_chunks (as the owner) until `release`: a query then waits where the test can find it. */
  async function lockTable(): Promise<{ release(): Promise<void> }> {
    const c = new pg.Client({ connectionString: cluster.ownerUrl });
    await c.connect();
    await c.query('BEGIN');
    await c.query('LOCK TABLE memory_chunks IN ACCESS EXCLUSIVE MODE');
    return {
      release: async () => {
        await c.query('ROLLBACK');
        await c.end();
      },
    };
  }

  for (const variant of ['after the first heartbeat', 'before anything was sent'] as const) {
    it(`a backend killed under a stream ${variant}: ${variant === 'after the first heartbeat' ? 'event: error store_unavailable' : 'a plain 503 store_unavailable'}; the pool recovers`, async () => {
      const streaming = variant === 'after the first heartbeat';
      // A heartbeat every 100 ms sends the headers while the search waits; at 15 s nothing is sent before the kill.
      const relay = await startRelayProcess(cluster, { RELAY_SSE_HEARTBEAT_MS: streaming ? '100' : '15000', RELAY_RERANK: 'off' });
      try {
        const token = await relay.token(`fault-kill-${streaming ? 'sse' : 'plain'}`, 'alice');
        for (const text of ['Spare keys under the blue pot.', 'The car keys hang by the door.', 'Passport in the top drawer.']) {
          assert.equal((await post(relay, token, { text })).status, 201);
        }
        const errorsBefore = await relay.metric('relay_sse_streams_total', { outcome: 'error' });
        const lock = await lockTable();
        let pid: number;
        try {
          if (streaming) {
            const stream = await openQueryStream(relay.url, token, { query: 'where are the keys?' });
            assert.equal(stream.status, 200);
            await stream.until((t) => t.includes(': heartbeat'));
            pid = await waitingBackend();
            await withClient(cluster.adminUrl, (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
            const { text, dropped } = await stream.end();
            assert.equal(dropped, false, 'the server ended the stream, it did not drop the connection');
            const events = sseEvents(text);
            assert.deepEqual(events.map((e) => e.event), ['error'], `the stream: ${text}`);
            assert.equal((JSON.parse(events[0]!.data) as { code: string }).code, 'store_unavailable');
          } else {
            const answer = fetch(`${relay.url}/api/v1/memory/query`, {
              method: 'POST',
              headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
              body: JSON.stringify({ query: 'where are the keys?' }),
            });
            pid = await waitingBackend();
            await withClient(cluster.adminUrl, (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
            const res = await answer;
            assert.equal(res.status, 503);
            assert.match(res.headers.get('content-type') ?? '', /application\/json/);
            assert.ok(res.headers.get('retry-after'));
            assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'store_unavailable');
          }
        } finally {
          await lock.release();
        }
        assert.equal(await relay.metric('relay_sse_streams_total', { outcome: 'error' }), errorsBefore + 1);
        // The pool dropped the dead connection: every next query and write is served.
        for (let i = 0; i < 6; i++) {
          const stream = await openQueryStream(relay.url, token, { query: 'where are the keys?' });
          const events = sseEvents((await stream.end()).text);
          assert.equal(events.at(-1)?.event, 'done', `query ${i} after the kill`);
          assert.equal(events.filter((e) => e.event === 'result').length, 3);
        }
        assert.equal((await post(relay, token, { text: 'Written after the kill.' })).status, 201);
        const gone = await withClient(cluster.adminUrl, (c) => c.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]));
        assert.equal(gone.rowCount, 0, 'the killed backend is gone');
      } finally {
        await relay.stop();
      }
    });
  }

  it('a connection that breaks between two statements of a transaction is a connection error (503), whatever pg calls it', async () => {
    const driver = createPgDriver({ appUrl: cluster.appUrl, poolMax: 2 });
    try {
      const failures: unknown[] = [];
      // Terminated between statements (the server stopping under a write); the next statement
      // meets pg's "not queryable" or "Connection terminated": errors with no SQLSTATE.
      for (let i = 0; i < 2; i++) {
        const err = await driver
          .appTransaction([], async (sql) => {
            const { rows } = await sql.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
            await withClient(cluster.adminUrl, (c) => c.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]));
            await sleep(100);
            await sql.query('SELECT 1');
          })
          .then(() => null, (e: unknown) => e);
        assert.ok(err instanceof Error, 'the transaction failed');
        failures.push(err);
      }
      for (const err of failures) assert.ok(isConnectionError(err), `not taken for a connection error: ${(err as Error).message}`);
      // The pool dropped the broken clients: the next transaction is served.
      assert.equal(await driver.appTransaction([], async (sql) => (await sql.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one), 1);
    } finally {
      await driver.close();
    }
  });

  it('PostgreSQL stopped and started under a write load: /readyz goes 503 then 200 by itself; every 201 is readable, keyed retries wrote once', async () => {
    const relay = await startRelayProcess(cluster, { RELAY_STATEMENT_TIMEOUT_MS: '5000' });
    const tenant = 'fault-restart';
    const token = await relay.token(tenant, 'alice');
    const WRITERS = 4;
    const PER_WRITER = 12;
    const acked = new Map<string, string[]>();
    const unexpected: string[] = [];
    let retries = 0;
    let replayed = 0;
    let onAck = () => {};

    const writer = async (w: number) => {
      for (let i = 0; i < PER_WRITER; i++) {
        const key = `restart-w${w}-${i}`;
        for (let attempt = 0; ; attempt++) {
          if (attempt > 2000) throw new Error(`${key}: never acknowledged`);
          const res = await post(relay, token, { chunks: [`writer ${w} note ${i}`] }, { 'idempotency-key': key }).catch(() => null);
          if (res?.status === 201) {
            acked.set(key, res.json.ids!);
            if (res.headers.get('idempotent-replayed') === 'true') replayed++;
            onAck();
            break;
          }
          // The store is away (503 store_unavailable) or the connection dropped: the same key again.
          if (res && !(res.status === 503 && res.json.error?.code === 'store_unavailable')) unexpected.push(`${key}: ${res.status} ${JSON.stringify(res.json)}`);
          retries++;
          await sleep(20);
        }
      }
    };
    const readyz = async () => (await fetch(`${relay.url}/readyz`)).status;
    try {
      const writing = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
      await new Promise<void>((resolve) => {
        onAck = () => acked.size >= 8 && resolve();
      });
      const stopping = cluster.stop('fast');
      const notReady = await eventually('/readyz to say not ready', async () => ((await readyz()) === 503 ? true : undefined));
      const whileDown = await (await fetch(`${relay.url}/readyz`)).json() as { checks: { store: string } };
      const ackedWhileDown = acked.size;
      // Writers keep trying while it is down; give them a moment to meet the outage.
      await eventually('a write to meet the outage', async () => (retries > 0 ? true : undefined));
      await stopping;
      await cluster.start();
      const readyAgain = await eventually('/readyz to recover by itself', async () => ((await readyz()) === 200 ? true : undefined));
      await writing;

      assert.ok(notReady && readyAgain);
      assert.equal(whileDown.checks.store, 'unreachable');
      assert.ok(ackedWhileDown < WRITERS * PER_WRITER, 'the outage happened during the load');
      assert.ok(retries > 0, 'some writes met the outage and were retried');
      assert.deepEqual(unexpected, [], `relay serve logged:\n${relay.log().split('\n').filter((l) => /request failed/.test(l)).join('\n')}`);
      assert.equal(acked.size, WRITERS * PER_WRITER);
      // Nothing acknowledged is lost: every id of every 201 reads back, with its text.
      for (const [key, ids] of acked) {
        const [, w, i] = /^restart-w(\d+)-(\d+)$/.exec(key)!;
        assert.equal(ids.length, 1);
        const res = await fetch(`${relay.url}/api/v1/memory/${ids[0]}`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.status, 200, `${key} (${ids[0]}) was acknowledged but does not read back`);
        assert.equal(((await res.json()) as { text: string }).text, `writer ${w} note ${i}`);
      }
      // And nothing was written twice: exactly one row and one idempotency key per logical write.
      const counts = await withClient(cluster.ownerUrl, async (c) => ({
        rows: (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1', [tenant])).rows[0]!.n,
        keys: (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys WHERE tenant_id = $1', [tenant])).rows[0]!.n,
        ids: (await c.query<{ id: string }>('SELECT id FROM memory_chunks WHERE tenant_id = $1', [tenant])).rows.map((r) => r.id).sort(),
      }));
      assert.equal(counts.rows, WRITERS * PER_WRITER);
      assert.equal(counts.keys, WRITERS * PER_WRITER);
      assert.deepEqual(counts.ids, [...acked.values()].flat().sort());
      console.log(`  ${acked.size} writes acknowledged (${ackedWhileDown} before the stop), ${retries} retried attempts, ${replayed} answered as replays`);
    } finally {
      await relay.stop();
    }
  });
});

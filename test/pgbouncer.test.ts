import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../src/config/index.ts';
import { pgbouncerIni, startPgBouncer, upstreamOf, userlistTxt, type PgBouncer } from '../src/fleet/index.ts';
import { createPgDriver, openStore, probePooling, SCOPE_SETTINGS, Store, type Driver } from '../src/store/index.ts';
import { call, sseQuery } from './helpers/api.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

/**
 * RELAY_DB_POOLER=transaction (docs/scaling.md, "PgBouncer in transaction mode"): the service
 * behind a PgBouncer 1.18 this suite starts (Debian's package) in pool_mode = transaction with
 * default_pool_size = 2, so that many clients share two server connections and a client's next
 * transaction runs on whichever is free.
 */

const appUrl = process.env.RELAY_TEST_DATABASE_URL;
const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;
const skip = !appUrl && 'RELAY_TEST_DATABASE_URL is not set (server store)';

type Json = Record<string, unknown>;
const APP_USER = 'app_user';

describe('RELAY_DB_POOLER and RELAY_DB_LISTEN_URL (configuration)', () => {
  const base = { DATABASE_URL: 'postgres://app_user@127.0.0.1:6432/relay', RELAY_JWT_SECRET: 'x'.repeat(32) };

  it('defaults: no pooler, LISTEN on DATABASE_URL', () => {
    const store = loadConfig(base).store;
    assert.equal(store.kind, 'pg');
    assert.ok(store.kind === 'pg');
    assert.equal(store.pooler, 'none');
    assert.equal(store.listenUrl, base.DATABASE_URL);
  });

  it('transaction, with a listen URL of its own', () => {
    const store = loadConfig({ ...base, RELAY_DB_POOLER: 'transaction', RELAY_DB_LISTEN_URL: 'postgres://app_user@127.0.0.1:5432/relay' }).store;
    assert.ok(store.kind === 'pg');
    assert.equal(store.pooler, 'transaction');
    assert.equal(store.listenUrl, 'postgres://app_user@127.0.0.1:5432/relay');
  });

  for (const [what, env, message] of [
    ['an unknown pooler', { ...base, RELAY_DB_POOLER: 'session' }, /RELAY_DB_POOLER/],
    ['transaction without a listen URL', { ...base, RELAY_DB_POOLER: 'transaction' }, /RELAY_DB_LISTEN_URL: required when RELAY_DB_POOLER=transaction/],
    ['transaction on the embedded store', { RELAY_DB_POOLER: 'transaction', RELAY_DB_LISTEN_URL: base.DATABASE_URL }, /RELAY_DB_POOLER: transaction needs DATABASE_URL/],
    ['a listen URL that is not a postgres URL', { ...base, RELAY_DB_LISTEN_URL: 'http://x' }, /RELAY_DB_LISTEN_URL: must be a postgres:\/\/ URL/],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => loadConfig(env), (err: Error & { code?: string }) => err.code === 'invalid_config' && message.test(err.message));
    });
  }
});

describe('PgBouncer in transaction mode (server store)', { skip }, () => {
  const upstream = new URL(appUrl ?? 'postgres://x@127.0.0.1:5432/x');
  const password = randomBytes(12).toString('hex');
  let tx: PgBouncer;
  let session: PgBouncer;

  before(async () => {
    const common = { ...upstreamOf(upstream), users: [{ name: APP_USER, password }], defaultPoolSize: 2 };
    tx = await startPgBouncer({ ...common, poolMode: 'transaction' });
    session = await startPgBouncer({ ...common, poolMode: 'session' });
  });
  after(async () => {
    await tx?.daemon.stop();
    await session?.daemon.stop();
  });

  /** The server store through the transaction pool, as RELAY_DB_POOLER=transaction opens it. */
  const pooledDriver = (o: { poolMax?: number; statementTimeoutMs?: number } = {}): Driver =>
    createPgDriver({ appUrl: tx.url(APP_USER), ownerUrl, pooler: 'transaction', listenUrl: appUrl, poolMax: o.poolMax ?? 4, statementTimeoutMs: o.statementTimeoutMs });

  it("docs/scaling.md's pgbouncer.ini and userlist.txt are the ones this suite runs, with production values", async () => {
    const doc = await readFile('docs/scaling.md', 'utf8');
    const section = doc.slice(doc.indexOf('## PgBouncer in transaction mode'));
    const block = (name: string) => new RegExp('```ini\\n# ' + name.replace('.', '\\.') + '\\n([\\s\\S]*?)```').exec(section)?.[1];
    assert.equal(
      block('/etc/pgbouncer/pgbouncer.ini'),
      pgbouncerIni({
        listenAddr: '*',
        listenPort: 6432,
        unixSocketDir: '/var/run/postgresql',
        authFile: '/etc/pgbouncer/userlist.txt',
        upstreamHost: '127.0.0.1',
        upstreamPort: 5432,
        db: 'relay',
        poolMode: 'transaction',
        defaultPoolSize: 20,
        maxClientConn: 1000,
      }),
    );
    assert.equal(block('/etc/pgbouncer/userlist.txt'), userlistTxt([{ name: APP_USER, password: 'the password of app_user' }]));
  });

  it('the start-up probe tells a transaction pool from PostgreSQL and from a session pool, every time', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal(await probePooling(tx.url(APP_USER)), 'transaction', `round ${i}`);
      assert.equal(await probePooling(session.url(APP_USER)), 'session', `round ${i}`);
      assert.equal(await probePooling(appUrl!), 'session', `round ${i}`);
    }
  });

  it('a transaction never sees the previous transaction’s relay.tenant_id / relay.user_hash on the same server connection (20 tenants at once, pool of 2)', async () => {
    const driver = pooledDriver({ poolMax: 20 });
    const tenants = Array.from({ length: 20 }, (_, i) => ({ tenant: `pgb-${randomBytes(3).toString('hex')}-${i}`, hash: randomBytes(32).toString('hex') }));
    const byPid = new Map<number, Set<string>>();
    let unscoped = 0;
    type Seen = { t: string | null; u: string | null; pid: number };
    const read = (sql: Parameters<Parameters<Driver['appTransaction']>[1]>[0]) =>
      sql.query<Seen>('SELECT current_setting($1, true) AS t, current_setting($2, true) AS u, pg_backend_pid() AS pid', [SCOPE_SETTINGS.tenant, SCOPE_SETTINGS.user]);
    try {
      await Promise.all(
        tenants.map(async ({ tenant, hash }) => {
          for (let round = 0; round < 15; round++) {
            const own = (
              await driver.appTransaction(
                [
                  [SCOPE_SETTINGS.tenant, tenant],
                  [SCOPE_SETTINGS.user, hash],
                ],
                read,
              )
            ).rows[0]!;
            assert.deepEqual([own.t, own.u], [tenant, hash], 'a scoped transaction sees its own scope');
            if (!byPid.has(own.pid)) byPid.set(own.pid, new Set());
            byPid.get(own.pid)!.add(tenant);
            // No scope of its own: nothing of whoever ran on that server connection before.
            const none = (await driver.appTransaction([], read)).rows[0]!;
            assert.ok(!none.t && !none.u, `an unscoped transaction saw tenant ${none.t} / user ${none.u} on backend ${none.pid}`);
            unscoped++;
          }
        }),
      );
    } finally {
      await driver.close();
    }
    const shared = Math.max(...[...byPid.values()].map((s) => s.size));
    console.log(`# ${unscoped} unscoped transactions after scoped ones, ${byPid.size} server connection(s), up to ${shared} tenants on one`);
    assert.ok(byPid.size <= 2, `default_pool_size = 2, yet ${byPid.size} backends`);
    assert.ok(shared >= 10, `server connections were shared by ${shared} tenants at most`);
  });

  it('the statement timeout holds through it (set per transaction), and a cancel reaches the statement', async () => {
    const driver = pooledDriver({ statementTimeoutMs: 1500 });
    const slow = pooledDriver({ statementTimeoutMs: 120_000 });
    const watcher = new pg.Client({ connectionString: appUrl });
    await watcher.connect();
    try {
      const shown = await driver.appTransaction([], (sql) => sql.query<{ t: string }>("SELECT current_setting('statement_timeout') AS t"));
      assert.equal(shown.rows[0]!.t, '1500ms');
      await assert.rejects(
        driver.appTransaction([], (sql) => sql.query('SELECT pg_sleep(30)')),
        (err: { code?: string }) => err.code === '57014',
      );
      // A caller that leaves: its statement is cancelled on the server (a pg_sleep of 60 s
      // under a 120 s timeout would otherwise run on).
      const tag = `relay-pgb-cancel-${randomBytes(4).toString('hex')}`;
      const running = () =>
        watcher.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()", [`%${tag}%`]);
      const ac = new AbortController();
      const call60 = slow.appTransaction([], (sql) => sql.query(`SELECT pg_sleep(60), '${tag}'`), { signal: ac.signal });
      call60.catch(() => undefined);
      for (let i = 0; i < 400 && (await running()).rows[0]!.n === 0; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal((await running()).rows[0]!.n, 1, 'the statement runs');
      ac.abort(new Error('left'));
      await assert.rejects(call60, /left/);
      let n = 1;
      for (let i = 0; i < 200 && n > 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        n = (await running()).rows[0]!.n;
      }
      assert.equal(n, 0, 'the statement was cancelled on the server within 10 s');
      // And the pool goes on.
      assert.equal((await slow.appTransaction([], (sql) => sql.query<{ one: number }>('SELECT 1 AS one'))).rows[0]!.one, 1);
    } finally {
      await watcher.end();
      await driver.close();
      await slow.close();
    }
  });

  describe('relay serve through it, end to end', () => {
    let relay: RelayProcess;
    before(async () => {
      relay = await startRelayProcess('pg', { DATABASE_URL: tx.url(APP_USER), RELAY_DB_POOLER: 'transaction', RELAY_DB_LISTEN_URL: appUrl!, RELAY_DB_POOL_MAX: '4', RELAY_RERANK: 'off' });
    });
    after(async () => {
      await relay?.stop();
    });

    it('write, query (JSON and SSE), list, get and erasure, for 8 tenants at once', async () => {
      const url = (path: string) => `${relay.url}${path}`;
      await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const tenant = `pgb-e2e-${randomBytes(3).toString('hex')}-${i}`;
          const token = await relay.token(tenant, 'alice');
          const w = await call(url('/api/v1/memory'), 'POST', token, { chunks: [`Alice ${i} parks on level ${i}.`, `Alice ${i} likes oolong tea.`] } satisfies Json);
          assert.equal(w.status, 201, JSON.stringify(w.body));
          const ids = (w.body as { ids: string[] }).ids;
          for (let round = 0; round < 3; round++) {
            const q = await call(url('/api/v1/memory/query'), 'POST', token, { query: `where does Alice ${i} park?`, top_k: 2 });
            assert.equal(q.status, 200, JSON.stringify(q.body));
            const results = (q.body as { results: Array<{ id: string; text: string }> }).results;
            assert.deepEqual(new Set(results.map((r) => r.id)), new Set(ids));
            const events = await sseQuery(relay.url, token, { query: `what does Alice ${i} drink?`, top_k: 2 }, { timeoutMs: 30_000 });
            assert.deepEqual(events.at(-1)?.event, 'done', JSON.stringify(events));
            assert.deepEqual(new Set(events.filter((e) => e.event === 'result').map((e) => e.id)), new Set(ids));
          }
          const list = await call(url('/api/v1/memory?limit=10'), 'GET', token);
          assert.equal(list.status, 200);
          assert.deepEqual(new Set((list.body as { items: Array<{ id: string }> }).items.map((x) => x.id)), new Set(ids));
          const one = await call(url(`/api/v1/memory/${ids[0]}`), 'GET', token);
          assert.equal(one.status, 200);
          assert.equal((one.body as { text: string }).text, `Alice ${i} parks on level ${i}.`);
          const erased = await call(url('/api/v1/users/alice/memory'), 'DELETE', token);
          assert.equal(erased.status, 200, JSON.stringify(erased.body));
          assert.equal((erased.body as { deleted: number }).deleted, 2);
          assert.equal((await call(url(`/api/v1/memory/${ids[0]}`), 'GET', token)).status, 404);
        }),
      );
      assert.doesNotMatch(relay.log(), /request failed|does not exist/);
      // Key events listen on RELAY_DB_LISTEN_URL, a direct connection.
      assert.equal(await relay.metric('relay_key_events_listening'), 1);
    });
  });

  describe('start-up probe: a wrong combination fails at start, a right one starts', () => {
    /** relay serve's start-up error (stderr), failing the test (and stopping it) should it start. */
    const startFailure = async (env: Record<string, string>): Promise<string> => {
      let relay: RelayProcess;
      try {
        relay = await startRelayProcess('pg', env);
      } catch (err) {
        return (err as Error).message;
      }
      await relay.stop();
      assert.fail('relay serve started');
    };

    it('prepared statements (RELAY_DB_POOLER unset) against the transaction pool: exits non-zero, saying what to change', async () => {
      const message = await startFailure({ DATABASE_URL: tx.url(APP_USER) });
      assert.match(message, /exited with 1/);
      assert.match(message, /DATABASE_URL leads through a transaction pooler/);
      assert.match(message, /Set RELAY_DB_POOLER=transaction/);
      assert.doesNotMatch(message, new RegExp(password), 'the password is not printed');
    });

    it('RELAY_DB_LISTEN_URL through the transaction pool: exits non-zero (LISTEN needs a session)', async () => {
      const message = await startFailure({ DATABASE_URL: tx.url(APP_USER), RELAY_DB_POOLER: 'transaction', RELAY_DB_LISTEN_URL: tx.url(APP_USER) });
      assert.match(message, /exited with 1/);
      assert.match(message, /RELAY_DB_LISTEN_URL leads through a transaction or statement pooler/);
    });

    for (const [what, via] of [
      ['a direct connection', () => appUrl!],
      ['a session pool', () => session.url(APP_USER)],
    ] as const) {
      it(`RELAY_DB_POOLER=transaction against ${what} works`, async () => {
        const relay = await startRelayProcess('pg', { DATABASE_URL: via(), RELAY_DB_POOLER: 'transaction', RELAY_DB_LISTEN_URL: appUrl!, RELAY_RERANK: 'off' });
        try {
          const token = await relay.token(`pgb-ok-${randomBytes(3).toString('hex')}`, 'bob');
          assert.equal((await call(`${relay.url}/api/v1/memory`, 'POST', token, { text: 'Bob is allergic to nuts.' })).status, 201);
          const q = await call(`${relay.url}/api/v1/memory/query`, 'POST', token, { query: 'what is Bob allergic to?', top_k: 1 });
          assert.equal(q.status, 200);
          assert.equal((q.body as { results: Array<{ text: string }> }).results[0]?.text, 'Bob is allergic to nuts.');
          assert.equal((await call(`${relay.url}/api/v1/users/bob/memory`, 'DELETE', token)).status, 200);
        } finally {
          await relay.stop();
        }
      });
    }

    it('a pooler that cannot be asked at open is asked before the first transaction: the mismatch fails every transaction, saying why', async () => {
      // PgBouncer stopped (SIGSTOP): the probe's login times out, so the store opens as it always
      // has with the database away...
      tx.daemon.kill('SIGSTOP');
      let store: Store;
      try {
        store = await openStore({ location: { kind: 'pg', databaseUrl: tx.url(APP_USER), migrateUrl: ownerUrl, poolMax: 4 } });
      } finally {
        tx.daemon.kill('SIGCONT');
      }
      // ...and once it answers, no statement runs on a transaction pool with prepared statements.
      try {
        for (let i = 0; i < 2; i++) {
          await assert.rejects(
            store.driver.appTransaction([], (sql) => sql.query('SELECT 1', [], { prepare: true })),
            (err: Error & { code?: string }) => err.code === 'pooler_mismatch' && /DATABASE_URL leads through a transaction pooler/.test(err.message),
          );
        }
      } finally {
        await store.close();
      }
    });

    it('prepared statements through a session pool open and run as before', async () => {
      const store = await openStore({ location: { kind: 'pg', databaseUrl: session.url(APP_USER), migrateUrl: ownerUrl, poolMax: 4 } });
      try {
        for (let i = 0; i < 5; i++) {
          const r = await store.driver.appTransaction([], (sql) => sql.query<{ n: number }>('SELECT $1::int AS n', [i], { prepare: true }));
          assert.equal(r.rows[0]!.n, i);
        }
      } finally {
        await store.close();
      }
    });
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RelayClient } from '../src/client/index.ts';
import { createPgDriver, SqlKeyRepository, Store } from '../src/store/index.ts';
import { call, type Answer } from './helpers/api.ts';
import { eventually } from './helpers/eventually.ts';
import { postgresBinDir, startPgCluster, startStandby, withClient, type PgCluster, type PgStandby } from './helpers/pg-cluster.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';
import type { Target } from './helpers/targets.ts';
import { startFuzzHarness } from './regression/harness.ts';
import { assertIsolation, fuzzSettings } from './regression/property.ts';

/**
 * Reads on a hot standby (RELAY_READ_DATABASE_URL), against real streaming replication: a
 * primary and a standby of this test's own, the standby replaying every commit 2 s late
 * (`recovery_min_apply_delay`), so a read sent there too early visibly misses a write. Runs in
 * the server run only (it tests no store but PostgreSQL's); skipped, saying why, elsewhere.
 */

const bin = postgresBinDir();
const skip = !process.env.RELAY_TEST_DATABASE_URL
  ? 'a server-store suite: runs when RELAY_TEST_DATABASE_URL is set'
  : !bin
    ? 'no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup) on this machine'
    : false;

type Json = Record<string, unknown>;
const json = (v: unknown) => v as Json;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const APPLY_DELAY_MS = 2000;

describe('reads on a hot standby with read-your-writes (pg, streaming replication)', { skip, timeout: 600_000 }, () => {
  let primary: PgCluster;
  let standby: PgStandby;
  /** Waits up to 6 s for the standby: reads with a token run there once it has replayed. */
  let patient: RelayProcess;
  /** The default 200 ms wait: reads with a token outrun the 2 s delay and go to the primary. */
  let hasty: RelayProcess;
  const secret = randomBytes(32).toString('base64url');
  const tenant = `replica-${randomBytes(4).toString('hex')}`;

  before(async () => {
    primary = await startPgCluster(bin!);
    standby = await startStandby(bin!, primary, { applyDelayMs: APPLY_DELAY_MS });
    const env = { RELAY_JWT_SECRET: secret, RELAY_READ_DATABASE_URL: standby.appUrl };
    patient = await startRelayProcess(primary, { ...env, RELAY_READ_WAIT_MS: '6000', RELAY_MAX_STANDBY_LAG_MS: '60000' });
    hasty = await startRelayProcess(primary, { ...env, RELAY_MAX_STANDBY_LAG_MS: '60000' });
  });
  after(async () => {
    await Promise.all([patient?.stop(), hasty?.stop()]);
    standby?.destroy();
    primary?.destroy();
  });

  const write = async (relay: RelayProcess, text: string) => {
    const res = await call(`${relay.url}/api/v1/memory`, 'POST', await relay.token(tenant, 'alice'), { text });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const token = res.headers.get('relay-consistency');
    assert.ok(token, 'a write answers Relay-Consistency');
    return { id: (json(res.body).ids as string[])[0]!, token };
  };
  const get = async (relay: RelayProcess, id: string, token?: string): Promise<Answer> =>
    call(`${relay.url}/api/v1/memory/${id}`, 'GET', await relay.token(tenant, 'alice'), undefined, token ? { 'relay-consistency': token } : {});
  const routed = (relay: RelayProcess, target: string, reason: string) => relay.metric('relay_read_route_total', { target, reason });

  it('a write, then a read with its token, sees the write (waited for on the standby, or on the primary past the wait); without it the standby has not replayed it yet', async () => {
    const waited = await routed(patient, 'standby', 'waited');
    const { id, token } = await write(patient, 'the heron stands in the reeds');
    // No token: the standby serves it, 2 s behind: the write is not there yet.
    const early = await get(patient, id);
    assert.equal(early.status, 404, `the standby had replayed the write already: ${JSON.stringify(early.body)}`);
    const started = Date.now();
    const seen = await get(patient, id, token);
    assert.equal(seen.status, 200, JSON.stringify(seen.body));
    assert.equal(json(seen.body).text, 'the heron stands in the reeds');
    assert.ok(Date.now() - started >= 500, 'the read waited for the standby to replay the write');
    assert.equal(await routed(patient, 'standby', 'waited'), waited + 1);

    const timeouts = await routed(hasty, 'primary', 'wait_timeout');
    const second = await write(hasty, 'the heron takes a fish');
    const onPrimary = await get(hasty, second.id, second.token);
    assert.equal(onPrimary.status, 200, JSON.stringify(onPrimary.body));
    assert.equal(json(onPrimary.body).text, 'the heron takes a fish');
    assert.equal(await routed(hasty, 'primary', 'wait_timeout'), timeouts + 1);
    // A query and a list with the token see it too.
    const alice = await hasty.token(tenant, 'alice');
    const listed = await call(`${hasty.url}/api/v1/memory?limit=50`, 'GET', alice, undefined, { 'relay-consistency': second.token });
    assert.ok((json(listed.body).items as Json[]).some((item) => item.id === second.id));
    const queried = await call(`${hasty.url}/api/v1/memory/query`, 'POST', alice, { query: 'heron fish', top_k: 50 }, { 'relay-consistency': second.token, accept: 'text/event-stream' });
    assert.equal(queried.status, 200);
    assert.match(String(queried.body), new RegExp(second.id));
  });

  it("the typed client's write-then-query always sees its write, on either process", async () => {
    for (const relay of [patient, hasty]) {
      const client = new RelayClient({ baseUrl: relay.url, token: await relay.token(tenant, 'carol') });
      for (let i = 0; i < 3; i++) {
        const { ids } = await client.add({ text: `carol's egret number ${i} at ${relay.url}` });
        const found = await client.queryAll({ query: `carol's egret number ${i}`, top_k: 50 });
        assert.ok(found.results.some((r) => r.id === ids[0]), `query ${i} on ${relay.url} missed the write`);
        const chunk = await client.get(ids[0]!);
        assert.equal(chunk.id, ids[0]);
      }
    }
  });

  it('a forged or edited token is 400 invalid_consistency_token, a token of another tenant too', async () => {
    const { id, token } = await write(patient, 'a forged heron');
    const bytes = Buffer.from(token, 'base64url');
    bytes.writeBigUInt64BE(bytes.readBigUInt64BE(1) + (1n << 36n), 1);
    const other = await call(`${patient.url}/api/v1/memory`, 'POST', await patient.token(`${tenant}-other`, 'alice'), { text: 'elsewhere' });
    for (const bad of [bytes.toString('base64url'), other.headers.get('relay-consistency')!]) {
      const res = await get(patient, id, bad);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal((json(res.body).error as Json).code, 'invalid_consistency_token');
    }
  });

  it('the standby is probed: up, its replay lag exported; a standby lagging past RELAY_MAX_STANDBY_LAG_MS serves no read', async () => {
    assert.equal(await patient.metric('relay_standby_up'), 1);
    const capped = await startRelayProcess(primary, { RELAY_JWT_SECRET: secret, RELAY_READ_DATABASE_URL: standby.appUrl, RELAY_MAX_STANDBY_LAG_MS: '500' });
    try {
      // Writes keep coming: the standby is ~2 s behind, and the probes say so.
      const writing = (async () => {
        for (let i = 0; i < 30; i++) await write(patient, `a lagging heron ${i}`);
      })();
      const lag = await eventually('a replay lag over 1 s', async () => {
        const v = await capped.metric('relay_standby_replay_lag_seconds');
        return v >= 1 ? v : undefined;
      });
      assert.ok(lag < 30, `lag ${lag}`);
      const before = await routed(capped, 'primary', 'standby_lagging');
      const res = await call(`${capped.url}/api/v1/memory?limit=5`, 'GET', await capped.token(tenant, 'alice'));
      assert.equal(res.status, 200);
      assert.equal(await routed(capped, 'primary', 'standby_lagging'), before + 1);
      await writing;
    } finally {
      await capped.stop();
    }
  });

  it('standby stopped: every read runs on the primary, 0 errors; started again, reads go back to it', async () => {
    const { id } = await write(patient, 'a heron before the standby stops');
    await sleep(APPLY_DELAY_MS + 500);
    const alice = await patient.token(tenant, 'alice');
    const onPrimary = async () => (await routed(patient, 'primary', 'standby_down')) + (await routed(patient, 'primary', 'standby_failed'));
    const primaryBefore = await onPrimary();
    await standby.stop('immediate');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 3 === 0
          ? call(`${patient.url}/api/v1/memory/${id}`, 'GET', alice)
          : i % 3 === 1
            ? call(`${patient.url}/api/v1/memory?limit=5`, 'GET', alice)
            : call(`${patient.url}/api/v1/memory/query`, 'POST', alice, { query: 'heron', top_k: 5 }),
      ),
    );
    assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200), JSON.stringify(answers.find((a) => a.status !== 200)?.body));
    assert.equal((await onPrimary()) - primaryBefore, 20);
    assert.equal(await patient.metric('relay_standby_up'), 0);
    await standby.start();
    await eventually('a read on the standby again', async () => {
      const before = await routed(patient, 'standby', 'no_token');
      const res = await call(`${patient.url}/api/v1/memory/${id}`, 'GET', alice);
      assert.equal(res.status, 200);
      return (await routed(patient, 'standby', 'no_token')) > before ? true : undefined;
    });
  });

  it('the key catalog is read on the standby when the primary cannot be reached, and never written there', async () => {
    const dead = createPgDriver({ appUrl: 'postgres://app_user@127.0.0.1:1/relay_faults', connectTimeoutMs: 1000 });
    const standbyDriver = createPgDriver({ appUrl: standby.appUrl, poolMax: 1 });
    try {
      await sleep(APPLY_DELAY_MS + 500);
      // The tenant's keys exist: the writes above made them.
      const fallback = new SqlKeyRepository(dead, 'app', standbyDriver);
      const keys = await fallback.list(tenant);
      assert.ok(keys.some((k) => k.kind === 'hmac') && keys.some((k) => k.kind === 'data'), JSON.stringify(keys.map((k) => k.kind)));
      assert.equal(await fallback.isShredded(tenant), false);
      // Without the fallback, the same read fails; a write fails either way.
      await assert.rejects(new SqlKeyRepository(dead, 'app').list(tenant));
      await assert.rejects(fallback.insert({ ...keys[0]!, version: 999 }));
    } finally {
      await Promise.all([dead.close(), standbyDriver.close()]);
    }
  });

  it('RLS holds on the standby: the isolation fuzz slice with every read run there', async () => {
    // Replay at once from here: each read of the fuzz waits for the position before it.
    await withClient(standby.adminUrl, async (c) => {
      await c.query('ALTER SYSTEM SET recovery_min_apply_delay = 0');
      await c.query('SELECT pg_reload_conf()');
    });
    let routes = { standby: 0, primary: 0 };
    const target: Target = {
      name: 'pg',
      async open(opts = {}) {
        const observer = {
          ...opts.observer,
          readRoute: (to: 'standby' | 'primary') => void (routes = { ...routes, [to]: routes[to] + 1 }),
        };
        const store = new Store(createPgDriver({ appUrl: primary.appUrl, ownerUrl: primary.ownerUrl, poolMax: 4 }), {
          ...opts,
          observer,
          replica: { driver: createPgDriver({ appUrl: standby.appUrl, poolMax: 4 }), routing: { waitMs: 10_000, maxLagMs: 60_000 } },
        });
        await store.migrate();
        await store.startReadRouting();
        // The fuzz's oracle expects each read to see every write before it, as a client that
        // passes its Relay-Consistency token does: each read carries the primary's position.
        const withScope = store.withScope.bind(store);
        store.withScope = async (scope, fn, txOpts = {}) =>
          withScope(scope, fn, txOpts.read && txOpts.read.after === undefined ? { ...txOpts, read: { after: await store.commitPosition() } } : txOpts);
        return store;
      },
    };
    const h = await startFuzzHarness(target);
    try {
      await assertIsolation(h, fuzzSettings({ runs: 3, seed: 20261206, maxOps: 20 }, {}));
    } finally {
      await h.close();
    }
    assert.ok(routes.standby > 0, `no read ran on the standby: ${JSON.stringify(routes)}`);
    assert.equal(routes.primary, 0, `reads fell back to the primary: ${JSON.stringify(routes)}`);
  });
});

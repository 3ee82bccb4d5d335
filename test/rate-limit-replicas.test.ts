import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ConfigError, loadConfig } from '../src/config/index.ts';
import { startRedis, type RedisServer } from '../src/fleet/index.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

const appUrl = process.env.RELAY_TEST_DATABASE_URL;
const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;
const serverSkip = !appUrl || !ownerUrl ? 'RELAY_TEST_DATABASE_URL / RELAY_TEST_MIGRATE_URL not set' : false;

/** Small, so 3 × it is quick to send; the window is @fastify/rate-limit's fixed 60 s from a key's first request. */
const LIMIT = 10;
const WINDOW_MS = 60_000;
const WARNING = /rate-limit store unreachable/;

interface Answer {
  status: number;
  code?: string;
  retryAfter: string | null;
}

/** GET one page of the tenant's memory; a request that stalls fails after 20 s (40 × the Redis command timeout). */
async function list(relay: RelayProcess, token: string): Promise<Answer> {
  const res = await fetch(`${relay.url}/api/v1/memory?limit=1`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(20_000) }).catch((err: Error) => {
    throw new Error(`GET ${relay.url}/api/v1/memory stalled or failed: ${err.name}`);
  });
  const body = (await res.json().catch(() => null)) as { error?: { code?: string } } | null;
  return { status: res.status, code: body?.error?.code, retryAfter: res.headers.get('retry-after') };
}

/**
 * `n` requests of one tenant, round-robin over the replicas, one round (a request to each
 * replica at once) after another. Returns the answers by round and the time from the first
 * request sent to the last answer.
 */
async function roundRobin(replicas: RelayProcess[], token: string, n: number): Promise<{ rounds: Answer[][]; elapsedMs: number }> {
  const started = Date.now();
  const rounds: Answer[][] = [];
  for (let sent = 0; sent < n; sent += replicas.length) {
    rounds.push(await Promise.all(replicas.slice(0, Math.min(replicas.length, n - sent)).map((r) => list(r, token))));
  }
  return { rounds, elapsedMs: Date.now() - started };
}

const ok = (a: Answer) => a.status >= 200 && a.status < 300;
const tenant = (label: string) => `rl-${label}-${randomBytes(4).toString('hex')}`;
const sum = async (replicas: RelayProcess[], metric: string) => (await Promise.all(replicas.map((r) => r.metric(metric)))).reduce((a, b) => a + b, 0);
const warnings = (relay: RelayProcess) => relay.log().split('\n').filter((l) => WARNING.test(l));

async function readiness(relay: RelayProcess): Promise<{ status: number; body: { status: string; checks: Record<string, string> } }> {
  const res = await fetch(`${relay.url}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  for (const deadline = Date.now() + ms; ; ) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('rate limit store configuration', () => {
  it('refuses a RELAY_REDIS_URL that is not a redis:// URL, naming the variable and never echoing the value', () => {
    for (const bad of ['http://127.0.0.1:6379', 'redis://', '127.0.0.1:6379', 'redis://:hunter2@127.0.0.1:99999', 'rediss//x']) {
      assert.throws(
        () => loadConfig({ RELAY_REDIS_URL: bad }),
        (err: Error) => err instanceof ConfigError && /RELAY_REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/.test(err.message) && !err.message.includes('hunter2'),
        bad,
      );
    }
    const good = loadConfig({ RELAY_REDIS_URL: 'rediss://:pw@cache.internal:6380/2' });
    assert.deepEqual([good.api.redisUrl, good.api.rateLimitRequired], ['rediss://:pw@cache.internal:6380/2', false]);
    assert.equal(loadConfig({}).api.redisUrl, undefined);
  });

  it('refuses RELAY_RATE_LIMIT_REQUIRED=true without RELAY_REDIS_URL (a per-process limit is always there)', () => {
    assert.throws(() => loadConfig({ RELAY_RATE_LIMIT_REQUIRED: 'true' }), /RELAY_RATE_LIMIT_REQUIRED: needs RELAY_REDIS_URL/);
    assert.equal(loadConfig({ RELAY_RATE_LIMIT_REQUIRED: 'true', RELAY_REDIS_URL: 'redis://127.0.0.1:6379' }).api.rateLimitRequired, true);
  });

  it('relay serve (embedded store) with a bad RELAY_REDIS_URL stops at start with a clear message', async () => {
    await assert.rejects(startRelayProcess('pglite', { RELAY_REDIS_URL: 'redis//:hunter2@localhost' }), (err: Error) => {
      assert.match(err.message, /exited with 1/);
      assert.match(err.message, /RELAY_REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });
});

describe("rate limits across replicas (pg, 3 relay serve, a Redis of the test's own)", { skip: serverSkip, timeout: 600_000 }, () => {
  // Replicas of one service: one token secret (the master key is the shared test database's).
  const secret = randomBytes(32).toString('base64url');
  const password = `rl-${randomBytes(8).toString('hex')}`;
  const common = { RELAY_JWT_SECRET: secret, RELAY_RERANK: 'off', RELAY_RATE_LIMIT_PER_MIN: String(LIMIT), RELAY_DB_POOL_MAX: '2' };
  const started: RelayProcess[] = [];
  const redises: RedisServer[] = [];
  const replicas = async (n: number, env: Record<string, string>) => {
    const out: RelayProcess[] = [];
    // One at a time: three processes migrating the shared database at once only wait on each other.
    for (let i = 0; i < n; i++) {
      const r = await startRelayProcess('pg', { ...common, ...env });
      started.push(r);
      out.push(r);
    }
    return out;
  };
  const redis = async (port?: number) => {
    const r = await startRedis({ password, ...(port ? { port } : {}) });
    redises.push(r);
    return r;
  };

  after(async () => {
    await Promise.all(started.map((r) => r.stop()));
    await Promise.all(redises.map((r) => r.daemon.stop()));
    // Nothing any replica wrote, warned or failed with shows the Redis password.
    for (const r of started) assert.ok(!r.log().includes(password) && !r.stderr().includes(password), 'a log shows the Redis password');
  });

  describe('counted in Redis (RELAY_REDIS_URL)', () => {
    let fleet: RelayProcess[];
    let store: RedisServer;
    before(async () => {
      store = await redis();
      fleet = await replicas(3, { RELAY_REDIS_URL: store.url });
    });
    after(async () => {
      await Promise.all(fleet.map((r) => r.stop()));
    });

    it('a tenant sending 3× its limit round-robin gets its limit of 2xx, then 429 with Retry-After; another tenant is unaffected', async () => {
      const A = tenant('a');
      const token = await fleet[0]!.token(A, 'ann');
      const { rounds, elapsedMs } = await roundRobin(fleet, token, 3 * LIMIT);
      const answers = rounds.flat();
      // Stated slack: the count is per fixed 60 s window from the tenant's first request, so a
      // run that crosses a window's end may get one more limit's worth (none here, unless slow).
      const allowed = LIMIT * (1 + Math.floor(elapsedMs / WINDOW_MS));
      const passed = answers.filter(ok).length;
      assert.ok(passed <= allowed, `${passed} of ${answers.length} served, limit ${LIMIT} (${elapsedMs} ms)`);
      if (elapsedMs < WINDOW_MS) assert.equal(passed, LIMIT, 'within one window exactly the limit is served');
      for (const a of answers.filter((x) => !ok(x))) {
        assert.deepEqual([a.status, a.code], [429, 'rate_limited']);
        assert.ok(Number(a.retryAfter) >= 1 && Number(a.retryAfter) <= 60, `Retry-After ${a.retryAfter}`);
      }
      // Once a round saw a 429, every later round is all 429 (within the window).
      const firstRefused = rounds.findIndex((r) => r.some((a) => !ok(a)));
      if (elapsedMs < WINDOW_MS) for (const r of rounds.slice(firstRefused + 1)) assert.ok(r.every((a) => a.status === 429));
      // Every replica refused some: the count is the fleet's, not the replica's.
      for (let i = 0; i < fleet.length; i++) assert.ok(rounds.some((r) => r[i]?.status === 429), `replica ${i} refused none`);

      const B = tenant('b');
      const other = await roundRobin(fleet, await fleet[1]!.token(B, 'bob'), LIMIT);
      assert.deepEqual(other.rounds.flat().map((a) => a.status), Array(LIMIT).fill(200));
      assert.equal(await sum(fleet, 'relay_rate_limit_store_errors_total'), 0);
      for (const r of fleet) assert.deepEqual((await readiness(r)).body.checks.rate_limit_store, 'ok');
    });

    it('Redis killed (SIGKILL): requests are still served, relay_rate_limit_store_errors_total counts each, one warning per replica, /readyz 200', async () => {
      store.daemon.kill('SIGKILL');
      await store.daemon.exited;
      const before = await sum(fleet, 'relay_rate_limit_store_errors_total');
      const C = tenant('c');
      const { rounds } = await roundRobin(fleet, await fleet[2]!.token(C, 'cid'), 3 * LIMIT);
      // Fails open: uncounted, so more than the limit is served.
      assert.deepEqual(rounds.flat().map((a) => a.status), Array(3 * LIMIT).fill(200));
      assert.equal((await sum(fleet, 'relay_rate_limit_store_errors_total')) - before, 3 * LIMIT);
      for (const r of fleet) {
        const ready = await readiness(r);
        assert.deepEqual([ready.status, ready.body.status, ready.body.checks.rate_limit_store], [200, 'ready', 'unreachable (failing open)']);
        await r.logged(WARNING);
        const lines = warnings(r);
        assert.equal(lines.length, 1, lines.join('\n'));
        const line = JSON.parse(lines[0]!) as { level: number; redis: string };
        assert.equal(line.level, 40);
        assert.equal(line.redis, `redis://127.0.0.1:${store.port}`);
      }
    });

    it('Redis back, then hung (SIGSTOP): counted again once it is back; while hung, requests are served after the command timeout, not stalled', async () => {
      store = await redis(store.port);
      // Each replica reconnects by itself (every 2 s at most).
      for (const r of fleet) await until('reconnected', async () => ((await readiness(r)).body.checks.rate_limit_store === 'ok' ? true : undefined));
      const F = tenant('f');
      const token = await fleet[0]!.token(F, 'fay');
      const counted = await roundRobin(fleet, token, 3 * LIMIT);
      assert.equal(counted.rounds.flat().filter(ok).length, LIMIT);

      store.daemon.kill('SIGSTOP');
      try {
        const before = await sum(fleet, 'relay_rate_limit_store_errors_total');
        const G = tenant('g');
        const { rounds } = await roundRobin(fleet, await fleet[0]!.token(G, 'gus'), 6);
        assert.deepEqual(rounds.flat().map((a) => a.status), Array(6).fill(200));
        assert.equal((await sum(fleet, 'relay_rate_limit_store_errors_total')) - before, 6);
        const ready = await readiness(fleet[0]!);
        assert.deepEqual([ready.status, ready.body.checks.rate_limit_store], [200, 'unreachable (failing open)']);
        // Still at most one warning a minute.
        for (const r of fleet) assert.equal(warnings(r).length, 1);
      } finally {
        store.daemon.kill('SIGCONT');
      }
    });
  });

  describe('counted per process (no RELAY_REDIS_URL, the default)', () => {
    let fleet: RelayProcess[];
    before(async () => {
      fleet = await replicas(3, {});
    });
    after(async () => {
      await Promise.all(fleet.map((r) => r.stop()));
    });

    it('the same traffic gets 3× the limit: each replica counts its own', async () => {
      const D = tenant('d');
      const { rounds } = await roundRobin(fleet, await fleet[0]!.token(D, 'dee'), 3 * LIMIT);
      assert.equal(rounds.flat().filter(ok).length, 3 * LIMIT);
      // And one more round: each replica has now had its limit.
      const more = await roundRobin(fleet, await fleet[0]!.token(D, 'dee'), 3);
      assert.deepEqual(more.rounds.flat().map((a) => a.status), [429, 429, 429]);
      assert.equal((await readiness(fleet[0]!)).body.checks.rate_limit_store, undefined);
    });
  });

  describe('RELAY_RATE_LIMIT_REQUIRED=true', () => {
    let relay: RelayProcess;
    let store: RedisServer;
    let owner: pg.Client;
    before(async () => {
      store = await redis();
      [relay] = (await replicas(1, { RELAY_REDIS_URL: store.url, RELAY_RATE_LIMIT_REQUIRED: 'true' })) as [RelayProcess];
      owner = new pg.Client({ connectionString: ownerUrl });
      await owner.connect();
    });
    after(async () => {
      await owner.end();
    });

    it('with Redis dead: 503 rate_limit_unavailable with Retry-After and nothing written, /readyz 503 naming rate_limit_store; served again once Redis is back', async () => {
      const E = tenant('e');
      const token = await relay.token(E, 'eve');
      assert.equal((await list(relay, token)).status, 200);
      store.daemon.kill('SIGKILL');
      await store.daemon.exited;

      const refused = await list(relay, token);
      assert.deepEqual([refused.status, refused.code, refused.retryAfter], [503, 'rate_limit_unavailable', '5']);
      const write = await fetch(`${relay.url}/api/v1/memory`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'must not land while the limit cannot be counted' }),
      });
      assert.equal(write.status, 503);
      assert.equal(((await write.json()) as { error: { code: string } }).error.code, 'rate_limit_unavailable');
      assert.equal((await owner.query('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1', [E])).rows[0].n, 0);
      const ready = await readiness(relay);
      assert.deepEqual([ready.status, ready.body.status, ready.body.checks.rate_limit_store], [503, 'not_ready', 'unreachable']);
      assert.ok((await relay.metric('relay_rate_limit_store_errors_total')) >= 2);
      await relay.logged(WARNING);
      assert.equal(warnings(relay).length, 1);

      // Back on its port: the replica reconnects by itself.
      store = await redis(store.port);
      await until('ready again', async () => ((await readiness(relay)).status === 200 ? true : undefined));
      assert.equal((await list(relay, token)).status, 200);
    });

    it('closes its Redis connection on shutdown (QUIT)', async () => {
      const probe = new Redis(store.url);
      try {
        const quits = async () => Number(/cmdstat_quit:calls=(\d+)/.exec(await probe.info('commandstats'))?.[1] ?? 0);
        const clients = async () => Number(/connected_clients:(\d+)/.exec(await probe.info('clients'))?.[1]);
        const quitsBefore = await quits();
        assert.equal(await clients(), 2);
        relay.kill('SIGTERM');
        assert.equal(await relay.exited, 0);
        assert.equal((await quits()) - quitsBefore, 1);
        assert.equal(await clients(), 1);
      } finally {
        probe.disconnect();
      }
    });
  });
});

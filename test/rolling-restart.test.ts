import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { mintToken } from '../src/auth/index.ts';
import { sseRequest, type Outcome } from '../src/bench/index.ts';
import { freePort, haproxyConfig, startHaproxy, type Haproxy } from '../src/fleet/index.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

/**
 * A rolling restart of 3 `relay serve` replicas behind Debian's HAProxy (round robin, `option
 * httpchk GET /readyz`, a check every 500 ms), under 50 SSE query clients and 2 writers for the
 * whole of it: each replica in turn gets SIGTERM, drains (RELAY_DRAIN_MS: /readyz 503, still
 * serving, so HAProxy takes it out), exits, and starts again on the same port; the next one
 * goes once HAProxy has put it back. Every stream that started ends in `done`, every write is
 * acknowledged, and every acknowledged write is read back afterwards.
 *
 * RELAY_ROLLING_DRAIN_MS overrides the drain (0 shows what goes wrong without one).
 */

const appUrl = process.env.RELAY_TEST_DATABASE_URL;
const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;
const REPLICAS = 3;
const CLIENTS = 50;
const WRITERS = 2;
const USERS = 10;
const DRAIN_MS = process.env.RELAY_ROLLING_DRAIN_MS ?? '5000';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Stream extends Outcome {
  startedAt: number;
}

describe('startHaproxy (Debian haproxy 2.6) in front of two plain HTTP servers', () => {
  const ready = [true, true];
  const servers: http.Server[] = [];
  let haproxy: Haproxy | null = null;
  before(async () => {
    for (let i = 0; i < 2; i++) {
      const s = http.createServer((req, res) => {
        if (req.url === '/readyz') res.statusCode = ready[i] ? 200 : 503;
        res.end(`b${i}`);
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      servers.push(s);
    }
    haproxy = await startHaproxy({ backends: servers.map((s) => ({ host: '127.0.0.1', port: (s.address() as { port: number }).port })) });
  });
  after(async () => {
    await haproxy?.stop();
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });

  it('runs as OS user haproxy when we are root, round robin over backends whose /readyz is 200; a 503 takes one out and a 200 puts it back', async () => {
    if (process.getuid?.() === 0) {
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${haproxy!.daemon.pid}/status`, 'utf8'))?.[1];
      assert.notEqual(uid, '0', 'haproxy runs as root');
    }
    await haproxy!.waitFor('r0', 'UP');
    await haproxy!.waitFor('r1', 'UP');
    const answers = async (n: number) => {
      const seen: string[] = [];
      for (let i = 0; i < n; i++) seen.push(await (await fetch(`${haproxy!.url}/x`)).text());
      return seen.sort();
    };
    assert.deepEqual(await answers(4), ['b0', 'b0', 'b1', 'b1']);
    ready[1] = false;
    await haproxy!.waitFor('r1', 'DOWN');
    assert.deepEqual(await answers(4), ['b0', 'b0', 'b0', 'b0']);
    ready[1] = true;
    await haproxy!.waitFor('r1', 'UP');
    assert.deepEqual(await answers(4), ['b0', 'b0', 'b1', 'b1']);
    assert.match(haproxy!.daemon.output(), /Server replicas\/r1 is DOWN/);
  });

  it("docs/scaling.md's haproxy.cfg is the one startHaproxy runs (with a deployment's addresses)", () => {
    const doc = readFileSync('docs/scaling.md', 'utf8');
    const block = /```haproxy\n([\s\S]*?)```/.exec(doc)?.[1];
    const expected = haproxyConfig({
      backends: [1, 2, 3].map((i) => ({ host: `relay-${i}`, port: 8080 })),
      bindAddress: '0.0.0.0',
      port: 8080,
      statsSocket: '/run/haproxy/relay.sock',
    });
    assert.equal(block, expected);
  });
});

if (appUrl && ownerUrl) {
  describe('rolling restart of 3 replicas behind HAProxy under SSE load (pg)', () => {
    const secret = randomBytes(32).toString('base64url');
    const tenant = `rolling-${randomBytes(4).toString('hex')}`;
    const ports: number[] = [];
    const replicas: RelayProcess[] = [];
    let haproxy: Haproxy | null = null;
    const env = () => ({
      RELAY_JWT_SECRET: secret,
      RELAY_DRAIN_MS: DRAIN_MS,
      // 50 clients of one tenant: far below this, or 429s would be counted as failed streams.
      RELAY_RATE_LIMIT_PER_MIN: '10000000',
      // Each query waits 300 ms before its first result, so that streams are in flight on the
      // replica at every SIGTERM (RELAY_FAULTS is a test switch).
      RELAY_FAULTS: 'ttfv_delay_ms=300',
    });
    const start = (i: number) => startRelayProcess('pg', { ...env(), PORT: String(ports[i]) });

    before(async () => {
      for (let i = 0; i < REPLICAS; i++) ports.push(await freePort());
      for (let i = 0; i < REPLICAS; i++) replicas.push(await start(i));
      haproxy = await startHaproxy({ backends: ports.map((port) => ({ host: '127.0.0.1', port })), checkIntervalMs: 500 });
      for (let i = 0; i < REPLICAS; i++) await haproxy.waitFor(`r${i}`, 'UP');
    });
    after(async () => {
      await haproxy?.stop();
      await Promise.all(replicas.map((r) => r.stop()));
    });

    it('every stream started ends in done, every write is acknowledged and read back afterwards', { timeout: 600_000 }, async () => {
      const base = haproxy!.url;
      const tokens = await Promise.all(Array.from({ length: USERS }, (_, u) => mintToken({ secret, tenant, user: `user-${u}`, ttlSeconds: 3600 })));
      const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS + WRITERS + 8 });
      const write = async (u: number, text: string) => {
        const res = await fetch(`${base}/api/v1/memory`, {
          method: 'POST',
          headers: { authorization: `Bearer ${tokens[u]}`, 'content-type': 'application/json' },
          body: JSON.stringify({ text }),
          signal: AbortSignal.timeout(60_000),
        });
        const body = await res.text();
        return { status: res.status, body };
      };
      for (let u = 0; u < USERS; u++) assert.equal((await write(u, `user ${u} keeps the spare key under the blue pot`)).status, 201);

      let running = true;
      const streams: Stream[] = [];
      const clients = Array.from({ length: CLIENTS }, async (_, c) => {
        const target = { url: new URL(`${base}/api/v1/memory/query`), headers: { authorization: `Bearer ${tokens[c % USERS]}` } };
        for (let n = 0; running; n++) {
          const startedAt = Date.now();
          const o = await sseRequest(agent, target, JSON.stringify({ query: `where is the spare key ${n}`, top_k: 3 }), 60_000);
          streams.push({ ...o, startedAt });
          await sleep(50);
        }
      });
      const acked: Array<{ user: number; id: string; text: string }> = [];
      const refused: string[] = [];
      const writers = Array.from({ length: WRITERS }, async (_, w) => {
        for (let n = 0; running; n++) {
          const user = (w * 7 + n) % USERS;
          const text = `writer ${w} note ${n}: the ${n}th thing to remember`;
          try {
            const res = await write(user, text);
            if (res.status === 201) acked.push({ user, id: (JSON.parse(res.body) as { ids: string[] }).ids[0]!, text });
            else refused.push(`HTTP ${res.status} ${res.body.slice(0, 200)}`);
          } catch (err) {
            refused.push((err as Error).message);
          }
          await sleep(100);
        }
      });

      // Load on all three first, then each replica in turn.
      await sleep(3000);
      const windows: Array<{ from: number; to: number }> = [];
      for (let i = 0; i < REPLICAS; i++) {
        const from = Date.now();
        replicas[i]!.kill('SIGTERM');
        // The drain is what lets HAProxy see it go: it is taken out before the process exits.
        if (Number(DRAIN_MS) > 0) {
          await haproxy!.waitFor(`r${i}`, 'DOWN', 60_000);
          const gone = await Promise.race([replicas[i]!.exited.then(() => true), sleep(0).then(() => false)]);
          assert.equal(gone, false, `replica ${i} exited before HAProxy took it out`);
        }
        assert.equal(await replicas[i]!.exited, 0, replicas[i]!.stderr());
        await replicas[i]!.stop();
        windows.push({ from, to: Date.now() });
        replicas[i] = await start(i);
        await haproxy!.waitFor(`r${i}`, 'UP', 60_000);
      }
      await sleep(3000);
      running = false;
      await Promise.all([...clients, ...writers]);
      agent.destroy();

      // The load was there through every restart, not only around it.
      for (const [i, w] of windows.entries()) {
        const during = streams.filter((s) => s.startedAt >= w.from && s.startedAt <= w.to).length;
        assert.ok(during > 0, `no stream started while replica ${i} restarted`);
      }
      const aborted = streams.filter((s) => s.error?.startsWith('timeout'));
      const judged = streams.filter((s) => !s.error?.startsWith('timeout'));
      const failed = judged.filter((s) => !s.ok);
      const kinds = [...new Set(failed.map((s) => `${s.status} ${s.error ?? ''} ${s.code ?? ''}`.trim()))].slice(0, 5);
      assert.equal(aborted.length, 0, 'no stream should time out on the client');
      assert.equal(failed.length, 0, `sse_success ${(judged.length - failed.length) / judged.length} (${failed.length} of ${judged.length} failed: ${kinds.join('; ')})`);
      assert.deepEqual(refused, [], `${refused.length} of ${refused.length + acked.length} writes were not acknowledged`);
      assert.ok(acked.length > 0);

      // Every acknowledged write, read back through the balancer.
      const missing: string[] = [];
      for (const a of acked) {
        const res = await fetch(`${base}/api/v1/memory/${a.id}`, { headers: { authorization: `Bearer ${tokens[a.user]}` } });
        const body = (await res.json()) as { text?: string };
        if (res.status !== 200 || body.text !== a.text) missing.push(`${a.id}: ${res.status}`);
      }
      assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged writes not readable`);
      console.error(`rolling restart: ${judged.length} streams, all done; ${acked.length} writes, all read back; restarts took ${windows.map((w) => `${((w.to - w.from) / 1000).toFixed(1)} s`).join(', ')} (drain to exit)`);

      for (const [u, t] of tokens.entries()) await fetch(`${base}/api/v1/users/user-${u}/memory`, { method: 'DELETE', headers: { authorization: `Bearer ${t}` } }).then((r) => r.body?.cancel());
    });
  });
}

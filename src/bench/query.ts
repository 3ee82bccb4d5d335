import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mintToken } from '../auth/index.ts';
import { abbaClosedLoops, closedLoop, openLoop, percentile, sseRequest, type Outcome } from './load.ts';
import { child, eraseUsers, freePort, sentence, vocabulary, waitFor } from './proc.ts';
import { rng } from './synthetic.ts';

export interface QueryBenchOptions {
  /** Chunks seeded into a fresh bench tenant. Default 20000. */
  chunks: number;
  /** Seconds of each phase. Default 30. */
  durationS: number;
  /** Offered queries per second in the open-loop phase. Default 200. */
  rate: number;
  /** Concurrent clients in the closed-loop phases. Default 50. */
  clients: number;
  seed: number;
  log: (line: string) => void;
}

/** Chunks per user: the shape of every query's scope, whatever `chunks` is (200 users at 20,000). */
const CHUNKS_PER_USER = 100;

const okCount = (outcomes: readonly Outcome[]) => outcomes.filter((o) => o.ok).length;

function summarise(outcomes: Outcome[]) {
  const ttfv = outcomes.filter((o) => o.ok && o.ttfvMs !== null).map((o) => o.ttfvMs!);
  const ok = outcomes.filter((o) => o.ok).length;
  const errors = new Map<string, number>();
  for (const o of outcomes) if (!o.ok) errors.set(o.error ?? 'unknown', (errors.get(o.error ?? 'unknown') ?? 0) + 1);
  return { n: outcomes.length, ok, p50: percentile(ttfv, 50), p95: percentile(ttfv, 95), p99: percentile(ttfv, 99), errors: Object.fromEntries([...errors].slice(0, 5)) };
}

/**
 * `relay bench query`: the real service in a child process on the server store (DATABASE_URL,
 * RELAY_MIGRATE_URL), seeded over HTTP with `chunks` chunks in a fresh tenant (100 per user, so a
 * short run's queries search scopes of the same size as a long run's), then distinct queries
 * over SSE: an open loop at `rate`/s (TTFV and stream success), and a closed loop of `clients`
 * (queries/s) interleaved with the same closed loop against a Fastify route that streams one
 * static event (the framework's floor on this machine). The tenant's rows are erased at the end.
 */
export async function benchQuery(opts: QueryBenchOptions): Promise<Record<string, unknown>> {
  const { log } = opts;
  const rand = rng(opts.seed);
  const words = vocabulary(rand, 3000);
  const secret = randomBytes(32).toString('base64url');
  const tenant = `bench-query-${randomBytes(4).toString('hex')}`;
  const masterKey = randomBytes(32).toString('base64');
  const users = Math.max(1, Math.ceil(opts.chunks / CHUNKS_PER_USER));
  // Two copies of the service over the same database, keys and secret: metrics on (measured
  // throughout) and RELAY_METRICS=off (for the overhead of the metrics alone).
  const start = async (metrics: 'on' | 'off') => {
    const port = await freePort();
    const proc = child(['bin/relay.mjs', 'serve'], {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      RELAY_DRAIN_MS: '0', // no balancer in front: stop at once
      RELAY_EMBEDDER: 'hash',
      // A server database has one master key (its key catalog's, proved at start): use the configured one.
      ...(process.env.RELAY_MASTER_KEY || process.env.RELAY_MASTER_KEY_FILE ? {} : { RELAY_MASTER_KEY: masterKey }),
      RELAY_JWT_SECRET: secret,
      RELAY_RATE_LIMIT_PER_MIN: '10000000',
      RELAY_METRICS: metrics,
    });
    return { ...proc, base: `http://127.0.0.1:${port}` };
  };
  const server = await start('on');
  const bare = await start('off');
  // The framework's floor: a Fastify route that streams one static event, in a process of its own.
  const basePort = await freePort();
  const baseline = child(['--import', 'tsx', 'src/bench/sse-baseline-main.ts'], { ...process.env, PORT: String(basePort) });
  const base = server.base;
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(opts.clients, 64) * 2 });
  try {
    await waitFor('relay serve', async () => (await fetch(`${base}/readyz`)).ok, server.proc, server.output);
    await waitFor('relay serve (metrics off)', async () => (await fetch(`${bare.base}/readyz`)).ok, bare.proc, bare.output);
    await waitFor('baseline', async () => baseline.output().includes('listening'), baseline.proc, baseline.output, 60);
    const token = await mintToken({ secret, tenant, service: true, ttlSeconds: 3600 });
    const auth = { authorization: `Bearer ${token}` };

    log(`seeding ${opts.chunks} chunks for ${users} users of tenant ${tenant}`);
    const perUser = Math.ceil(opts.chunks / users);
    const batches: Array<{ user: number; texts: string[] }> = [];
    for (let u = 0, left = opts.chunks; u < users && left > 0; u++) {
      const n = Math.min(perUser, left);
      left -= n;
      const texts = Array.from({ length: n }, (_, i) => `Note ${i} of user ${u}: ${sentence(rand, words, 8 + Math.floor(rand() * 8))}.`);
      for (let i = 0; i < texts.length; i += 100) batches.push({ user: u, texts: texts.slice(i, i + 100) });
    }
    let seeded = 0;
    for (let i = 0; i < batches.length; i += 4) {
      await Promise.all(
        batches.slice(i, i + 4).map(async (b) => {
          const res = await fetch(`${base}/api/v1/memory`, {
            method: 'POST',
            headers: { ...auth, 'content-type': 'application/json' },
            body: JSON.stringify({ user_id: `user-${b.user}`, chunks: b.texts }),
          });
          if (res.status !== 201) throw new Error(`seeding failed: HTTP ${res.status} ${await res.text()}`);
          seeded += b.texts.length;
        }),
      );
    }

    let q = 0;
    const query = () => JSON.stringify({ query: `${sentence(rand, words, 4 + (q % 3))} ${q++}`, user_id: `user-${Math.floor(rand() * users)}`, top_k: 10 });
    const target = { url: new URL(`${base}/api/v1/memory/query`), headers: auth };
    const fire = () => sseRequest(agent, target, query());

    log('warming up (3 s, closed loop of 8)');
    await closedLoop({ clients: 8, durationS: 3, fire });

    log(`latency: open loop, ${opts.rate} queries/s for ${opts.durationS} s`);
    const open = summarise(await openLoop({ rate: opts.rate, durationS: opts.durationS, fire }));
    log(`  ${JSON.stringify(open)}`);

    // Queries/s against the floor's, in ABBA slices (service, floor, floor, service, …) so that
    // drift on a shared machine hits both alike: the ratio is what bench:check gates.
    const baseTarget = { url: new URL(`http://127.0.0.1:${basePort}/api/v1/memory/query`), headers: {} };
    const fireFloor = () => sseRequest(agent, baseTarget, query());
    await closedLoop({ clients: 8, durationS: 2, fire: fireFloor });
    log(`throughput: ${opts.clients} closed-loop clients, ${opts.durationS} s on the service and ${opts.durationS} s on the floor, interleaved`);
    const tput = await abbaClosedLoops({ clients: opts.clients, slices: 8, sliceS: opts.durationS / 4, a: fire, b: fireFloor });
    const closedOk = okCount(tput.a.outcomes);
    const floorOk = okCount(tput.b.outcomes);
    const closedStats = summarise(tput.a.outcomes);
    log(`  ${Math.round(closedOk / tput.a.seconds)} queries/s against the floor's ${Math.round(floorOk / tput.b.seconds)} ${JSON.stringify(closedStats)}`);

    // Metrics on against off in ABBA order (on, off, off, on, …), so that drift on a shared
    // machine hits both alike.
    const slices = 8;
    const sliceS = Math.max(1, opts.durationS / slices);
    log(`metrics overhead: ${slices} slices of ${sliceS} s, metrics on and off in ABBA order (after warming the second copy up)`);
    const bareTarget = { url: new URL(`${bare.base}/api/v1/memory/query`), headers: auth };
    const fireBare = () => sseRequest(agent, bareTarget, query());
    await closedLoop({ clients: opts.clients, durationS: 5, fire: fireBare });
    const metricsAb = await abbaClosedLoops({ clients: opts.clients, slices, sliceS, a: fire, b: fireBare });
    const qpsOn = okCount(metricsAb.a.outcomes) / metricsAb.a.seconds;
    const qpsOff = okCount(metricsAb.b.outcomes) / metricsAb.b.seconds;
    log(`  metrics on ${Math.round(qpsOn)} queries/s, off ${Math.round(qpsOff)}`);
    // The run's rows go (as in `bench load`): the next run seeds a tenant of its own anyway.
    await eraseUsers(base, Array.from({ length: users }, (_, u) => ({ user: `user-${u}`, auth })));
    await server.stop();
    await bare.stop();

    log('baseline: the same open loop against the static SSE event');
    // The same open loop as the latency phase, against the static route: TTFV's floor.
    const floorOpen = summarise(await openLoop({ rate: opts.rate, durationS: opts.durationS, fire: fireFloor }));

    const qps = Math.round(closedOk / tput.a.seconds);
    const baselineQps = Math.round(floorOk / tput.b.seconds);
    return {
      bench: 'query',
      ttfv_p50_ms: open.p50,
      ttfv_p95_ms: open.p95,
      sse_success: Math.round((open.ok / open.n) * 10_000) / 10_000,
      qps,
      baseline_qps: baselineQps,
      qps_ratio: Math.round((qps / baselineQps) * 10_000) / 10_000,
      baseline_ttfv_p95_ms: floorOpen.p95,
      ttfv_ratio: Math.round((open.p95 / floorOpen.p95) * 1000) / 1000,
      offered_rate: opts.rate,
      duration_s: opts.durationS,
      clients: opts.clients,
      chunks: seeded,
      ttfv_p99_ms: open.p99,
      open_loop_queries: open.n,
      open_loop_errors: open.errors,
      closed_loop_success: Math.round((closedOk / tput.a.outcomes.length) * 10_000) / 10_000,
      closed_loop_ttfv_p95_ms: closedStats.p95,
      qps_metrics_on: Math.round(qpsOn),
      qps_metrics_off: Math.round(qpsOff),
      metrics_overhead: Math.round((1 - qpsOn / qpsOff) * 1000) / 1000,
      // The services inherit RELAY_VECTOR_TRANSFORM (docs/security.md, "Vectors at rest"); on unless set off.
      transform: process.env.RELAY_VECTOR_TRANSFORM === 'off' ? 'off' : 'on',
      tenant,
    };
  } finally {
    agent.destroy();
    await server.stop();
    await bare.stop();
    await baseline.stop();
  }
}

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { mintToken } from '../auth/index.ts';
import { openLoop, percentile, postJson, sseRequest, type Outcome } from './load.ts';
import { child, eraseUsers, freePort, sentence, vocabulary, waitFor } from './proc.ts';
import { rng } from './synthetic.ts';

export interface LoadBenchOptions {
  /** Concurrent clients, each a user of its own (spread over `tenants`). Default 200. */
  clients: number;
  /** Requests per second each client sends. Default 1. */
  perClientRate: number;
  /** Seconds of the measured phase. Default 60 (300 with `--long`). */
  durationS: number;
  /** Share of the requests that are writes; the rest are SSE queries. Default 0.2. */
  writeShare: number;
  /** Tenants the clients are spread over. Default 8. */
  tenants: number;
  /** Chunks seeded per user before the run, so queries find results. Default 20. */
  seedChunks: number;
  /** Seconds of the same load before RSS start is taken. Default 5. */
  warmupS: number;
  /** Seconds of the open loop against the static SSE route (the baseline). Default min(10, durationS). */
  baselineS: number;
  seed: number;
  log: (line: string) => void;
}

type Kind = 'query' | 'write';
type Tagged = Outcome & { kind: Kind };

/** The process's resident set in MB from /proc/<pid>/status (VmRSS); null where there is no /proc. */
export function rssMb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

/** `"<status> <code>"` for an answer with an error code, `"<status> <error>"` without, `"network <error>"` when none came. */
function errorKey(o: Outcome): string {
  if (o.status === 0) return `network ${(o.error ?? 'unknown').replace(/ after \d+ ms$/, '')}`;
  if (o.code) return `${o.status} ${o.code}`;
  return `${o.status} ${o.error ?? 'unknown'}`;
}

/**
 * `relay bench load`: the service (`relay serve`, server store) in a child process under a mixed
 * open-loop load: `clients` users across `tenants` tenants, each sending `perClientRate` requests
 * a second, `writeShare` of them writes and the rest queries streamed over SSE. Reports stream
 * success, TTFV at the client, errors by HTTP status and API code, and the child's RSS (sampled
 * every second from /proc) after warm-up, at the end and at most. Then the same open loop of
 * queries against the static SSE route for `baselineS` seconds: TTFV's floor on this machine.
 */
export async function benchLoad(opts: LoadBenchOptions): Promise<Record<string, unknown>> {
  const { log } = opts;
  const rand = rng(opts.seed);
  const words = vocabulary(rand, 3000);
  const secret = randomBytes(32).toString('base64url');
  const run = randomBytes(4).toString('hex');
  const port = await freePort();
  const server = child(['bin/relay.mjs', 'serve'], {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    RELAY_DRAIN_MS: '0', // no balancer in front: stop at once
    RELAY_EMBEDDER: 'hash',
    // A server database has one master key (its key catalog's, proved at start): use the configured one.
    ...(process.env.RELAY_MASTER_KEY || process.env.RELAY_MASTER_KEY_FILE ? {} : { RELAY_MASTER_KEY: randomBytes(32).toString('base64') }),
    RELAY_JWT_SECRET: secret,
    RELAY_RATE_LIMIT_PER_MIN: '10000000',
  });
  const base = `http://127.0.0.1:${port}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(opts.clients, 64) * 2 });
  let baseline: ReturnType<typeof child> | null = null;
  const rss: number[] = [];
  let sampler: NodeJS.Timeout | undefined;
  try {
    await waitFor('relay serve', async () => (await fetch(`${base}/readyz`)).ok, server.proc, server.output);
    const pid = server.proc.pid!;
    const clients = await Promise.all(
      Array.from({ length: opts.clients }, async (_, i) => {
        const tenant = `bench-load-${run}-t${i % opts.tenants}`;
        const user = `user-${i}`;
        const auth = { authorization: `Bearer ${await mintToken({ secret, tenant, user, ttlSeconds: 24 * 3600 })}` };
        return { user, auth, query: { url: new URL(`${base}/api/v1/memory/query`), headers: auth }, write: { url: new URL(`${base}/api/v1/memory`), headers: auth } };
      }),
    );

    log(`seeding ${opts.seedChunks} chunks for each of ${opts.clients} users in ${opts.tenants} tenants`);
    for (let i = 0; i < clients.length; i += 8) {
      await Promise.all(
        clients.slice(i, i + 8).map(async (c) => {
          const chunks = Array.from({ length: opts.seedChunks }, (_, j) => `Note ${j} of ${c.user}: ${sentence(rand, words, 8 + Math.floor(rand() * 8))}.`);
          const o = await postJson(agent, c.write, JSON.stringify({ user_id: c.user, chunks }));
          if (!o.ok) throw new Error(`seeding failed: ${errorKey(o)}`);
        }),
      );
    }

    const rate = opts.clients * opts.perClientRate;
    const writeEvery = opts.writeShare > 0 ? 1 / opts.writeShare : Infinity;
    let n = 0;
    let lastFire = 0;
    // Request i goes to client i mod clients, so each client sends perClientRate a second, spread out;
    // every (1/writeShare)th request is a write.
    const fire = async (): Promise<Tagged> => {
      const i = n++;
      lastFire = performance.now();
      const c = clients[i % clients.length]!;
      if (Math.floor((i + 1) / writeEvery) > Math.floor(i / writeEvery)) {
        return { kind: 'write', ...(await postJson(agent, c.write, JSON.stringify({ user_id: c.user, text: `Said at ${i}: ${sentence(rand, words, 8 + Math.floor(rand() * 8))}.` }))) };
      }
      return { kind: 'query', ...(await sseRequest(agent, c.query, JSON.stringify({ query: `${sentence(rand, words, 3 + (i % 3))} ${i}`, user_id: c.user, top_k: 10 }))) };
    };

    log(`warming up: ${rate} requests/s for ${opts.warmupS} s`);
    await openLoop({ rate, durationS: opts.warmupS, fire });
    const rssStart = rssMb(pid);
    if (rssStart !== null) rss.push(rssStart);
    sampler = setInterval(() => {
      const v = rssMb(pid);
      if (v !== null) rss.push(v);
    }, 1000);

    log(`measuring: ${opts.clients} clients × ${opts.perClientRate}/s (${Math.round(opts.writeShare * 100)}% writes) for ${opts.durationS} s`);
    n = 0;
    const t0 = performance.now();
    const outcomes = (await openLoop({ rate, durationS: opts.durationS, fire })) as Tagged[];
    const elapsedS = (performance.now() - t0) / 1000;
    const sendS = (lastFire - t0) / 1000;
    clearInterval(sampler);
    sampler = undefined;
    const rssEnd = rssMb(pid);
    if (rssEnd !== null) rss.push(rssEnd);

    // The run's rows go: a scratch database is not needed twice, and the test database stays small.
    await eraseUsers(base, clients);
    await server.stop();

    const queries = outcomes.filter((o) => o.kind === 'query');
    const writes = outcomes.filter((o) => o.kind === 'write');
    const okQueries = queries.filter((o) => o.ok);
    const errors: Record<string, number> = {};
    for (const o of outcomes) if (!o.ok) errors[`${o.kind} ${errorKey(o)}`] = (errors[`${o.kind} ${errorKey(o)}`] ?? 0) + 1;
    const fiveXx = outcomes.filter((o) => o.status >= 500).length;
    const ttfv = okQueries.map((o) => o.ttfvMs!).filter((v) => v !== null);
    const ttfvP95 = percentile(ttfv, 95);

    log(`baseline: ${Math.round(rate * (1 - opts.writeShare))} queries/s against one static SSE event for ${opts.baselineS} s`);
    const basePort = await freePort();
    baseline = child(['--import', 'tsx', 'src/bench/sse-baseline-main.ts'], { ...process.env, PORT: String(basePort) });
    const b = baseline;
    await waitFor('baseline', async () => b.output().includes('listening'), b.proc, b.output, 60);
    const baseTarget = { url: new URL(`http://127.0.0.1:${basePort}/api/v1/memory/query`), headers: {} };
    const baseFire = () => sseRequest(agent, baseTarget, JSON.stringify({ query: sentence(rand, words, 4), user_id: 'u', top_k: 10 }));
    await openLoop({ rate: rate * (1 - opts.writeShare), durationS: Math.min(2, opts.baselineS), fire: baseFire });
    const floor = await openLoop({ rate: rate * (1 - opts.writeShare), durationS: opts.baselineS, fire: baseFire });
    const floorP95 = percentile(floor.filter((o) => o.ok && o.ttfvMs !== null).map((o) => o.ttfvMs!), 95);

    return {
      bench: 'load',
      sse_success: queries.length ? round(okQueries.length / queries.length, 4) : null,
      ttfv_p95_ms: ttfvP95,
      errors,
      rss_growth_mb: rssStart !== null && rssEnd !== null ? round(rssEnd - rssStart, 1) : null,
      rss_start_mb: rssStart,
      rss_end_mb: rssEnd,
      rss_max_mb: rss.length ? Math.max(...rss) : null,
      five_xx: fiveXx,
      client_aborts: 0,
      ttfv_p50_ms: percentile(ttfv, 50),
      ttfv_p99_ms: percentile(ttfv, 99),
      write_p95_ms: percentile(writes.filter((o) => o.ok).map((o) => o.totalMs), 95),
      write_success: writes.length ? round(writes.filter((o) => o.ok).length / writes.length, 4) : null,
      queries: queries.length,
      writes: writes.length,
      offered_rate: rate,
      achieved_rate: round((outcomes.length - 1) / Math.max(sendS, 1e-9), 1),
      answered_rate: round(outcomes.length / elapsedS, 1),
      duration_s: opts.durationS,
      clients: opts.clients,
      tenants: opts.tenants,
      seeded_chunks: opts.clients * opts.seedChunks,
      baseline_ttfv_p95_ms: floorP95,
      ttfv_ratio: round(ttfvP95 / floorP95),
      baseline_queries: floor.length,
    };
  } finally {
    if (sampler) clearInterval(sampler);
    agent.destroy();
    await server.stop();
    await baseline?.stop();
  }
}

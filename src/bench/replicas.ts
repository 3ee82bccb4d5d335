import { randomBytes } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import { mintToken } from '../auth/index.ts';
import { startHaproxy, startPgBouncer, upstreamOf, type Haproxy, type PgBouncer } from '../fleet/index.ts';
import { measureKeyEventLatency } from './key-events.ts';
import { abbaClosedLoops, closedLoop, sseRequest, type Outcome } from './load.ts';
import { child, eraseUsers, freePort, sentence, vocabulary, waitFor } from './proc.ts';
import { rng } from './synthetic.ts';

export interface ReplicasBenchOptions {
  /** Replicas behind each HAProxy. Default 3. */
  replicas: number;
  /** Seconds of closed loop on each side (direct, PgBouncer), in ABBA slices. Default 20. */
  durationS: number;
  /** Concurrent closed-loop clients. Default 32. */
  clients: number;
  /** Shreds timed for key_event_p95_ms. Default 20. */
  keySamples: number;
  seed: number;
  /** The replicas' database: DATABASE_URL (the application login) and RELAY_MIGRATE_URL (the owner). */
  appUrl: string;
  ownerUrl: string;
  log: (line: string) => void;
}

const USERS = 20;
const CHUNKS_PER_USER = 50;
const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

/** Failed outcomes counted by what failed them: `<status> <API code or error>`. */
function kindsOf(failed: readonly Outcome[]): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const f of failed) {
    const kind = `${f.status} ${f.code ?? f.error ?? ''}`.trim().slice(0, 120);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

interface Replica {
  port: number;
  base: string;
  exited(): Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  stop(): Promise<void>;
}

/** `relay serve` on a fixed port (a restarted replica gets its port back), resolved once /readyz answers 200. */
async function startReplica(port: number, env: NodeJS.ProcessEnv): Promise<Replica> {
  const c = child(['bin/relay.mjs', 'serve'], { ...env, HOST: '127.0.0.1', PORT: String(port) });
  const exit = new Promise<number | null>((resolve) => c.proc.once('exit', (code) => resolve(code)));
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`relay serve on ${port}`, async () => (await fetch(`${base}/readyz`)).ok, c.proc, c.output);
  return { port, base, exited: () => exit, kill: (s) => void c.proc.kill(s), stop: c.stop };
}

/**
 * The replicas' environment: the embedded hash embedder, no Redis (the limit per process, set out
 * of the way), one token secret and master key for all, and either the database directly
 * (prepared statements) or PgBouncer in transaction mode (RELAY_DB_POOLER=transaction, key
 * events listened for on a direct session).
 */
function replicaEnv(databaseUrl: string, common: Record<string, string>, pooled: { listenUrl: string } | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['RELAY_REDIS_URL', 'RELAY_RATE_LIMIT_REQUIRED', 'RELAY_DB_POOLER', 'RELAY_DB_LISTEN_URL', 'RELAY_FAULTS', 'PORT', 'HOST']) delete env[k];
  return { ...env, ...common, DATABASE_URL: databaseUrl, ...(pooled ? { RELAY_DB_POOLER: 'transaction', RELAY_DB_LISTEN_URL: pooled.listenUrl } : {}) };
}

/**
 * Restarts each replica in turn as an operator would behind a balancer: SIGTERM (the replica
 * drains for RELAY_DRAIN_MS, so HAProxy's check takes it out), wait for its exit, start it again
 * on the same port, wait until HAProxy has put it back, then the next. Returns each restart's
 * seconds (SIGTERM → back in).
 */
async function rollingRestart(replicas: Replica[], env: NodeJS.ProcessEnv, haproxy: Haproxy, log: (line: string) => void): Promise<number[]> {
  const took: number[] = [];
  for (let i = 0; i < replicas.length; i++) {
    const t0 = performance.now();
    const old = replicas[i]!;
    old.kill('SIGTERM');
    const code = await old.exited();
    if (code !== 0) throw new Error(`replica r${i} exited ${code} on SIGTERM`);
    replicas[i] = await startReplica(old.port, env);
    await haproxy.waitFor(`r${i}`, 'UP', 60_000);
    took.push(Math.round(performance.now() - t0) / 1000);
    log(`  r${i} restarted and back in ${took.at(-1)} s`);
  }
  return took;
}

interface RestartFigures {
  /** Streams started, less client timeouts. */
  judged: number;
  /** Those that did not end in `done`. */
  failed: number;
  kinds: Record<string, number>;
  aborted: number;
  seconds: number[];
}

/** A closed loop of `clients` SSE queries through the balancer for the whole of a rolling restart. */
async function restartUnderLoad(replicas: Replica[], env: NodeJS.ProcessEnv, haproxy: Haproxy, fire: () => Promise<Outcome>, clients: number, log: (line: string) => void): Promise<RestartFigures> {
  let running = true;
  const streams: Outcome[] = [];
  const loops = Array.from({ length: clients }, async () => {
    while (running) streams.push(await fire());
  });
  let seconds: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 1000));
    seconds = await rollingRestart(replicas, env, haproxy, log);
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    running = false;
    await Promise.all(loops);
  }
  const aborted = streams.filter((s) => s.error?.startsWith('timeout')).length;
  const failures = streams.filter((s) => !s.ok && !s.error?.startsWith('timeout'));
  return { judged: streams.length - aborted, failed: failures.length, kinds: kindsOf(failures), aborted, seconds };
}

/**
 * `relay bench replicas`: N `relay serve` replicas on the server store behind Debian's HAProxy,
 * twice — straight to PostgreSQL, and through a PgBouncer in transaction mode that the bench
 * starts (default_pool_size 10) — seeded with 1,000 chunks. Then:
 * - queries/s of a closed loop of `clients` SSE queries through each HAProxy, in ABBA slices
 *   (direct, pooled, pooled, direct, …) so that drift on a shared machine hits both alike;
 *   pgbouncer_ratio = pooled ÷ direct (what giving up prepared statements costs);
 * - key_event_p95_ms: a tenant shredded, until every replica of both sets has dropped its keys
 *   (measureKeyEventLatency, `keySamples` shreds);
 * - rolling_restart_sse_success: the pooled set restarted one replica at a time under the same
 *   closed loop; streams that ended in `done` ÷ streams started (client timeouts excluded and
 *   counted apart); null with one replica, which cannot be restarted without an outage.
 * On one small machine every replica shares the same cores: more replicas cannot add throughput
 * there; the figures say what the pooling and the restarts cost, not how far the fleet scales.
 */
export async function benchReplicas(opts: ReplicasBenchOptions): Promise<Record<string, unknown>> {
  const { log } = opts;
  const rand = rng(opts.seed);
  const words = vocabulary(rand, 3000);
  const secret = randomBytes(32).toString('base64url');
  const tenant = `bench-replicas-${randomBytes(4).toString('hex')}`;
  const common: Record<string, string> = {
    LOG_LEVEL: 'warn',
    RELAY_EMBEDDER: 'hash',
    RELAY_JWT_SECRET: secret,
    RELAY_RATE_LIMIT_PER_MIN: '10000000',
    // A server database has one master key (its key catalog's, proved at start): the configured one.
    ...(process.env.RELAY_MASTER_KEY || process.env.RELAY_MASTER_KEY_FILE ? {} : { RELAY_MASTER_KEY: randomBytes(32).toString('base64') }),
  };
  const app = new URL(opts.appUrl);
  const appUser = decodeURIComponent(app.username);
  // PgBouncer checks the client's password against its userlist and logs in to PostgreSQL with it:
  // the application login's own, or (a database that trusts it) one made up for this run.
  const password = app.password ? decodeURIComponent(app.password) : randomBytes(12).toString('hex');
  const direct: Replica[] = [];
  const pooled: Replica[] = [];
  const stops: Array<() => Promise<void>> = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.clients * 2 + 16 });
  try {
    const pgbouncer: PgBouncer = await startPgBouncer({
      ...upstreamOf(app),
      poolMode: 'transaction',
      defaultPoolSize: 10,
      maxClientConn: 500,
      users: [{ name: appUser, password }],
    });
    stops.push(() => pgbouncer.daemon.stop());
    const directEnv = replicaEnv(opts.appUrl, { ...common, RELAY_MIGRATE_URL: opts.ownerUrl }, null);
    const pooledEnv = replicaEnv(pgbouncer.url(appUser), { ...common, RELAY_MIGRATE_URL: opts.ownerUrl }, { listenUrl: opts.appUrl });

    log(`starting ${opts.replicas} replicas straight to PostgreSQL and ${opts.replicas} through PgBouncer (transaction mode)`);
    // The first one migrates the database; the others find it current.
    direct.push(await startReplica(await freePort(), directEnv));
    stops.push(() => Promise.all([...direct, ...pooled].map((r) => r.stop())).then(() => undefined));
    for (let i = 1; i < opts.replicas; i++) direct.push(await startReplica(await freePort(), directEnv));
    for (let i = 0; i < opts.replicas; i++) pooled.push(await startReplica(await freePort(), pooledEnv));
    const haDirect = await startHaproxy({ backends: direct.map((r) => ({ host: '127.0.0.1', port: r.port })) });
    stops.push(() => haDirect.stop());
    const haPooled = await startHaproxy({ backends: pooled.map((r) => ({ host: '127.0.0.1', port: r.port })) });
    stops.push(() => haPooled.stop());
    for (let i = 0; i < opts.replicas; i++) {
      await haDirect.waitFor(`r${i}`, 'UP');
      await haPooled.waitFor(`r${i}`, 'UP');
    }

    const users = await Promise.all(
      Array.from({ length: USERS }, async (_, u) => ({ user: `user-${u}`, auth: { authorization: `Bearer ${await mintToken({ secret, tenant, user: `user-${u}`, ttlSeconds: 3600 })}` } })),
    );
    log(`seeding ${USERS * CHUNKS_PER_USER} chunks (${USERS} users of tenant ${tenant})`);
    for (const u of users) {
      const chunks = Array.from({ length: CHUNKS_PER_USER }, (_, i) => `Note ${i} of ${u.user}: ${sentence(rand, words, 8 + Math.floor(rand() * 8))}.`);
      const res = await fetch(`${haDirect.url}/api/v1/memory`, { method: 'POST', headers: { ...u.auth, 'content-type': 'application/json' }, body: JSON.stringify({ chunks }) });
      if (res.status !== 201) throw new Error(`seeding failed: HTTP ${res.status} ${await res.text()}`);
    }

    let q = 0;
    const fireAt = (base: string, timeoutMs = 10_000) => () => {
      const u = users[q % USERS]!;
      const body = JSON.stringify({ query: `${sentence(rand, words, 4 + (q % 3))} ${q++}`, top_k: 10 });
      return sseRequest(agent, { url: new URL(`${base}/api/v1/memory/query`), headers: u.auth }, body, timeoutMs);
    };
    log('warming up both sides (3 s each, closed loop of 8)');
    await closedLoop({ clients: 8, durationS: 3, fire: fireAt(haDirect.url) });
    await closedLoop({ clients: 8, durationS: 3, fire: fireAt(haPooled.url) });

    log(`throughput: ${opts.clients} closed-loop clients, ${opts.durationS} s through each HAProxy, in ABBA slices`);
    const ab = await abbaClosedLoops({ clients: opts.clients, slices: 8, sliceS: opts.durationS / 4, a: fireAt(haDirect.url), b: fireAt(haPooled.url) });
    const ok = (o: readonly Outcome[]) => o.filter((x) => x.ok).length;
    const qpsDirect = ok(ab.a.outcomes) / ab.a.seconds;
    const qpsPooled = ok(ab.b.outcomes) / ab.b.seconds;
    log(`  direct ${Math.round(qpsDirect)} queries/s (${ok(ab.a.outcomes)}/${ab.a.outcomes.length} ok), PgBouncer ${Math.round(qpsPooled)} (${ok(ab.b.outcomes)}/${ab.b.outcomes.length} ok)`);
    const directFailures = kindsOf(ab.a.outcomes.filter((o) => !o.ok));
    const pooledFailures = kindsOf(ab.b.outcomes.filter((o) => !o.ok));
    if (Object.keys(directFailures).length + Object.keys(pooledFailures).length > 0) log(`  failed: direct ${JSON.stringify(directFailures)}, PgBouncer ${JSON.stringify(pooledFailures)}`);

    log(`key events: ${opts.keySamples} shreds, each until all ${2 * opts.replicas} replicas have dropped the tenant`);
    const keys = await measureKeyEventLatency({ replicas: [...direct, ...pooled].map((r) => r.base), appUrl: opts.appUrl, ownerUrl: opts.ownerUrl, jwtSecret: secret, samples: opts.keySamples });
    log(`  p50 ${keys.p50Ms} ms, p95 ${keys.p95Ms} ms, max ${keys.maxMs} ms`);

    // A rolling restart needs another replica to serve meanwhile: with one, every request in the
    // restart is refused by the balancer, which says nothing about the drain.
    let restart: RestartFigures | null = null;
    if (opts.replicas >= 2) {
      log(`rolling restart of the ${opts.replicas} PgBouncer replicas under ${opts.clients} closed-loop clients`);
      restart = await restartUnderLoad(pooled, pooledEnv, haPooled, fireAt(haPooled.url, 60_000), opts.clients, log);
      log(`  ${restart.judged - restart.failed}/${restart.judged} streams ended in done (${restart.aborted} client timeouts)${restart.failed ? ` failures: ${JSON.stringify(restart.kinds)}` : ''}`);
    } else {
      log('rolling restart: skipped (it needs at least 2 replicas)');
    }

    await eraseUsers(haDirect.url, users);
    const cpus = os.cpus();
    return {
      bench: 'replicas',
      replicas: opts.replicas,
      qps_direct: Math.round(qpsDirect),
      qps_pgbouncer: Math.round(qpsPooled),
      pgbouncer_ratio: round4(qpsPooled / qpsDirect),
      key_event_p95_ms: keys.p95Ms,
      // null (JSON's NaN) without a restart: one replica cannot be restarted without an outage.
      rolling_restart_sse_success: restart ? round4((restart.judged - restart.failed) / restart.judged) : null,
      clients: opts.clients,
      duration_s: opts.durationS,
      direct_success: round4(ok(ab.a.outcomes) / ab.a.outcomes.length),
      pgbouncer_success: round4(ok(ab.b.outcomes) / ab.b.outcomes.length),
      direct_failures: directFailures,
      pgbouncer_failures: pooledFailures,
      key_event_p50_ms: keys.p50Ms,
      key_event_max_ms: keys.maxMs,
      key_event_samples: keys.samplesMs.length,
      rolling_restart_streams: restart?.judged ?? 0,
      rolling_restart_client_timeouts: restart?.aborted ?? 0,
      rolling_restart_failures: restart?.kinds ?? {},
      rolling_restart_s: restart?.seconds ?? [],
      pgbouncer_pool_size: 10,
      cpus: cpus.length,
      cpu_model: cpus[0]?.model ?? 'unknown',
      tenant,
    };
  } finally {
    agent.destroy();
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}

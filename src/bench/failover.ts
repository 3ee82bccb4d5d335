import { randomBytes, randomUUID } from 'node:crypto';
import { mintToken } from '../auth/index.ts';
import { startHaLab, type HaLab } from '../fleet/index.ts';
import { child, freePort, waitFor } from './proc.ts';

/**
 * `relay bench failover` and the failover tests: `relay serve` on the HA lab
 * (scripts/ha-lab.sh: etcd, two Patroni nodes in synchronous mode, HAProxy), keyed writers and
 * SSE readers through it, and the primary lost under them. What a user of the service must be
 * able to count on is checked, not assumed: every write that got a 2xx is readable afterwards
 * with its text, no keyed retry wrote twice, no 500, no request hung, writes come back by
 * themselves, and the lost node rejoins as a standby that serves reads.
 */

export type FailoverScenario = 'kill-node' | 'kill-postmaster' | 'switchover';

export interface FailoverOptions {
  /** Writer loops (keyed writes, each retried with its key until acknowledged). Default 20. */
  writers?: number;
  /** Reader loops (SSE queries without a consistency token). Default 20. */
  readers?: number;
  /**
   * `kill-node`: kill -9 of the primary's Patroni and PostgreSQL together (a dead machine), then
   * the node started again; `kill-postmaster`: its postmaster alone (Patroni restarts it in
   * place); `switchover`: `patronictl switchover`. Default kill-node.
   */
  scenario?: FailoverScenario;
  /** Seconds of load before the fault, and of acknowledged writes after it before the load stops. Default 4. */
  steadyS?: number;
  /** Measure `sync_commit_cost` first: keyed-write throughput synchronous over asynchronous, in turns. Default true. */
  syncCost?: boolean;
  /** Seconds of each turn of that measurement (two turns a mode). Default 5. */
  syncTurnS?: number;
  /** A lab already up (the tests); without it one is started and taken down. */
  lab?: HaLab;
  /**
   * The master key (base64) of `relay serve`: a database keeps the one it was first served with,
   * so runs on one lab pass the same. Default: RELAY_MASTER_KEY, else a new one (a new lab).
   */
  masterKey?: string;
  log?: (line: string) => void;
}

export interface FailoverResult {
  scenario: FailoverScenario;
  acked_writes: number;
  lost_writes: number;
  duplicate_writes: number;
  /** The longest time no write succeeded. */
  write_gap_s: number;
  /** From the new primary passing HAProxy's `/primary` check (Patroni's REST) to relay's first acknowledged write after it. */
  reconnect_s: number;
  /** From the fault to the new primary passing `/primary`. */
  failover_s: number;
  ttl_s: number;
  loop_wait_s: number;
  /** SSE queries (no consistency token) that did not end in `done`. */
  read_errors: number;
  /** Those by kind: an HTTP status, `stream_error`, `no_answer`, `hung`. */
  read_error_kinds: Record<string, number>;
  reads: number;
  /** The lost node is a streaming standby again and reads run on it (`kill-node` only; true otherwise). */
  rejoined: boolean;
  /** Keyed writes/s with synchronous replication over asynchronous (null when not measured). */
  sync_commit_cost: number | null;
  /** Write answers by status while the fault lasted (503s are expected; 500 never). */
  write_statuses: Record<string, number>;
  /** 503s without a Retry-After header. */
  missing_retry_after: number;
  /** Requests with no answer within 15 s. */
  hung_requests: number;
}

const REQUEST_TIMEOUT_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

interface Acked {
  id: string;
  user: string;
  text: string;
  at: number;
}

interface Run {
  acked: Acked[];
  statuses: Map<string, number>;
  missingRetryAfter: number;
  hung: number;
  reads: number;
  readErrors: number;
  readErrorKinds: Map<string, number>;
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/**
 * One keyed writer: writes a new text with a new key, and retries that key (never a new one)
 * until it is acknowledged, as a careful client does; stops once `stop()` says so and nothing of
 * its own is pending.
 */
async function writer(base: string, auth: string, user: string, n: number, run: Run, stop: () => boolean, rate?: { count: number }): Promise<void> {
  for (let j = 0; !stop(); j++) {
    const text = `failover writer ${n} note ${j} ${randomUUID()}`;
    const key = `${user}-${j}-${randomUUID()}`;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(`${base}/api/v1/memory`, {
          method: 'POST',
          headers: { authorization: auth, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ text }),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
      } catch (err) {
        count(run.statuses, (err as Error).name === 'TimeoutError' ? 'hung' : 'no_answer');
        if ((err as Error).name === 'TimeoutError') run.hung++;
        await sleep(100);
        continue;
      }
      const body = (await res.json().catch(() => ({}))) as { ids?: string[] };
      if (res.status === 201 && body.ids?.[0]) {
        if (rate) rate.count++;
        else run.acked.push({ id: body.ids[0], user, text, at: performance.now() });
        break;
      }
      count(run.statuses, String(res.status));
      if (res.status === 503 && !res.headers.get('retry-after')) run.missingRetryAfter++;
      // A careful client backs off a little and retries the same key; past 5 minutes something is wrong.
      if (attempt > 3000) throw new Error(`writer ${n}: a write was refused ${attempt} times (last ${res.status})`);
      await sleep(100);
    }
  }
}

/** One SSE reader without a consistency token: success only when the stream ends in `done`. */
async function reader(base: string, auth: string, run: Run, stop: () => boolean): Promise<void> {
  while (!stop()) {
    run.reads++;
    try {
      const res = await fetch(`${base}/api/v1/memory/query`, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: 'failover writer note', top_k: 5 }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await res.text();
      if (res.status !== 200 || !/event: done/.test(text) || /event: error/.test(text)) {
        run.readErrors++;
        count(run.readErrorKinds, res.status === 200 ? 'stream_error' : String(res.status));
      }
    } catch (err) {
      run.readErrors++;
      if ((err as Error).name === 'TimeoutError') run.hung++;
      count(run.readErrorKinds, (err as Error).name === 'TimeoutError' ? 'hung' : 'no_answer');
    }
    await sleep(20);
  }
}

/** Keyed writes/s of `writers` loops for `seconds`. */
async function writeRate(base: string, auths: string[], seconds: number): Promise<number> {
  const run: Run = { acked: [], statuses: new Map(), missingRetryAfter: 0, hung: 0, reads: 0, readErrors: 0, readErrorKinds: new Map() };
  const rate = { count: 0 };
  const until = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(auths.map((auth, i) => writer(base, auth, `rate-${i}`, i, run, () => performance.now() >= until, rate)));
  return rate.count / ((performance.now() - started) / 1000);
}

/** Every chunk of a user through the list API, following cursors. */
async function listAll(base: string, auth: string): Promise<Array<{ id: string; text: string }>> {
  const out: Array<{ id: string; text: string }> = [];
  let cursor: string | null = null;
  do {
    const url = `${base}/api/v1/memory?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await fetch(url, { headers: { authorization: auth } });
    if (res.status !== 200) throw new Error(`listing for the check answered ${res.status}: ${await res.text()}`);
    const page = (await res.json()) as { items: Array<{ id: string; text: string }>; next_cursor: string | null };
    out.push(...page.items.map((i) => ({ id: i.id, text: i.text })));
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

/** The longest stretch without an acknowledged write, from the first to the last. */
function longestGap(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < sorted.length; i++) gap = Math.max(gap, sorted[i]! - sorted[i - 1]!);
  return gap / 1000;
}

export async function runFailover(opts: FailoverOptions = {}): Promise<FailoverResult> {
  const writers = opts.writers ?? 20;
  const readers = opts.readers ?? 20;
  const scenario = opts.scenario ?? 'kill-node';
  const steadyMs = (opts.steadyS ?? 4) * 1000;
  const log = opts.log ?? (() => undefined);
  const lab = opts.lab ?? (await startHaLab());
  const secret = randomBytes(32).toString('base64url');
  const tenant = `failover-${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('RELAY_') || k === 'DATABASE_URL') delete env[k];
  const relay = child(['bin/relay.mjs', 'serve'], {
    ...env,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    DATABASE_URL: lab.databaseUrl,
    RELAY_MIGRATE_URL: lab.migrateUrl,
    RELAY_READ_DATABASE_URL: lab.readUrl,
    RELAY_JWT_SECRET: secret,
    RELAY_MASTER_KEY: opts.masterKey ?? process.env.RELAY_MASTER_KEY ?? randomBytes(32).toString('base64'),
    RELAY_DRAIN_MS: '0',
    RELAY_RATE_LIMIT_PER_MIN: '10000000',
    RELAY_DB_POOL_MAX: '20',
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor('relay serve on the HA lab', async () => (await fetch(`${base}/readyz`)).ok, relay.proc, relay.output);
    const auth = async (user: string) => `Bearer ${await mintToken({ secret, tenant, user, ttlSeconds: 3600 })}`;
    const writerAuths = await Promise.all(Array.from({ length: writers }, (_, i) => auth(`writer-${i}`)));
    const readerAuth = await auth('writer-0');

    let syncCost: number | null = null;
    if (opts.syncCost ?? true) {
      const turn = opts.syncTurnS ?? 5;
      const rates = { sync: [] as number[], async: [] as number[] };
      // A turn to warm up (connections, statements, the tenant's keys), not counted; then ABBA:
      // sync, async, async, sync — each mode at the same moments of the machine's load on average.
      await writeRate(base, writerAuths, 2);
      for (const mode of ['sync', 'async', 'async', 'sync'] as const) {
        await lab.setSynchronous(mode === 'sync');
        rates[mode].push(await writeRate(base, writerAuths, turn));
        log(`${mode}: ${round(rates[mode].at(-1)!, 1)} keyed writes/s`);
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      syncCost = round(mean(rates.sync) / mean(rates.async));
    }

    const run: Run = { acked: [], statuses: new Map(), missingRetryAfter: 0, hung: 0, reads: 0, readErrors: 0, readErrorKinds: new Map() };
    let stopped = false;
    const stop = () => stopped;
    const load = Promise.all([
      ...writerAuths.map((a, i) => writer(base, a, `writer-${i}`, i, run, stop)),
      ...Array.from({ length: readers }, () => reader(base, readerAuth, run, stop)),
    ]);
    await sleep(steadyMs);
    const before = (await lab.primary()) ?? (await lab.waitForPrimary());
    const faultAt = performance.now();
    const statusesBefore = new Map(run.statuses);
    log(`${scenario} of ${before} under ${writers} writers and ${readers} readers`);
    let after: string;
    if (scenario === 'switchover') {
      after = await lab.switchover();
    } else if (scenario === 'kill-postmaster') {
      lab.killPostmaster(before);
      // Patroni starts it again in place: the same node comes back as the primary, once its REST
      // API has stopped saying so (it notices within a loop).
      for (const until = performance.now() + 10_000; (await lab.primary()) === before && performance.now() < until; ) await sleep(100);
      after = await lab.waitForPrimary({ timeoutMs: 120_000 });
    } else {
      lab.killNode(before);
      after = await lab.waitForPrimary({ not: before, timeoutMs: 120_000 });
    }
    const primaryAt = performance.now();
    log(`${after} passes /primary ${round((primaryAt - faultAt) / 1000, 2)} s after the fault`);
    // Until writes have gone through for a while again.
    for (;;) {
      const last = run.acked.at(-1)?.at ?? 0;
      const firstAfter = run.acked.find((a) => a.at >= primaryAt);
      if (firstAfter && last - firstAfter.at >= steadyMs) break;
      if (performance.now() - primaryAt > 120_000) throw new Error(`no acknowledged write for 120 s after the new primary: ${JSON.stringify(Object.fromEntries(run.statuses))}\n${relay.output()}`);
      await sleep(200);
    }
    let rejoined = true;
    if (scenario === 'kill-node') {
      await lab.startNode(before);
      rejoined = false;
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline) {
        const member = (await lab.status().catch(() => [])).find((m) => m.name === before);
        if (member && /Standby|Replica/.test(member.role) && (member.state === 'streaming' || member.state === 'running')) {
          rejoined = true;
          break;
        }
        await sleep(500);
      }
      log(rejoined ? `${before} rejoined as a standby` : `${before} did not rejoin within 120 s`);
      if (rejoined) {
        // …and serves reads: relay's probe finds the standby again and routes reads there.
        const served = async () => {
          const text = await (await fetch(`${base}/metrics/memory`)).text();
          return [...text.matchAll(/^relay_read_route_total\{target="standby",reason="[a-z_]+"\} (\S+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
        };
        const from = await served();
        const until = Date.now() + 60_000;
        while ((await served()) <= from && Date.now() < until) await sleep(500);
        rejoined = (await served()) > from;
        log(rejoined ? 'reads run on it again' : 'no read ran on it within 60 s');
      }
    }
    stopped = true;
    await load;

    // Every acknowledged write, read back by id with its text, and every user's rows for duplicates.
    let lost = 0;
    let duplicates = 0;
    const byUser = new Map<string, Acked[]>();
    for (const a of run.acked) byUser.set(a.user, [...(byUser.get(a.user) ?? []), a]);
    for (const [user, acked] of byUser) {
      const rows = await listAll(base, await auth(user));
      const ids = new Map(rows.map((r) => [r.id, r.text]));
      for (const a of acked) if (ids.get(a.id) !== a.text) lost++;
      const texts = new Map<string, number>();
      for (const r of rows) texts.set(r.text, (texts.get(r.text) ?? 0) + 1);
      for (const n of texts.values()) duplicates += n - 1;
    }
    const statuses: Record<string, number> = {};
    for (const [k, v] of run.statuses) statuses[k] = v - (statusesBefore.get(k) ?? 0);
    const firstAfter = run.acked.find((a) => a.at >= primaryAt);
    // A 500 is a bug of ours: show what the service logged for it.
    if ((statuses['500'] ?? 0) > 0) log(`the service answered 500; its log:\n${relay.output().split('\n').filter((l) => /"level":50/.test(l)).slice(-5).join('\n')}`);
    if (run.readErrors > 0) {
      log(`read errors: ${JSON.stringify(Object.fromEntries(run.readErrorKinds))}; the service's log:\n${relay.output().split('\n').filter((l) => /"level":[45]0/.test(l)).slice(-4).join('\n')}`);
    }
    // Leave nothing behind.
    for (const user of [...byUser.keys(), ...writerAuths.map((_, i) => `rate-${i}`)]) {
      await fetch(`${base}/api/v1/users/${user}/memory`, { method: 'DELETE', headers: { authorization: await auth(user) } }).then((r) => r.body?.cancel());
    }
    return {
      scenario,
      acked_writes: run.acked.length,
      lost_writes: lost,
      duplicate_writes: duplicates,
      write_gap_s: round(longestGap(run.acked.map((a) => a.at))),
      reconnect_s: firstAfter ? round((firstAfter.at - primaryAt) / 1000) : Number.NaN,
      failover_s: round((primaryAt - faultAt) / 1000),
      ttl_s: lab.ttl,
      loop_wait_s: lab.loopWait,
      read_errors: run.readErrors,
      read_error_kinds: Object.fromEntries(run.readErrorKinds),
      reads: run.reads,
      rejoined,
      sync_commit_cost: syncCost,
      write_statuses: statuses,
      missing_retry_after: run.missingRetryAfter,
      hung_requests: run.hung,
    };
  } finally {
    await relay.stop();
    if (!opts.lab) await lab.down();
  }
}

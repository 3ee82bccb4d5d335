import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintToken } from '../auth/index.ts';
import { startHaproxyWith } from '../fleet/index.ts';
import { bucketOf, canaryHaproxyConfig, stickyKey } from '../rollout/index.ts';
import { percentile } from './load.ts';

export interface CanaryBenchOptions {
  /** Requests per second on each path (direct and through the router), interleaved. Default 200. */
  rate: number;
  /** Seconds of the overhead phase. Default 20. */
  durationS: number;
  /** The controller's analysis interval in the rollback phase (ms). Default 1000. */
  intervalMs: number;
  /** Also measure HAProxy driven by a second controller (`--traffic haproxy`), interleaved with the builtin router. */
  haproxy?: boolean;
  log: (line: string) => void;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function proc(args: string[], env: NodeJS.ProcessEnv) {
  const p: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-50_000)));
  p.stderr!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-50_000)));
  return {
    output: () => out,
    /** The `url` of the first JSON log line holding `marker`. */
    url: (marker: string) =>
      new Promise<string>((resolve, reject) => {
        const timer = setInterval(() => {
          const line = out.split('\n').find((l) => l.includes(marker));
          if (line) {
            clearInterval(timer);
            resolve((JSON.parse(line) as { url: string }).url);
          } else if (p.exitCode !== null) {
            clearInterval(timer);
            reject(new Error(`${args.join(' ')} exited:\n${out}`));
          }
        }, 50);
      }),
    async stop() {
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill('SIGTERM');
      const killer = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** One timed GET. `ok` only for a 2xx whose body arrived whole; anything else says why in `failure`. */
export interface Timed {
  ms: number;
  release: string | undefined;
  /** HAProxy's `X-Relay-Server` (the server that answered), when HAProxy was in the path. */
  server?: string | undefined;
  status: number;
  ok: boolean;
  failure?: string;
}

/** A GET, timed to the end of its body; never rejects (a failed request is an outcome with `ok: false`). */
export function timedGet(agent: http.Agent, url: string, token: string): Promise<Timed> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let settled = false;
    const done = (t: Omit<Timed, 'ms'>) => {
      if (settled) return;
      settled = true;
      resolve({ ms: performance.now() - t0, ...t });
    };
    const req = http.get(url, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const status = res.statusCode ?? 0;
      const release = res.headers['x-relay-release'] as string | undefined;
      const server = res.headers['x-relay-server'] as string | undefined;
      res.resume();
      res.on('end', () => {
        if (!res.complete) done({ release, server, status, ok: false, failure: 'incomplete body' });
        else if (status < 200 || status > 299) done({ release, server, status, ok: false, failure: `status ${status}` });
        else done({ release, server, status, ok: true });
      });
      res.on('error', (e) => done({ release, status, ok: false, failure: `body: ${e.message}` }));
      res.on('aborted', () => done({ release, status, ok: false, failure: 'incomplete body' }));
    });
    req.on('error', (e) => done({ release: undefined, status: 0, ok: false, failure: (e as NodeJS.ErrnoException).code ?? e.message }));
  });
}

/**
 * Times of the successful requests only (a router that fails fast must not look fast), and the
 * failures by why. `check` throws when more than `maxFailedShare` of the requests failed: the
 * run did not measure the path it claims to.
 */
export class PathTimes {
  readonly ms: number[] = [];
  readonly failures = new Map<string, number>();
  total = 0;

  constructor(readonly name: string) {}

  add(t: Timed): void {
    this.total++;
    if (t.ok) this.ms.push(t.ms);
    else this.failures.set(t.failure ?? 'failed', (this.failures.get(t.failure ?? 'failed') ?? 0) + 1);
  }

  get failed(): number {
    return this.total - this.ms.length;
  }

  reset(): void {
    this.ms.length = 0;
    this.failures.clear();
    this.total = 0;
  }

  check(maxFailedShare = 0): void {
    if (this.total === 0) throw new Error(`bench canary: no ${this.name} request was made`);
    if (this.failed > maxFailedShare * this.total) {
      const why = [...this.failures].map(([k, v]) => `${v} × ${k}`).join(', ');
      throw new Error(`bench canary: ${this.failed} of ${this.total} ${this.name} requests failed (${why}); only successful ones are timed, and a run with failures measures nothing`);
    }
  }
}

const get = timedGet;

/**
 * `relay bench canary`: two `relay serve` releases (embedded store, each its own folder) and a
 * `relay canary run` in front, all child processes. (1) Overhead: GET /healthz at `rate`/s on each
 * path, direct to stable and through the router (weight 0, so both reach the same process),
 * interleaved so both see the same machine; the added p95 is the difference of the two p95s.
 * (2) Rollback: the candidate meets an RLS error on its first query; how long until the same user's
 * next request is answered by stable, and how many analyses that took. With `haproxy`, HAProxy in
 * front of the same releases with a second controller setting its weights takes turns with the
 * router in (1), by ABBA slices each with its own direct path, and (2) times both splits from the
 * same breach.
 */
export async function benchCanary(opts: CanaryBenchOptions) {
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-canary-'));
  const secret = randomBytes(32).toString('base64url');
  const base: NodeJS.ProcessEnv = { ...process.env, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', RELAY_JWT_SECRET: secret, RELAY_MASTER_KEY: randomBytes(32).toString('base64'), RELAY_RERANK: 'off', RELAY_RATE_LIMIT_PER_MIN: '10000000', RELAY_DRAIN_MS: '0' };
  delete base.DATABASE_URL;
  const stable = proc(['bin/relay.mjs', 'serve'], { ...base, LOG_LEVEL: 'info', RELAY_DATA_DIR: join(dir, 'stable'), RELAY_RELEASE: 'bench-stable' });
  const candidate = proc(['bin/relay.mjs', 'serve'], { ...base, LOG_LEVEL: 'info', RELAY_DATA_DIR: join(dir, 'candidate'), RELAY_RELEASE: 'bench-candidate', RELAY_FAULTS: 'rls_error_rate=1' });
  const stopAll: Array<() => Promise<void>> = [stable.stop, candidate.stop];
  try {
    const [stableUrl, candidateUrl] = await Promise.all([stable.url('relay memory is serving'), candidate.url('relay memory is serving')]);
    for (const u of [stableUrl, candidateUrl]) {
      for (let i = 0; !(await fetch(`${u}/readyz`).then((r) => r.ok).catch(() => false)); i++) {
        if (i > 600) throw new Error(`${u} never became ready`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    writeFileSync(join(dir, 'plan.yaml'), `stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: ${opts.intervalMs}ms\n`);
    const controller = proc(['bin/relay.mjs', 'canary', 'run', '--stable', stableUrl, '--candidate', candidateUrl, '--listen', '127.0.0.1:0', '--plan', join(dir, 'plan.yaml'), '--state-dir', join(dir, 'state')], base);
    stopAll.push(controller.stop);
    const routerUrl = await controller.url('relay canary is routing');
    // HAProxy in front of the same two releases, its weights set by a second controller.
    let haproxyUrl = '';
    if (opts.haproxy) {
      const hostPort = (u: string) => new URL(u).host;
      const hap = await startHaproxyWith({ config: ({ port, socket }) => canaryHaproxyConfig({ bind: `127.0.0.1:${port}`, socket, stable: { address: hostPort(stableUrl) }, candidate: { address: hostPort(candidateUrl) } }) });
      stopAll.push(() => hap.daemon.stop());
      haproxyUrl = hap.url;
      const hc = proc(['bin/relay.mjs', 'canary', 'run', '--stable', stableUrl, '--candidate', candidateUrl, '--listen', '127.0.0.1:0', '--plan', join(dir, 'plan.yaml'), '--state-dir', join(dir, 'state-haproxy'), '--traffic', `haproxy=${hap.socket}`, '--backend', 'relay', '--stable-server', 'stable', '--candidate-server', 'candidate'], base);
      stopAll.push(hc.stop);
      await hc.url('relay canary is driving haproxy');
    }
    const token = async (user: string) => mintToken({ secret, tenant: 'bench', user, ttlSeconds: 3600 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    // Users by bucket: one that the router sends to stable at 50%, one to the candidate; with
    // HAProxy, the same by the server that answers through it (its own hash).
    let stableUser = '';
    let candidateUser = '';
    let hapStableUser = '';
    let hapCandidateUser = '';
    for (let i = 0; !stableUser || !candidateUser || (opts.haproxy && (!hapStableUser || !hapCandidateUser)); i++) {
      const t = await token(`u${i}`);
      if (bucketOf(stickyKey(`Bearer ${t}`, '127.0.0.1')) < 50) candidateUser ||= t;
      else stableUser ||= t;
      if (opts.haproxy) {
        const r = await get(agent, `${haproxyUrl}/healthz`, t);
        if (r.server === 'candidate') hapCandidateUser ||= t;
        else if (r.server === 'stable') hapStableUser ||= t;
        if (i > 1000) throw new Error('HAProxy sent no user to one of the releases: are its weights 50/50?');
      }
    }

    // (1) Overhead, after a warm-up, stable-bucket users (weight 50 sends them to stable). Direct
    // and one hop alternate request by request so that both see the same machine, and neither
    // fires twice in a row: a path's second request 1/(rate × 2) s after its first waits on the
    // first's hop (ABBA's doubled turns put the router's p50 ratio at 2.7–2.8 against 2.4–2.5
    // alternated, same code). With HAProxy, the two hops take turns by slices of time, ABBA
    // (router, HAProxy, HAProxy, router, half the duration each), each slice with its own direct
    // path: a deployment runs one traffic layer or the other, and the router's CPU in HAProxy's
    // slices (or HAProxy's in the router's) would be charged to the wrong hop.
    const directPath = new PathTimes('direct');
    const directHaproxyPath = new PathTimes('direct (HAProxy slices)');
    const routedPath = new PathTimes('routed');
    const haproxyPath = new PathTimes('haproxy');
    const direct = directPath.ms;
    const routed = routedPath.ms;
    const viaHaproxy = haproxyPath.ms;
    const viaDirect = (times: PathTimes) => () => get(agent, `${stableUrl}/healthz`, stableUser).then((r) => times.add(r));
    const viaRouter = () => get(agent, `${routerUrl}/healthz`, stableUser).then((r) => routedPath.add(r));
    const viaHaproxyServer = () =>
      get(agent, `${haproxyUrl}/healthz`, hapStableUser).then((r) => haproxyPath.add(r.server === 'stable' ? r : { ...r, ok: false, failure: `answered by ${r.server}` }));
    const routerSlice = [viaDirect(directPath), viaRouter];
    const haproxySlice = [viaDirect(directHaproxyPath), viaHaproxyServer];
    const slices = opts.haproxy ? [routerSlice, haproxySlice, haproxySlice, routerSlice] : [routerSlice];
    const sliceS = opts.haproxy ? opts.durationS / 2 : opts.durationS;
    const runSlice = async (fires: Array<() => Promise<unknown>>, requests: number) => {
      const t0 = performance.now();
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < requests; i++) {
        const wait = t0 + (i * 1000) / (opts.rate * fires.length) - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        pending.push(fires[i % fires.length]!());
      }
      await Promise.all(pending);
    };
    for (const fires of new Set(slices)) await runSlice(fires, 200 * fires.length);
    for (const p of [directPath, directHaproxyPath, routedPath, haproxyPath]) p.reset();
    opts.log(
      opts.haproxy
        ? `overhead: ${opts.rate} req/s direct beside ${opts.rate} req/s through the router, then through HAProxy, in ABBA slices of ${sliceS} s (${opts.durationS * 2} s in all)`
        : `overhead: ${opts.rate} req/s direct, ${opts.rate} req/s through the router for ${opts.durationS} s`,
    );
    for (const fires of slices) await runSlice(fires, Math.round(opts.rate * fires.length * sliceS));
    // Every request of every path must have succeeded: failures are not timed, and any fails the run.
    directPath.check();
    routedPath.check();
    if (opts.haproxy) {
      directHaproxyPath.check();
      haproxyPath.check();
    }
    const p95Direct = percentile(direct, 95);
    const p95Routed = percentile(routed, 95);

    // (2) Rollback: wait for the controllers' first look, then one query of a candidate user.
    // Both controllers read the same candidate's metrics: the one breach rolls back both splits.
    opts.log('rollback: one RLS error on the candidate');
    const waitForLook = async (stateDir: string) => {
      for (let i = 0; ; i++) {
        const s = JSON.parse(readFileSync(join(dir, stateDir, 'state.json'), 'utf8')) as { baselines: { watch: { candidate?: unknown } } };
        if (s.baselines.watch.candidate) break;
        if (i > 600) throw new Error('the controller never read the candidate');
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await waitForLook('state');
    if (opts.haproxy) await waitForLook('state-haproxy');
    const breachWall = Date.now();
    const breach = performance.now();
    const res = await fetch(`${routerUrl}/api/v1/memory/query`, { method: 'POST', headers: { authorization: `Bearer ${candidateUser}`, 'content-type': 'application/json' }, body: '{"query":"x"}' });
    await res.body?.cancel();
    if (res.headers.get('x-relay-release') !== 'bench-candidate' || res.status !== 500) throw new Error(`the breach did not happen on the candidate (${res.status} from ${res.headers.get('x-relay-release')})`);
    /** Milliseconds from the breach until `url` answers `user` from stable. */
    const until = async (url: string, user: string, onStable: (r: Timed) => boolean) => {
      for (;;) {
        const r = await get(agent, `${url}/healthz`, user);
        if (onStable(r)) return Math.round(performance.now() - breach);
        if (performance.now() - breach > 60_000) throw new Error(`no rollback within 60 s at ${url}`);
        await new Promise((r2) => setTimeout(r2, 2));
      }
    };
    const [rollbackMs, rollbackMsHaproxy] = await Promise.all([
      until(routerUrl, candidateUser, (r) => r.release === 'bench-stable'),
      opts.haproxy ? until(haproxyUrl, hapCandidateUser, (r) => r.server === 'stable') : Promise.resolve(null),
    ]);
    agent.destroy();
    const analysesToRollback = (stateDir: string) => {
      const audit = readFileSync(join(dir, stateDir, 'audit.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { at: string; type?: string; action?: string });
      const rollbackAt = Date.parse(audit.find((e) => e.action === 'rollback')!.at);
      return audit.filter((e) => e.type === 'analysis' && Date.parse(e.at) >= breachWall && Date.parse(e.at) <= rollbackAt).length;
    };
    const p95Haproxy = opts.haproxy ? percentile(viaHaproxy, 95) : null;
    const p95DirectHaproxy = opts.haproxy ? percentile(directHaproxyPath.ms, 95) : null;
    return {
      added_p95_ms: Math.round((p95Routed - p95Direct) * 100) / 100,
      ...(opts.haproxy ? { added_p95_ms_haproxy: Math.round((p95Haproxy! - p95DirectHaproxy!) * 100) / 100 } : {}),
      rollback_ms: rollbackMs,
      ...(opts.haproxy ? { rollback_ms_haproxy: rollbackMsHaproxy } : {}),
      intervals_to_rollback: analysesToRollback('state'),
      ...(opts.haproxy ? { intervals_to_rollback_haproxy: analysesToRollback('state-haproxy') } : {}),
      direct_p95_ms: p95Direct,
      routed_p95_ms: p95Routed,
      ...(opts.haproxy ? { haproxy_p95_ms: p95Haproxy, haproxy_p50_ms: percentile(viaHaproxy, 50), direct_p95_ms_haproxy_slices: p95DirectHaproxy, direct_p50_ms_haproxy_slices: percentile(directHaproxyPath.ms, 50) } : {}),
      direct_p50_ms: percentile(direct, 50),
      routed_p50_ms: percentile(routed, 50),
      requests_per_path: direct.length,
      failed_requests: directPath.failed + directHaproxyPath.failed + routedPath.failed + haproxyPath.failed,
      rate_per_path: opts.rate,
      interval_ms: opts.intervalMs,
    };
  } finally {
    for (const stop of stopAll.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

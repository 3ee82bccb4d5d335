import { readFileSync } from 'node:fs';
import { defaultPlan, guardrailTable, parsePlan, parseTrafficSpec, readAdminToken, startCanary, StateStore, statusView, type StatusView, type TrafficSpec } from '../rollout/index.ts';
import { UsageError } from './migrate.ts';

export interface CanaryArgs {
  stable?: string;
  candidate?: string;
  listen?: string;
  plan?: string;
  metricsSource?: string;
  stateDir?: string;
  metricsTokenFile?: string;
  traffic?: string;
  backend?: string;
  stableServer?: string;
  candidateServer?: string;
  force: boolean;
  json: boolean;
}

const DEFAULT_LISTEN = '127.0.0.1:8080';
const DEFAULT_STATE_DIR = '.relay-canary';

/** `relay canary run|status|pause|resume|abort|promote --force|retry [--force]`. */
export async function canary(sub: string | undefined, args: CanaryArgs): Promise<void> {
  switch (sub) {
    case 'run':
      return run(args);
    case 'status':
      return status(args);
    case 'pause':
    case 'resume':
    case 'abort':
    case 'promote':
    case 'retry':
      if (sub === 'promote' && !args.force) throw new UsageError('canary promote skips the remaining stages and their guardrails: add --force');
      return admin(sub, args);
    default:
      throw new UsageError('usage: relay canary run --stable URL --candidate URL [--listen HOST:PORT] [--plan FILE] [--metrics-source scrape|prometheus=URL] [--state-dir DIR] [--traffic builtin|haproxy=SOCKET --backend NAME --stable-server S --candidate-server C] | relay canary status|pause|resume|abort|promote --force|retry [--force]');
  }
}

async function run(args: CanaryArgs): Promise<void> {
  if (!args.stable || !args.candidate) throw new UsageError('canary run needs --stable URL and --candidate URL');
  const plan = args.plan ? parsePlan(readFileSync(args.plan, 'utf8'), args.plan) : defaultPlan();
  const metricsToken = args.metricsTokenFile ? readFileSync(args.metricsTokenFile, 'utf8').trim() : undefined;
  const stateDir = args.stateDir ?? DEFAULT_STATE_DIR;
  let traffic: TrafficSpec;
  try {
    traffic = parseTrafficSpec(args.traffic ?? 'builtin');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const haproxyArgs = [args.backend, args.stableServer, args.candidateServer];
  if (traffic.kind === 'haproxy' && haproxyArgs.some((a) => !a)) throw new UsageError('--traffic haproxy=SOCKET needs --backend NAME, --stable-server S and --candidate-server C (the backend and server names in haproxy.cfg)');
  if (traffic.kind === 'builtin' && haproxyArgs.some((a) => a)) throw new UsageError('--backend, --stable-server and --candidate-server go with --traffic haproxy=SOCKET');
  const canaryRun = await startCanary({
    stableUrl: args.stable,
    candidateUrl: args.candidate,
    plan,
    listen: args.listen ?? DEFAULT_LISTEN,
    metricsSource: args.metricsSource ?? 'scrape',
    stateDir,
    metricsToken,
    traffic: args.traffic ?? 'builtin',
    ...(traffic.kind === 'haproxy' ? { haproxy: { backend: args.backend!, stableServer: args.stableServer!, candidateServer: args.candidateServer! } } : {}),
    log: (entry) => console.log(JSON.stringify({ time: new Date().toISOString(), ...entry })),
  });
  const s = canaryRun.controller.state;
  console.log(
    JSON.stringify({
      // With HAProxy the URL serves the status page, metrics and admin calls only; clients go to HAProxy.
      msg: traffic.kind === 'builtin' ? 'relay canary is routing' : 'relay canary is driving haproxy',
      url: canaryRun.url,
      traffic: canaryRun.traffic?.describe() ?? 'builtin router',
      status_page: `${canaryRun.url}/canary`,
      stable: s.targets.stable,
      candidate: s.targets.candidate,
      status: s.status,
      stage: s.stageIndex + 1,
      weight: canaryRun.controller.confirmedWeight,
      state_dir: stateDir,
      admin_token_file: canaryRun.store.tokenPath,
    }),
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await canaryRun.close();
}

function baseUrl(listen: string | undefined): string {
  const l = listen ?? DEFAULT_LISTEN;
  return /^https?:\/\//.test(l) ? l.replace(/\/$/, '') : `http://${l}`;
}

const secs = (ms: number) => (ms >= 3_600_000 ? `${(ms / 3_600_000).toFixed(1)} h` : ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`);

function print(view: StatusView, live: boolean): void {
  console.log(`${live ? '' : '(controller not reachable: last saved state)\n'}canary ${view.targets.candidate.release} against ${view.targets.stable.release}: ${view.status}`);
  const layer = view.traffic && view.traffic.layer !== 'builtin' ? ` (${view.traffic.layer}${view.traffic.error ? `: ${view.traffic.error}` : ''})` : '';
  console.log(`stage ${view.stage} of ${view.stages.length}, weight ${view.weight === null ? 'not confirmed' : `${view.weight}%`}${layer}, observed ${secs(view.observed_ms)}, ${secs(view.time_left_ms)} left in this stage`);
  if (view.cooldown_until) console.log(`no retry before ${view.cooldown_until} (retry --force overrides)`);
  const ending = view.rollback ?? view.promotion;
  if (ending) {
    console.log(`why: ${ending.reason}`);
    for (const h of ending.hooks) console.log(`  hook ${h.name}: ${h.skipped ? 'skipped' : h.timedOut ? 'timed out' : `exit ${h.exitCode}`} (${h.ms} ms)`);
  }
  if (view.report) {
    // Every value with its unit: ms or s, %, per 1k requests, counts (src/rollout/format.ts).
    for (const line of guardrailTable(view.report)) console.log(line);
    for (const w of view.report.warnings) console.log(`warning: ${w}`);
  }
  console.log('last decisions:');
  for (const d of view.decisions.slice(-8)) console.log(`  ${d.at}  ${d.action.padEnd(16)} stage ${d.stage} ${String(d.weight).padStart(3)}%  ${d.reason}`);
}

async function status(args: CanaryArgs): Promise<void> {
  let view: StatusView;
  let live = true;
  try {
    const res = await fetch(`${baseUrl(args.listen)}/canary/status`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    view = (await res.json()) as StatusView;
  } catch (err) {
    const saved = new StateStore(args.stateDir ?? DEFAULT_STATE_DIR).load();
    if (!saved) throw new Error(`no controller at ${baseUrl(args.listen)} (${(err as Error).message}) and no saved state in ${args.stateDir ?? DEFAULT_STATE_DIR}`);
    const plan = args.plan ? parsePlan(readFileSync(args.plan, 'utf8'), args.plan) : defaultPlan();
    view = statusView(saved, plan);
    live = false;
  }
  if (args.json) console.log(JSON.stringify(view));
  else print(view, live);
}

async function admin(action: string, args: CanaryArgs): Promise<void> {
  const token = readAdminToken(args.stateDir ?? DEFAULT_STATE_DIR);
  const res = await fetch(`${baseUrl(args.listen)}/canary/admin/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ force: args.force }),
    signal: AbortSignal.timeout(120_000),
  });
  const body = (await res.json()) as StatusView & { error?: { message: string } };
  if (!res.ok) throw new Error(`canary ${action}: ${body.error?.message ?? `HTTP ${res.status}`}`);
  if (args.json) console.log(JSON.stringify(body));
  else print(body, true);
}

/** `relay bench canary [--json]`: router overhead and breach → weight 0 (src/bench/canary.ts). */
export async function runBenchCanary(args: { rate: number; durationS: number; json: boolean; traffic?: string }): Promise<void> {
  if (args.traffic !== undefined && args.traffic !== 'haproxy' && args.traffic !== 'builtin') throw new UsageError('bench canary --traffic takes haproxy (measured beside the builtin router) or builtin');
  const { benchCanary } = await import('../bench/canary.ts');
  const summary = await benchCanary({ rate: args.rate, durationS: args.durationS, intervalMs: 1000, haproxy: args.traffic === 'haproxy', log: (line) => console.error(`bench canary: ${line}`) });
  if (!args.json) {
    console.log(`router overhead at ${summary.rate_per_path} req/s: p95 ${summary.routed_p95_ms} ms through the router vs ${summary.direct_p95_ms} ms direct (+${summary.added_p95_ms} ms)`);
    if (summary.haproxy_p95_ms !== undefined) console.log(`HAProxy overhead at ${summary.rate_per_path} req/s: p95 ${summary.haproxy_p95_ms} ms through HAProxy (+${summary.added_p95_ms_haproxy} ms)`);
    console.log(`rollback: ${summary.rollback_ms} ms from the breach to weight 0, ${summary.intervals_to_rollback} analysis interval(s) of ${summary.interval_ms} ms`);
    if (summary.rollback_ms_haproxy !== undefined) console.log(`rollback through HAProxy: ${summary.rollback_ms_haproxy} ms, ${summary.intervals_to_rollback_haproxy} analysis interval(s)`);
  }
  console.log(JSON.stringify(summary));
}

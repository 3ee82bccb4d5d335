// `npm run bench:check [-- --update] [-- --only crypto,query]`: short runs of the benchmarks,
// each as `relay bench <name> --json` in a child process, their ratios against bench/baseline.json.
// Exit 1 when a figure regressed past its bound, and when one was not measured: its bench crashed,
// could not start (no server store), or gave no finite value — each named with why. The one way to
// leave a bench out is to say so: --only, whose left-out figures are printed as SKIPPED.
// --update rewrites the baseline from this run. --baseline and --relay (another file than
// bench/baseline.json, another script than bin/relay.mjs) exist for the gate's own tests.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { describe, exitCode, figureOf, judge, updated, type BaselineFigure, type BaselineFile } from '../bench/gate.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

type Summary = Record<string, unknown>;
type Def = Omit<BaselineFigure, 'value'> & { from: (s: Summary) => number };

interface Bench {
  name: string;
  /** Short-form arguments after `relay bench <name>`. */
  args: string[];
  needsServer: boolean;
  /** Runs whose figures are reduced to their median (1 unless a figure needs it). */
  repeats: number;
  figures: Record<string, Def>;
}

const num = figureOf;

/**
 * The short forms and their figures. Every figure is a ratio against a baseline measured in the
 * same run, so that a slower or busier machine moves both sides; a figure whose single short run
 * spreads more than the 20% tolerance is the median of several (docs/benchmarks.md, "bench:check").
 */
const BENCHES: Bench[] = [
  {
    name: 'crypto',
    args: [],
    needsServer: false,
    repeats: 1,
    figures: {
      'crypto.seal_vs_raw': { better: 'higher', tolerance: 0.2, note: 'seal ops/s ÷ bare AES-256-GCM ops/s, 1 KiB, interleaved rounds', from: (s) => num(s, 'ratio_1k') },
    },
  },
  {
    name: 'ann',
    args: ['--chunks', '12000', '--queries', '90'],
    needsServer: true,
    // A first run on a cold cache spread 0.22–0.30 against warm ones: the median of three.
    repeats: 3,
    figures: {
      'ann.p95_vs_exact': { better: 'lower', tolerance: 0.2, note: 'filtered search p95 ÷ exact search p95 of the same queries', from: (s) => num(s, 'p95_vs_exact') },
      'ann.recall_at_10': { better: 'higher', tolerance: 0.2, note: 'recall@10 against exact search (deterministic for a seed)', from: (s) => num(s, 'recall_at_10') },
    },
  },
  {
    name: 'query',
    args: ['--chunks', '2000', '--duration', '5'],
    needsServer: true,
    // One short run's ratio spread ±13% (0.0212–0.0272 over three runs): the median of three.
    repeats: 3,
    // TTFV at a fixed 200 queries/s is not gated: it measures how much headroom the machine has
    // at that rate (p95 10 ms on one CI machine, 76 ms on a slower one, same code), not the code.
    figures: {
      'query.qps_ratio': { better: 'higher', tolerance: 0.2, note: 'closed-loop queries/s ÷ the static SSE route’s, in interleaved slices; median of 3 short runs', from: (s) => num(s, 'qps_ratio') },
    },
  },
  {
    name: 'rerank',
    args: ['--queries', '20'],
    needsServer: false,
    // Each efficiency is timed in turns with its GEMM floor; the median of three all the same.
    repeats: 3,
    figures: {
      'rerank.efficiency': { better: 'higher', tolerance: 0.2, note: 'fp32 cross-encoder FLOP/s ÷ the CPU’s fp32 GEMM floor, timed in turns (ABBA slices); median of 3 short runs', from: (s) => num(s, 'efficiency') },
      'rerank.efficiency_int8': { better: 'higher', tolerance: 0.2, note: 'int8 cross-encoder FLOP/s ÷ the int8 GEMM floor, timed in turns (ABBA slices)', from: (s) => num(s, 'efficiency_int8') },
      'rerank.budget_p95_ratio': { better: 'lower', tolerance: 0.2, note: 'maybeRerank p95 ÷ its budget (150 ms)', from: (s) => num(s, 'budget_p95_ms') / num(s, 'budget_ms') },
    },
  },
  {
    name: 'canary',
    args: ['--duration', '5'],
    needsServer: false,
    // One short run's ratio spread 2.41–2.62 on the AMD EPYC (AVX-512/VNNI) class: the median of three.
    repeats: 3,
    figures: {
      'canary.routed_vs_direct_p50': { better: 'lower', tolerance: 0.2, note: 'median through the router ÷ median direct, alternated request by request; median of 3 short runs', from: (s) => num(s, 'routed_p50_ms') / num(s, 'direct_p50_ms') },
    },
  },
  {
    name: 'replicas',
    // ~90 s (6 replicas, 2 HAProxy, a PgBouncer, a rolling restart with its 5 s drains): one run.
    // key_event_p95_ms is milliseconds on this machine, not a ratio, and rolling_restart_sse_success
    // must be 1.0 exactly, which test/rolling-restart.test.ts asserts: neither is gated here.
    args: ['--duration', '6'],
    needsServer: true,
    repeats: 1,
    figures: {
      'replicas.pgbouncer_ratio': { better: 'higher', tolerance: 0.2, note: 'queries/s through PgBouncer (transaction mode, no prepared statements) ÷ straight to PostgreSQL, 3 replicas behind HAProxy each, ABBA slices', from: (s) => num(s, 'pgbouncer_ratio') },
    },
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** `relay bench <name> <args> --json` in a child process; its last stdout line parsed. */
function runBench(b: Bench, env: NodeJS.ProcessEnv, relay: string): Promise<Summary> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [relay, 'bench', b.name, ...b.args, '--json'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-20_000);
      process.stderr.write(d);
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`relay bench ${b.name} exited ${code ?? signal}:\n${err}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Summary);
      } catch {
        reject(new Error(`relay bench ${b.name} printed no JSON line:\n${out.slice(-2000)}`));
      }
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { update: { type: 'boolean', default: false }, only: { type: 'string' }, baseline: { type: 'string' }, relay: { type: 'string' } },
  });
  const only = values.only ? new Set(values.only.split(',')) : null;
  const unknown = only ? [...only].filter((n) => !BENCHES.some((b) => b.name === n)) : [];
  if (unknown.length > 0) throw new Error(`--only names no bench ${unknown.join(', ')} (benches: ${BENCHES.map((b) => b.name).join(', ')})`);
  const BASELINE = values.baseline ?? `${ROOT}bench/baseline.json`;
  const relay = values.relay ?? 'bin/relay.mjs';
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn' };
  const server = Boolean(env.DATABASE_URL && env.RELAY_MIGRATE_URL);
  // A server database has one master key, which the first service on it writes its check with and
  // every later one must have: the benches' services (every run of every bench) share the
  // configured key, or one made for this gate run when none is configured.
  if (server && !env.RELAY_MASTER_KEY && !env.RELAY_MASTER_KEY_FILE) env.RELAY_MASTER_KEY = randomBytes(32).toString('base64');
  const measured: Record<string, number> = {};
  /** Benches that should have run and did not, with why: their figures fail the gate. */
  const notRun: Record<string, string> = {};
  /** Benches left out on purpose (--only): printed, not judged. */
  const leftOut: Record<string, string> = {};
  const started = Date.now();
  for (const b of BENCHES) {
    if (only && !only.has(b.name)) {
      leftOut[b.name] = `left out by --only ${values.only}`;
      continue;
    }
    if (b.needsServer && !server) {
      notRun[b.name] = `needs a server store: DATABASE_URL and RELAY_MIGRATE_URL are not set (to leave it out on purpose: --only ${BENCHES.filter((x) => !x.needsServer && (!only || only.has(x.name))).map((x) => x.name).join(',')})`;
      continue;
    }
    const t0 = Date.now();
    const runs: Summary[] = [];
    try {
      for (let i = 0; i < b.repeats; i++) runs.push(await runBench(b, env, relay));
    } catch (e) {
      notRun[b.name] = `the bench failed: ${(e as Error).message.split('\n')[0]}`;
      console.error(`bench:check: ${(e as Error).message}`);
      continue;
    }
    const each: string[] = [];
    for (const [name, def] of Object.entries(b.figures)) {
      const values = runs.map(def.from);
      // A run without a finite figure makes the median meaningless: the figure is not measured.
      measured[name] = values.every(Number.isFinite) ? median(values) : Number.NaN;
      if (!Number.isFinite(measured[name])) notRun[b.name] = `${name}: ${values.length > 1 ? 'a run' : 'the run'} printed no finite value (${values.map(String).join(', ')})`;
      each.push(`${name}=${measured[name].toFixed(4)}${values.length > 1 ? ` (median of ${values.map((v) => v.toFixed(4)).join(', ')})` : ''}`);
    }
    console.error(`bench:check: ${b.name} in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${each.join(' ')}`);
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  const defs = Object.fromEntries(BENCHES.flatMap((b) => Object.entries(b.figures).map(([n, d]) => [n, { better: d.better, tolerance: d.tolerance, ...(d.note ? { note: d.note } : {}) }])));
  let current: BaselineFile;
  try {
    current = JSON.parse(readFileSync(BASELINE, 'utf8')) as BaselineFile;
  } catch {
    current = { about: 'Ratios of each benchmark against its same-run baseline, from `npm run bench:check -- --update` (short forms). See docs/benchmarks.md.', updated: '', figures: {} };
  }
  if (values.update) {
    const next = updated(current, defs, measured);
    writeFileSync(BASELINE, `${JSON.stringify(next, null, 2)}\n`);
    const kept = { ...leftOut, ...notRun };
    console.log(`bench:check: wrote ${Object.values(measured).filter(Number.isFinite).length} figures to ${BASELINE} in ${seconds} s${Object.keys(kept).length ? `; kept the old values of ${Object.keys(kept).join(', ')} (${Object.values(kept).join('; ')})` : ''}`);
    console.log(JSON.stringify({ updated: true, measured, not_run: notRun, skipped: leftOut, seconds }));
    // A bench that should have run and did not is a failure here too.
    if (Object.keys(notRun).length > 0) process.exitCode = 1;
    return;
  }
  const verdicts = judge(current, measured, notRun, leftOut);
  for (const v of verdicts) console.log(describe(v));
  const failed = verdicts.filter((v) => v.status === 'fail');
  const missed = verdicts.filter((v) => v.status === 'not_run');
  const skippedFigures = verdicts.filter((v) => v.status === 'skipped');
  const passed = verdicts.filter((v) => v.status === 'pass');
  const code = exitCode(verdicts);
  console.log(
    `bench:check: ${passed.length} passed, ${failed.length} failed, ${missed.length} not run${skippedFigures.length ? `, ${skippedFigures.length} skipped (--only)` : ''}, in ${seconds} s${missed.length ? ' — a figure that was not measured fails the gate' : ''}`,
  );
  console.log(
    JSON.stringify({ ok: code === 0, failed: failed.map((v) => v.figure), not_run: missed.map((v) => ({ figure: v.figure, reason: v.reason })), skipped: skippedFigures.map((v) => v.figure), measured, seconds }),
  );
  process.exitCode = code;
}

main().catch((e: unknown) => {
  console.error(`bench:check: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});

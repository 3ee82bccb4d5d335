import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { boundOf, describe as line, exitCode, figureOf, judge, updated, type BaselineFile } from '../src/bench/gate.ts';

const file: BaselineFile = {
  about: 'test',
  updated: '2026-01-01T00:00:00.000Z',
  figures: {
    'crypto.seal_vs_raw': { value: 1, better: 'higher', tolerance: 0.2 },
    'canary.routed_vs_direct_p95': { value: 2, better: 'lower', tolerance: 0.2 },
    'query.qps_ratio': { value: 0.06, better: 'higher', tolerance: 0.5 },
  },
};

describe('bench:check gate', () => {
  it('bounds: higher is better falls to (1 − tolerance) ×, lower is better rises to (1 + tolerance) ×', () => {
    assert.equal(boundOf(file.figures['crypto.seal_vs_raw']!), 0.8);
    assert.equal(boundOf(file.figures['canary.routed_vs_direct_p95']!), 2.4);
    assert.equal(boundOf(file.figures['query.qps_ratio']!), 0.03);
  });

  it('passes within the bound, fails past it, in both directions', () => {
    const v = judge(file, { 'crypto.seal_vs_raw': 0.81, 'canary.routed_vs_direct_p95': 2.5, 'query.qps_ratio': 0.029 });
    assert.deepEqual(
      v.map((x) => [x.figure, x.status]),
      [
        ['crypto.seal_vs_raw', 'pass'],
        ['canary.routed_vs_direct_p95', 'fail'],
        ['query.qps_ratio', 'fail'],
      ],
    );
    assert.match(line(v[1]!), /FAIL\s+canary\.routed_vs_direct_p95 = 2\.5, baseline 2, allowed ≤ 2\.4 \(lower is better\)/);
  });

  it('a figure that was not run is not_run with the reason, never pass', () => {
    const v = judge(file, { 'crypto.seal_vs_raw': 1 }, { query: 'needs a server store' });
    const q = v.find((x) => x.figure === 'query.qps_ratio')!;
    assert.equal(q.status, 'not_run');
    assert.equal(q.reason, 'needs a server store');
    assert.equal(v.find((x) => x.figure === 'canary.routed_vs_direct_p95')!.reason, 'no finite value in this run');
    assert.match(line(q), /^NOT RUN query\.qps_ratio/);
    assert.equal(exitCode(v), 1, 'a figure that was not run fails the gate');
  });

  it('a figure left out on purpose is skipped, printed, and does not fail; NaN and Infinity are not measured', () => {
    const v = judge(file, { 'crypto.seal_vs_raw': 1, 'canary.routed_vs_direct_p95': 2 }, {}, { query: 'left out by --only crypto,canary' });
    assert.deepEqual(v.map((x) => x.status), ['pass', 'pass', 'skipped']);
    assert.match(line(v[2]!), /^SKIPPED query\.qps_ratio \(baseline 0\.06\): left out by --only crypto,canary/);
    assert.equal(exitCode(v), 0);
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const w = judge(file, { 'crypto.seal_vs_raw': 1, 'canary.routed_vs_direct_p95': bad, 'query.qps_ratio': 0.06 });
      assert.equal(w[1]!.status, 'not_run');
      assert.equal(exitCode(w), 1);
    }
  });

  it('reads a figure only when it is a finite number (null, a string, a missing key are NaN, never 0)', () => {
    assert.equal(figureOf({ a: 0.5 }, 'a'), 0.5);
    assert.equal(figureOf({ a: 0 }, 'a'), 0);
    for (const s of [{ a: null }, { a: 'NaN' }, { a: '1' }, {}, { a: true }]) assert.ok(Number.isNaN(figureOf(s, 'a')), JSON.stringify(s));
  });

  it('--update takes measured figures, keeps the rest, and records direction and tolerance', () => {
    const defs = {
      'crypto.seal_vs_raw': { better: 'higher' as const, tolerance: 0.2 },
      'query.qps_ratio': { better: 'higher' as const, tolerance: 0.3, note: 'n' },
    };
    const next = updated(file, defs, { 'crypto.seal_vs_raw': 1.23456789 }, new Date('2026-02-02T00:00:00Z'));
    assert.deepEqual(next.figures, {
      'crypto.seal_vs_raw': { value: 1.2346, better: 'higher', tolerance: 0.2 },
      'query.qps_ratio': { value: 0.06, better: 'higher', tolerance: 0.3, note: 'n' },
    });
    assert.equal(next.updated, '2026-02-02T00:00:00.000Z');
  });

  it('bench/baseline.json is well formed: every figure has a value, a direction and a tolerance of at most 20%', () => {
    const real = JSON.parse(readFileSync('bench/baseline.json', 'utf8')) as BaselineFile;
    assert.ok(Object.keys(real.figures).length >= 5);
    for (const [name, f] of Object.entries(real.figures)) {
      assert.match(name, /^(ann|crypto|query|rerank|canary|load|replicas)\./);
      assert.ok(Number.isFinite(f.value) && f.value > 0, name);
      assert.ok(f.better === 'higher' || f.better === 'lower', name);
      // The gate's promise: a regression of more than 20% fails. A noisy figure is made steady
      // (interleaving, the median of repeats), never given a wider tolerance.
      assert.ok(f.tolerance > 0 && f.tolerance <= 0.2, `${name}: tolerance ${f.tolerance}`);
    }
  });
});

/**
 * The gate's exit status, end to end: `bench-check.ts` run as CI runs it, with `--relay` pointing
 * at a stand-in for bin/relay.mjs whose `bench <name> --json` crashes, prints no figure, or prints
 * a NaN (as JSON writes it: null) — the gate did not measure, so it must exit 1 and say why.
 */
describe('bench:check exit status', () => {
  let dir: string;
  const FAKE = `
const [, , cmd, name] = process.argv;
if (cmd !== 'bench') process.exit(64);
const mode = process.env['FAKE_' + name] ?? 'ok';
const good = { ratio_1k: 1, p95_vs_exact: 0.3, recall_at_10: 1, qps_ratio: 0.03, efficiency: 0.6, efficiency_int8: 0.3, budget_p95_ms: 100, budget_ms: 150, routed_p50_ms: 2, direct_p50_ms: 1 };
if (mode === 'crash') { console.error('Error: the bench blew up'); process.exit(3); }
if (mode === 'missing') { console.log(JSON.stringify({ bench: name })); process.exit(0); }
if (mode === 'nan') { console.log(JSON.stringify({ bench: name, ratio_1k: NaN })); process.exit(0); }
if (mode === 'string') { console.log(JSON.stringify({ bench: name, ratio_1k: 'NaN' })); process.exit(0); }
if (mode === 'nojson') { console.log('done'); process.exit(0); }
console.log(JSON.stringify({ bench: name, ...good }));
`;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'relay-bench-gate-'));
    writeFileSync(join(dir, 'fake-relay.mjs'), FAKE);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function gate(figures: BaselineFile['figures'], args: string[], env: Record<string, string> = {}) {
    const baseline = join(dir, `baseline-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(baseline, JSON.stringify({ about: 'test', updated: '', figures }));
    const clean: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete clean.DATABASE_URL;
    delete clean.RELAY_MIGRATE_URL;
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bench-check.ts', '--baseline', baseline, '--relay', join(dir, 'fake-relay.mjs'), ...args], { encoding: 'utf8', env: clean });
    return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
  }
  const crypto = { 'crypto.seal_vs_raw': { value: 1, better: 'higher' as const, tolerance: 0.2 } };

  it('exits 0 when every figure was measured within its bound (the stand-in works)', () => {
    const r = gate(crypto, ['--only', 'crypto']);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /pass\s+crypto\.seal_vs_raw = 1,/);
  });

  for (const [mode, why] of [
    ['crash', /NOT RUN crypto\.seal_vs_raw \(baseline 1\): the bench failed: relay bench crypto exited 3/],
    ['missing', /NOT RUN crypto\.seal_vs_raw \(baseline 1\): crypto\.seal_vs_raw: the run printed no finite value \(NaN\)/],
    ['nan', /NOT RUN crypto\.seal_vs_raw \(baseline 1\): crypto\.seal_vs_raw: the run printed no finite value/],
    ['string', /NOT RUN crypto\.seal_vs_raw/],
    ['nojson', /NOT RUN crypto\.seal_vs_raw \(baseline 1\): the bench failed: relay bench crypto printed no JSON line/],
  ] as const) {
    it(`exits 1 when the bench's run is ${mode === 'crash' ? 'a crash' : mode === 'nojson' ? 'without a summary line' : `a ${mode} figure`}, naming the figure and why`, () => {
      const r = gate(crypto, ['--only', 'crypto'], { FAKE_crypto: mode });
      assert.equal(r.status, 1, r.out);
      assert.match(r.out, why);
      assert.match(r.out, /0 passed, 0 failed, 1 not run/);
    });
  }

  it('a NaN lower-is-better figure is not read as 0 (which would pass)', () => {
    const r = gate({ 'canary.routed_vs_direct_p50': { value: 2, better: 'lower', tolerance: 0.2 } }, ['--only', 'canary'], { FAKE_canary: 'missing' });
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /NOT RUN canary\.routed_vs_direct_p50/);
  });

  it('exits 1 when a server bench cannot run for want of a server store, and says how to leave it out on purpose', () => {
    const r = gate({ ...crypto, 'ann.p95_vs_exact': { value: 0.3, better: 'lower', tolerance: 0.2 } }, []);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /NOT RUN ann\.p95_vs_exact \(baseline 0\.3\): needs a server store: DATABASE_URL and RELAY_MIGRATE_URL are not set \(to leave it out on purpose: --only crypto,rerank,canary\)/);
    assert.match(r.out, /pass\s+crypto\.seal_vs_raw/);
  });

  it('--only is the one way to leave a bench out: its figures are printed as SKIPPED and do not fail', () => {
    const r = gate({ ...crypto, 'ann.p95_vs_exact': { value: 0.3, better: 'lower', tolerance: 0.2 } }, ['--only', 'crypto']);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SKIPPED ann\.p95_vs_exact \(baseline 0\.3\): left out by --only crypto/);
    assert.match(r.out, /1 passed, 0 failed, 0 not run, 1 skipped \(--only\)/);
  });

  it('--only naming no bench is an error, not a run that checks nothing', () => {
    const r = gate(crypto, ['--only', 'cyrpto']);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /--only names no bench cyrpto/);
  });

  it('a regression still exits 1', () => {
    const r = gate({ 'crypto.seal_vs_raw': { value: 2, better: 'higher', tolerance: 0.2 } }, ['--only', 'crypto']);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /FAIL\s+crypto\.seal_vs_raw = 1, baseline 2, allowed ≥ 1\.6/);
  });
});

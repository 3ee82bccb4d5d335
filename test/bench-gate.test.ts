import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { boundOf, describe as line, judge, updated, type BaselineFile } from '../src/bench/gate.ts';

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
    assert.equal(v.find((x) => x.figure === 'canary.routed_vs_direct_p95')!.reason, 'no value in this run');
    assert.match(line(q), /^NOT RUN query\.qps_ratio/);
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
      assert.match(name, /^(ann|crypto|query|rerank|canary|load)\./);
      assert.ok(Number.isFinite(f.value) && f.value > 0, name);
      assert.ok(f.better === 'higher' || f.better === 'lower', name);
      // The gate's promise: a regression of more than 20% fails. A noisy figure is made steady
      // (interleaving, the median of repeats), never given a wider tolerance.
      assert.ok(f.tolerance > 0 && f.tolerance <= 0.2, `${name}: tolerance ${f.tolerance}`);
    }
  });
});

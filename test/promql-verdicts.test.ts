// The guardrails' PromQL against analyze() on many counts, edges included (a handful of slow
// samples before min_samples, one failed stream of 60, requests just under the minimum): for a
// fixed-seed sample of cases, each a candidate and a stable release with exact counters over the
// window, `promtool test rules` checks the committed rules' recorded series and the committed
// AnalysisTemplate's queries are absent (inconclusive), present and passing, or failing exactly
// where analyze() says insufficient_data, pass, or fail/warn. No Prometheus server: promtool's
// own engine evaluates the committed files.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { metricName, recordName } from '../src/deploy/index.ts';
import { analyze, defaultPlan, GUARDRAIL_ORDER, guardrailsByRelease, passOp, type Delta } from '../src/rollout/index.ts';

const BOUNDS = [0.1, 1, 2.5];

interface Side {
  /** Observations in each of BOUNDS' buckets (not cumulative). */
  ttfv: [number, number, number];
  ann: [number, number, number];
  ok: number;
  err: number;
  rls: number;
  scope: number;
  attempts: number;
  requests: number;
  pool: number;
}

const small = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 70 }));
const side: fc.Arbitrary<Side> = fc.record({
  ttfv: fc.tuple(fc.oneof(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 40, max: 60 })), small, fc.integer({ min: 0, max: 5 })),
  ann: fc.tuple(fc.oneof(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 40, max: 60 })), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 3 })),
  ok: fc.oneof(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 200, max: 600 })),
  err: fc.integer({ min: 0, max: 3 }),
  rls: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 2 })),
  scope: fc.oneof(fc.constant(0), fc.constant(0), fc.constant(1)),
  attempts: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 15, max: 60 })),
  requests: fc.oneof(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 40, max: 200 })),
  pool: fc.constantFrom(0, 0.5, 0.85, 0.9),
});

const cumulative = (h: [number, number, number]) => BOUNDS.map((le, i) => [le, h.slice(0, i + 1).reduce((a, b) => a + b, 0)] as [number, number]);

function delta(s: Side): Delta {
  const hist = (h: [number, number, number]) => {
    const c = cumulative(h);
    const n = h[0] + h[1] + h[2];
    return { buckets: [...c, [Infinity, n] as [number, number]], count: n, sum: 0 };
  };
  return { ttfv: hist(s.ttfv), ann: hist(s.ann), sse: { success: s.ok, error: s.err, client_abort: 0 }, rlsErrors: s.rls, scopeViolations: s.scope, crossTenant: s.attempts, requests: s.requests, poolUtilization: s.pool, seconds: 300 };
}

/** The counters of one release: 0 at the window's start, their value from the next scrape on. */
function series(release: string, s: Side): Array<{ series: string; values: string }> {
  const out: Array<{ series: string; values: string }> = [];
  const add = (name: string, labels: Record<string, string>, v: number, gauge = false) => {
    const all = { instance: `${release}:8080`, job: 'relay', ...labels };
    out.push({ series: `${name}{${Object.entries(all).map(([k, x]) => `${k}="${x}"`).join(',')}}`, values: gauge ? `${v}x10` : `0 ${v}x9` });
  };
  add('relay_build_info', { release, version: '1' }, 1, true);
  for (const [name, h] of [['relay_ttfv_seconds', s.ttfv], ['relay_ann_query_seconds', s.ann]] as const) {
    for (const [le, n] of cumulative(h)) add(`${name}_bucket`, { le: String(le) }, n);
    const n = h[0] + h[1] + h[2];
    add(`${name}_bucket`, { le: '+Inf' }, n);
    add(`${name}_count`, {}, n);
  }
  add('relay_sse_streams_total', { outcome: 'success' }, s.ok);
  add('relay_sse_streams_total', { outcome: 'error' }, s.err);
  add('relay_rls_errors_total', {}, s.rls);
  add('relay_scope_violations_total', {}, s.scope);
  add('relay_cross_tenant_attempts_total', {}, s.attempts);
  add('relay_http_requests_total', { route: '/api/v1/memory/query', status: '200' }, s.requests);
  add('relay_db_pool_utilization', {}, s.pool, true);
  return out;
}

describe('the guardrails in PromQL give analyze()\'s verdict on every sampled case (promtool)', () => {
  it('recorded series and AnalysisTemplate queries: absent, passing or failing as analyze() says', (t) => {
    const template = parse(readFileSync('deploy/kubernetes/analysis-template.yaml', 'utf8')) as { spec: { metrics: Array<{ name: string; provider: { prometheus: { query: string } } }> } };
    const specs = guardrailsByRelease();
    const cases = fc.sample(fc.record({ candidate: side, stable: side }), { seed: 2020, numRuns: 120 });
    const tally: Record<string, number> = {};
    const tests = cases.map((c, i) => {
      const report = analyze({ plan: defaultPlan(), candidate: { stage: delta(c.candidate), window: null, watch: delta(c.candidate) }, stable: delta(c.stable) });
      const exprs: Array<{ expr: string; eval_time: string; exp_samples: Array<{ labels: string; value: number }> }> = [];
      for (const name of GUARDRAIL_ORDER) {
        const g = specs.find((x) => x.name === name)!;
        const v = report.guardrails.find((x) => x.name === name)!.verdict;
        const verdict = v === 'insufficient_data' ? 'inconclusive' : v === 'pass' ? 'pass' : 'fail';
        tally[`${name} ${verdict}`] = (tally[`${name} ${verdict}`] ?? 0) + 1;
        const q = template.spec.metrics.find((m) => m.name === metricName(g))!.provider.prometheus.query.replaceAll('{{args.canary-hash}}', `c${i}`).replaceAll('{{args.stable-hash}}', `s${i}`);
        for (const source of [`${recordName(g)}{release="c${i}"}`, q]) {
          const one = (present: boolean) => (present ? [{ labels: '{}', value: 1 }] : []);
          exprs.push({ expr: `count(${source})`, eval_time: '5m', exp_samples: one(verdict !== 'inconclusive') });
          exprs.push({ expr: `count((${source}) ${g.fails.op} ${g.fails.threshold})`, eval_time: '5m', exp_samples: one(verdict === 'fail') });
          exprs.push({ expr: `count((${source}) ${passOp(g.fails)} ${g.fails.threshold})`, eval_time: '5m', exp_samples: one(verdict === 'pass') });
        }
      }
      return { interval: '30s', name: `case ${i}: ${JSON.stringify(c)}`, input_series: [...series(`c${i}`, c.candidate), ...series(`s${i}`, c.stable)], promql_expr_test: exprs };
    });
    // Every verdict of every guardrail is met somewhere in the sample (else the sample proves little).
    for (const name of GUARDRAIL_ORDER) {
      const want = name === 'pool_utilization' || name === 'rls_errors' || name === 'scope_violations' ? ['pass', 'fail'] : ['inconclusive', 'pass', 'fail'];
      for (const v of want) assert.ok((tally[`${name} ${v}`] ?? 0) > 0, `no ${name} ${v} case in the sample: ${JSON.stringify(tally)}`);
    }
    t.diagnostic(`${cases.length} cases, ${cases.length * GUARDRAIL_ORDER.length * 6} expressions: ${JSON.stringify(tally)}`);
    const dir = mkdtempSync(join(tmpdir(), 'relay-promql-'));
    cpSync('deploy/prometheus/relay-rules.yml', join(dir, 'relay-rules.yml'));
    writeFileSync(join(dir, 'cases.yml'), stringify({ rule_files: ['relay-rules.yml'], evaluation_interval: '30s', tests }, { lineWidth: 0 }));
    const r = spawnSync('promtool', ['test', 'rules', 'cases.yml'], { cwd: dir, encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`.slice(0, 6000));
  });
});

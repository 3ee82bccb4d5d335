// The guardrails' PromQL against the canary's own analysis: a real Prometheus (1 s scrapes, the
// committed deploy/prometheus/relay-rules.yml loaded) scrapes two real `relay serve` releases,
// one driven bad with RELAY_FAULTS. Every query of the committed AnalysisTemplate (its Argo
// conditions applied), of the rules (recording expressions, the recorded series, the alerts'
// expressions) and of the dashboard (its panels' thresholds applied) gives, guardrail by
// guardrail and release by release, the verdict analyze() gives on a direct scrape of the same
// process: inconclusive with no traffic, pass on the healthy release, fail on the bad one.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { FAIL_COLOR, metricName, PASS_COLOR, recordName, WARN_COLOR } from '../src/deploy/index.ts';
import { analyze, defaultPlan, deltaOf, GUARDRAIL_ORDER, prometheusSource, scrapeSource, type GuardrailName, type Snapshot } from '../src/rollout/index.ts';
import { queryStream, scratchDir, sharedKeys } from './helpers/canary.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

type Verdict = 'pass' | 'fail' | 'inconclusive';
type Release = 'q-good' | 'q-bad';
const RELEASES: Release[] = ['q-good', 'q-bad'];
const other = (r: Release): Release => (r === 'q-good' ? 'q-bad' : 'q-good');

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}

// --- The committed files, read as a user's Argo, Prometheus and Grafana read them. ---

interface ArgoMetric {
  name: string;
  successCondition: string;
  failureCondition: string;
  provider: { prometheus: { query: string } };
}
const template = parse(readFileSync('deploy/kubernetes/analysis-template.yaml', 'utf8')) as { spec: { metrics: ArgoMetric[]; dryRun: Array<{ metricName: string }> } };
const rules = parse(readFileSync('deploy/prometheus/relay-rules.yml', 'utf8')) as { groups: Array<{ rules: Array<{ record?: string; alert?: string; expr: string; labels?: { guardrail?: string } }> }> };
const recording = rules.groups[0]!.rules.filter((r) => r.record);
const alerts = rules.groups[1]!.rules.filter((r) => r.alert);
interface Panel {
  title: string;
  targets?: Array<{ expr: string }>;
  fieldConfig?: { defaults?: { thresholds?: { steps: Array<{ value: number | null; color: string }> } } };
}
const dashboard = JSON.parse(readFileSync('deploy/grafana/relay-memory.json', 'utf8')) as { panels: Panel[] };

/** Argo's conditions as the generator writes them: `len(result) > 0 && result[0] <op> <n>`. */
function condition(text: string): (result: number[]) => boolean {
  const m = /^len\(result\) > 0 && result\[0\] (<=|>=|<|>) (-?[\d.]+)$/.exec(text);
  assert.ok(m, `an Argo condition this test can evaluate: ${text}`);
  const [op, n] = [m[1]!, Number(m[2])];
  return (result) => result.length > 0 && (op === '<' ? result[0]! < n : op === '<=' ? result[0]! <= n : op === '>' ? result[0]! > n : result[0]! >= n);
}

/** An alert's `record <op> <n>`. */
function comparison(expr: string): { series: string; fails: (v: number) => boolean } {
  const m = /^(\S+) (<=|>=|<|>) (-?[\d.]+)$/.exec(expr);
  assert.ok(m, `an alert expression this test can evaluate: ${expr}`);
  const n = Number(m[3]);
  const op = m[2]!;
  return { series: m[1]!, fails: (v) => (op === '<' ? v < n : op === '<=' ? v <= n : op === '>' ? v > n : v >= n) };
}

/** Grafana's colour for a value: the last step whose value is ≤ it (null: −∞). */
function colour(steps: Array<{ value: number | null; color: string }>, v: number): string {
  let c = steps[0]!.color;
  for (const s of steps) if (s.value === null || v >= s.value) c = s.color;
  return c;
}

describe('the guardrails in PromQL give the canary analysis\' verdicts (real Prometheus, two real releases)', { timeout: 300_000 }, () => {
  const keys = sharedKeys();
  const proc = {} as Record<Release, RelayProcess>;
  let prom: ChildProcess;
  let promUrl = '';

  before(async () => {
    const env = { ...keys, RELAY_RERANK: 'off' };
    // The bad release: slow first values (TTFV breach), slow searches (the ANN warning), every
    // 2nd stream failing, half the queries meeting an RLS refusal.
    [proc['q-good'], proc['q-bad']] = await Promise.all([
      startRelayProcess('pglite', { ...env, RELAY_RELEASE: 'q-good' }),
      startRelayProcess('pglite', { ...env, RELAY_RELEASE: 'q-bad', RELAY_FAULTS: 'ttfv_delay_ms=1600,ann_delay_ms=300,sse_error_every=2,rls_error_rate=0.5' }),
    ]);
    const dir = scratchDir('deploy-promql-');
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ['${resolve('deploy/prometheus/relay-rules.yml')}']
scrape_configs:
  - job_name: relay
    metrics_path: /metrics/memory
    static_configs: [{targets: ['${new URL(proc['q-good'].url).host}', '${new URL(proc['q-bad'].url).host}']}]
`,
    );
    prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
  });
  after(async () => {
    prom?.kill('SIGTERM');
    await Promise.all(Object.values(proc).map((p) => p.stop()));
  });

  async function query(q: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    assert.equal(body.status, 'success', `${body.error}: ${q}`);
    return body.data!.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  const direct = () => scrapeSource({ urls: { stable: proc['q-good'].url, candidate: proc['q-bad'].url } });
  const sideOf = (r: Release) => (r === 'q-good' ? 'stable' : 'candidate');

  /** Prometheus has scraped every release's current counters (its sums equal a direct scrape's). */
  async function caughtUp(): Promise<Record<Release, Snapshot>> {
    const source = prometheusSource({ url: promUrl, releases: { stable: 'q-good', candidate: 'q-bad' } });
    const same = (s: Snapshot) => JSON.stringify([s.ttfv.count, s.ann.count, s.sse, s.rlsErrors, s.crossTenant, s.scopeViolations, s.requests]);
    for (let i = 0; i < 240; i++) {
      const out = {} as Record<Release, Snapshot>;
      let ok = true;
      for (const r of RELEASES) {
        const [p, d] = await Promise.all([source.read(sideOf(r)).catch(() => null), direct().read(sideOf(r))]);
        out[r] = d;
        if (!p || same(p) !== same(d)) ok = false;
      }
      if (ok) return out;
      await new Promise((res) => setTimeout(res, 250));
    }
    throw new Error('prometheus never caught up with the releases');
  }

  /** analyze() on each release's lifetime (a stage that began at its start), the other as stable. */
  function canary(snaps: Record<Release, Snapshot>, r: Release): Record<GuardrailName, Verdict> {
    const zero = (s: Snapshot): Snapshot => ({ ...s, ttfv: { buckets: [], count: 0, sum: 0 }, ann: { buckets: [], count: 0, sum: 0 }, sse: { success: 0, error: 0, client_abort: 0 }, rlsErrors: 0, crossTenant: 0, scopeViolations: s.scopeViolations === null ? null : 0, requests: 0 });
    const d = deltaOf(snaps[r], zero(snaps[r]));
    const report = analyze({ plan: defaultPlan(), candidate: { stage: d, window: null, watch: d }, stable: deltaOf(snaps[other(r)], zero(snaps[other(r)])) });
    return Object.fromEntries(report.guardrails.map((g) => [g.name, g.verdict === 'insufficient_data' ? 'inconclusive' : g.verdict === 'pass' ? 'pass' : 'fail'])) as Record<GuardrailName, Verdict>;
  }

  /** Every source's verdict per guardrail for release `r`: `source` → verdict. */
  async function promVerdicts(r: Release): Promise<Record<GuardrailName, Record<string, Verdict>>> {
    const out = Object.fromEntries(GUARDRAIL_ORDER.map((g) => [g, {} as Record<string, Verdict>])) as Record<GuardrailName, Record<string, Verdict>>;
    const mine = (rows: Array<{ metric: Record<string, string>; value: number }>) => rows.filter((x) => x.metric.release === r || x.metric.release === undefined);
    for (const g of GUARDRAIL_ORDER) {
      // Argo: the template's query with the AnalysisRun's arguments, judged by its conditions.
      const m = template.spec.metrics.find((x) => x.name === metricName({ name: g }));
      assert.ok(m, `the AnalysisTemplate has ${g}`);
      const q = m.provider.prometheus.query.replaceAll('{{args.canary-hash}}', r).replaceAll('{{args.stable-hash}}', other(r));
      const result = (await query(q)).map((x) => x.value);
      assert.ok(result.length <= 1, `${g}: one series at most, got ${result.length}`);
      const [ok, bad] = [condition(m.successCondition)(result), condition(m.failureCondition)(result)];
      assert.ok(!(ok && bad), `${g}: both conditions hold on ${result}`);
      out[g].argo = bad ? 'fail' : ok ? 'pass' : 'inconclusive';

      // The rules: the recording expression, the series Prometheus recorded, the alert's expression.
      const rec = recording.find((x) => x.record === recordName({ name: g, unit: g.endsWith('_p95') ? 'seconds' : g === 'sse_success' || g === 'pool_utilization' ? 'ratio' : 'count' }));
      assert.ok(rec, `a recording rule for ${g}`);
      const alert = alerts.find((a) => a.labels?.guardrail === g);
      assert.ok(alert, `an alert for ${g}`);
      const cmp = comparison(alert.expr);
      assert.equal(cmp.series, rec.record);
      for (const [source, rows] of [
        ['rule expr', mine(await query(rec.expr))],
        ['recorded', mine(await query(rec.record!))],
      ] as const) {
        assert.ok(rows.length <= 1, `${g} ${source}: one series for ${r} at most`);
        out[g][source] = rows.length === 0 ? 'inconclusive' : cmp.fails(rows[0]!.value) ? 'fail' : 'pass';
      }
      const firing = mine(await query(alert.expr)).length > 0;
      // An alert only tells fail from not-fail.
      out[g].alert = firing ? 'fail' : out[g]['rule expr'] === 'fail' ? 'pass' : out[g]['rule expr']!;

      // The dashboard: the panel's query, coloured by its thresholds.
      const panel = dashboard.panels.find((p) => p.title.startsWith(`${g} (`));
      assert.ok(panel?.targets?.[0], `a panel for ${g}`);
      const steps = panel.fieldConfig!.defaults!.thresholds!.steps;
      const rows = mine(await query(panel.targets[0].expr));
      assert.ok(rows.length <= 1);
      if (rows.length === 0) out[g].dashboard = 'inconclusive';
      else {
        const c = colour(steps, rows[0]!.value);
        assert.ok([PASS_COLOR, FAIL_COLOR, WARN_COLOR].includes(c));
        out[g].dashboard = c === PASS_COLOR ? 'pass' : 'fail';
      }
    }
    return out;
  }

  /**
   * Waits (the rules are evaluated every second) until every PromQL source agrees with the
   * canary on every guardrail of both releases; fails with the last disagreement.
   */
  async function agree(): Promise<Record<Release, Record<GuardrailName, Verdict>>> {
    let last = '';
    for (let i = 0; i < 40; i++) {
      const snaps = await caughtUp();
      const want = { 'q-good': canary(snaps, 'q-good'), 'q-bad': canary(snaps, 'q-bad') };
      const diffs: string[] = [];
      for (const r of RELEASES) {
        const got = await promVerdicts(r);
        for (const g of GUARDRAIL_ORDER) for (const [source, v] of Object.entries(got[g])) if (v !== want[r][g]) diffs.push(`${r} ${g}: ${source} says ${v}, the canary ${want[r][g]}`);
      }
      if (diffs.length === 0) return want;
      last = diffs.join('\n');
      await new Promise((res) => setTimeout(res, 500));
    }
    throw new Error(`PromQL and the canary disagree:\n${last}`);
  }

  it('no traffic: the rate and latency guardrails are inconclusive everywhere, never a pass', async () => {
    const scraped = () => query('count(count_over_time(relay_build_info[5m]) >= 3)').then((r) => r[0]?.value, () => undefined);
    for (let i = 0; (await scraped()) !== 2; i++) {
      assert.ok(i < 240, 'prometheus did not scrape both releases');
      await new Promise((res) => setTimeout(res, 250));
    }
    const v = await agree();
    for (const r of RELEASES) {
      for (const g of ['ttfv_p95', 'sse_success', 'cross_tenant_attempts', 'ann_p95'] as const) assert.equal(v[r][g], 'inconclusive', `${r} ${g}`);
      // Zero tolerance judges any traffic, none included; the pool is a gauge.
      for (const g of ['rls_errors', 'scope_violations', 'pool_utilization'] as const) assert.equal(v[r][g], 'pass', `${r} ${g}`);
    }
  });

  it('traffic: pass on the healthy release, fail on the bad one, the same verdict from every query', async () => {
    const tokens = await Promise.all([0, 1, 2, 3].map((i) => proc['q-good'].token('promql', `u${i}`)));
    const list = async (r: Release, user: string, token: string, status: number) => {
      const res = await fetch(`${proc[r].url}/api/v1/memory${user ? `?user_id=${user}` : ''}`, { headers: { authorization: `Bearer ${token}` } });
      await res.body?.cancel();
      assert.equal(res.status, status);
    };
    const pool = async (n: number, width: number, job: (i: number) => Promise<unknown>) => {
      let next = 0;
      await Promise.all(Array.from({ length: width }, async () => {
        while (next < n) await job(next++);
      }));
    };
    // A series born between two scrapes loses its first value to increase(): one request of
    // each kind first, then the rest once Prometheus has seen them.
    await list('q-good', '', tokens[0]!, 200);
    await list('q-bad', 'someone-else', tokens[0]!, 403);
    const firstGood = await queryStream(proc['q-good'].url, tokens[0]!);
    assert.equal(firstGood.ok, true);
    const statuses = new Set<number>();
    for (let i = 0; statuses.size < 2 && i < 20; i++) statuses.add((await queryStream(proc['q-bad'].url, tokens[i % 4]!)).status);
    await caughtUp();

    await Promise.all([
      pool(60, 4, (i) => queryStream(proc['q-good'].url, tokens[i % 4]!)),
      pool(60, 4, (i) => list('q-good', '', tokens[i % 4]!, 200)),
      pool(24, 4, (i) => queryStream(proc['q-bad'].url, tokens[i % 4]!)),
      pool(40, 4, (i) => list('q-bad', 'someone-else', tokens[i % 4]!, 403)),
    ]);
    const v = await agree();
    assert.deepEqual(v['q-good'], Object.fromEntries(GUARDRAIL_ORDER.map((g) => [g, 'pass'])), 'the healthy release passes every guardrail');
    assert.deepEqual(v['q-bad'], { ttfv_p95: 'fail', rls_errors: 'fail', scope_violations: 'pass', sse_success: 'fail', cross_tenant_attempts: 'fail', ann_p95: 'fail', pool_utilization: 'pass' }, 'the bad release fails what RELAY_FAULTS breaks');
  });
});

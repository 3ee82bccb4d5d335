import type { GuardrailName, GuardrailSpec, Plan, Severity } from './plan.ts';
import type { Delta, Histogram } from './snapshot.ts';

/**
 * `pass` and `fail` need a big enough sample (a `fail` before that only when no run of good
 * samples up to the minimum could rescue it); `warn` is a failed warning guardrail.
 */
export type Verdict = 'pass' | 'fail' | 'warn' | 'insufficient_data';

/** What a guardrail's value, stable value and threshold are in (the status tables print it). */
export type Unit = 'seconds' | 'ratio' | 'count' | 'per_request';

export interface GuardrailResult {
  name: GuardrailName;
  severity: Severity;
  threshold: number;
  /** `value`, `windowValue` and `stable`'s unit. The threshold is in it too, except for cross_tenant_attempts (a factor over stable's rate). */
  unit: Unit;
  /** The candidate over the stage so far (latencies in seconds, ratios 0..1, counts, per-request rates). */
  value: number | null;
  /** The candidate over the last interval. */
  windowValue: number | null;
  /** Stable over the same span as `value`. */
  stable: number | null;
  /** Streams, searches, events or API requests the value stands on. */
  samples: number;
  /** cross_tenant_attempts: the refused requests behind the rates, and the candidate's allowance (factor × stable's rate × its requests). */
  counts?: { candidate: number; stable: number | null; allowance: number | null; stableRequests: number | null };
  verdict: Verdict;
  why: string;
}

export interface Comparison {
  metric: 'ttfv_p95' | 'ann_p95';
  candidate: number | null;
  stable: number | null;
  /** candidate / stable. */
  ratio: number | null;
  verdict: 'pass' | 'warn' | 'insufficient_data';
}

export interface Report {
  at: string;
  guardrails: GuardrailResult[];
  comparisons: Comparison[];
  /** Rollback-severity guardrails that failed: any one rolls back. */
  breaches: GuardrailResult[];
  warnings: string[];
  /** Every rollback-severity guardrail passed on a big enough sample (see `holdsPromotion`). */
  promotable: boolean;
}

/**
 * Prometheus' histogram_quantile on cumulative buckets (`+Inf` last): the rank's bucket, then a
 * linear interpolation inside it (from 0 for the first bucket); a rank in the `+Inf` bucket gives
 * the largest finite bound. NaN without observations.
 */
export function histogramQuantile(q: number, buckets: ReadonlyArray<readonly [number, number]>): number {
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  if (sorted.length < 2 || sorted.at(-1)![0] !== Infinity) return NaN;
  // Like Prometheus, tolerate counts that are not monotonic (a scrape between two increments).
  for (let i = 1; i < sorted.length; i++) if (sorted[i]![1] < sorted[i - 1]![1]) sorted[i] = [sorted[i]![0], sorted[i - 1]![1]];
  const total = sorted.at(-1)![1];
  if (total === 0) return NaN;
  let rank = q * total;
  let b = sorted.findIndex(([, n], i) => i < sorted.length - 1 && n >= rank);
  if (b === -1) b = sorted.length - 1;
  if (b === sorted.length - 1) return sorted[sorted.length - 2]![0];
  if (b === 0 && sorted[0]![0] <= 0) return sorted[0]![0];
  let start = 0;
  const end = sorted[b]![0];
  let count = sorted[b]![1];
  if (b > 0) {
    start = sorted[b - 1]![0];
    count -= sorted[b - 1]![1];
    rank -= sorted[b - 1]![1];
  }
  return start + (end - start) * (rank / count);
}

/** `h` with `extra` more observations in its lowest bucket: the best case for a latency. */
function padFast(h: Histogram, extra: number): Histogram {
  return { ...h, count: h.count + extra, buckets: h.buckets.map(([le, n]) => [le, n + extra]) };
}

const round = (v: number | null, digits = 4) => (v === null || !Number.isFinite(v) ? null : Math.round(v * 10 ** digits) / 10 ** digits);

function p95(h: Histogram | undefined): number | null {
  if (!h || h.count === 0) return null;
  return round(histogramQuantile(0.95, h.buckets));
}

/**
 * A latency guardrail (p95 < threshold) on one span: fails when even `minSamples` observations
 * padded with the fastest possible ones would put the p95 at or over the threshold (so a single
 * interval of slow streams trips it before the sample is complete), passes only on a full sample.
 */
function latencyVerdict(h: Histogram, threshold: number, minSamples: number): 'pass' | 'fail' | 'insufficient_data' {
  if (h.count === 0) return 'insufficient_data';
  const best = padFast(h, Math.max(0, minSamples - h.count));
  if (histogramQuantile(0.95, best.buckets) >= threshold) return 'fail';
  return h.count >= minSamples ? 'pass' : 'insufficient_data';
}

/** Streams a success ratio of `threshold` needs before it can tolerate one failure (250 at 99.6%). */
export function resolvableSample(threshold: number): number {
  return threshold >= 1 ? Infinity : Math.ceil(1 / (1 - threshold) - 1e-9);
}

/**
 * SSE success (client aborts excluded) on one span: fails when the failures are already too many
 * for the smallest sample that could tolerate them (2 failures at 99.6%: even 250 streams could
 * not absorb them); passes on a full sample at or over the threshold; else insufficient_data
 * (one failure in 60 streams is 98.3% observed, but 249 of 250 would pass).
 */
function successVerdict(ok: number, failed: number, threshold: number, minSamples: number): 'pass' | 'fail' | 'insufficient_data' {
  const n = ok + failed;
  const judgedOn = Math.max(n, minSamples, Math.min(resolvableSample(threshold), Number.MAX_SAFE_INTEGER));
  if ((judgedOn - failed) / judgedOn < threshold) return 'fail';
  if (n >= minSamples && ok / n >= threshold) return 'pass';
  return 'insufficient_data';
}

const rate = (events: number, requests: number) => (requests > 0 ? round(events / requests, 6) : null);

/**
 * Refused cross-tenant attempts are a client signal: the stable release sees the same clients, so
 * the candidate is judged only against stable's per-request rate over the same span, never alone.
 * With factor F (`threshold`, default 2) and minimum count M (`minCount`, default 20): fails when
 * the candidate's refused requests exceed F × stable's rate × the candidate's API requests by at
 * least M — its rate is over F× stable's and the surplus is more than a few requests. Both sides
 * need `minSamples` API requests (and stable must be readable), else insufficient_data.
 */
export function attemptsVerdict(
  spec: GuardrailSpec,
  minSamples: number,
  stage: Delta,
  window: Delta | null,
  stable: Delta | null,
): ['pass' | 'fail' | 'insufficient_data', Omit<GuardrailResult, 'name' | 'severity' | 'threshold' | 'verdict'>] {
  const factor = spec.threshold;
  const minCount = spec.minCount ?? 20;
  const ac = stage.crossTenant;
  const nc = stage.requests;
  const base = {
    unit: 'per_request' as const,
    value: rate(ac, nc),
    windowValue: window ? rate(window.crossTenant, window.requests) : null,
    stable: stable ? rate(stable.crossTenant, stable.requests) : null,
    samples: nc,
  };
  if (!stable) return ['insufficient_data', { ...base, counts: { candidate: ac, stable: null, allowance: null, stableRequests: null }, why: `${ac} refused on the candidate; stable could not be read, and this is judged only against stable` }];
  const as = stable.crossTenant;
  const ns = stable.requests;
  if (nc < minSamples || ns < minSamples) {
    return ['insufficient_data', { ...base, counts: { candidate: ac, stable: as, allowance: null, stableRequests: ns }, why: `${nc} candidate and ${ns} stable API requests, ${minSamples} each needed to compare` }];
  }
  const allowance = Math.round(factor * (as / ns) * nc * 100) / 100;
  const counts = { candidate: ac, stable: as, allowance, stableRequests: ns };
  if (ac - allowance >= minCount) {
    return ['fail', { ...base, counts, why: `${ac} refused of ${nc} requests on the candidate vs ${as} of ${ns} on stable: ${Math.round((ac - allowance) * 100) / 100} over ${factor}× stable's rate (${allowance}), at least ${minCount} over makes it clearly above` }];
  }
  return ['pass', { ...base, counts, why: `${ac} refused of ${nc} requests on the candidate vs ${as} of ${ns} on stable: not clearly above ${factor}× stable's rate (allowance ${allowance} + ${minCount})` }];
}

const worse = (a: 'pass' | 'fail' | 'insufficient_data', b: 'pass' | 'fail' | 'insufficient_data') => (a === 'fail' || b === 'fail' ? 'fail' : a);

export interface AnalysisInput {
  plan: Pick<Plan, 'guardrails' | 'minSamples' | 'slowerFactor'>;
  candidate: {
    /** Since the stage began. */
    stage: Delta;
    /** Over the last interval (null on the first analysis of a stage). */
    window: Delta | null;
    /** Since the controller began watching the process: zero-tolerance counters. */
    watch: Delta;
  };
  /** Stable over the same span as `candidate.stage`; null when it could not be read. */
  stable: Delta | null;
  now?: Date;
}

/**
 * A rollback guardrail that has not passed holds promotion, except cross_tenant_attempts without
 * a verdict: it is a comparison with stable, and gives none on too little traffic (or at 100%,
 * where stable serves nobody); only its `fail` counts.
 */
export function holdsPromotion(g: GuardrailResult): boolean {
  if (g.severity !== 'rollback' || g.verdict === 'pass') return false;
  return !(g.name === 'cross_tenant_attempts' && g.verdict === 'insufficient_data');
}

/** Judges every guardrail of the plan, and compares the candidate with stable. */
export function analyze(input: AnalysisInput): Report {
  const { plan, candidate, stable } = input;
  const g = plan.guardrails;
  const min = plan.minSamples;
  const results: GuardrailResult[] = [];
  const finish = (name: GuardrailName, verdict: 'pass' | 'fail' | 'insufficient_data', rest: Omit<GuardrailResult, 'name' | 'severity' | 'threshold' | 'verdict'>) => {
    const spec = g[name];
    results.push({ name, severity: spec.severity, threshold: spec.threshold, verdict: verdict === 'fail' && spec.severity === 'warn' ? 'warn' : verdict, ...rest });
  };

  for (const [name, pick] of [
    ['ttfv_p95', (d: Delta) => d.ttfv],
    ['ann_p95', (d: Delta) => d.ann],
  ] as const) {
    const t = g[name].threshold;
    const h = pick(candidate.stage);
    const stageV = latencyVerdict(h, t, min);
    const windowV = candidate.window ? latencyVerdict(pick(candidate.window), t, min) : 'insufficient_data';
    const verdict = worse(stageV, windowV);
    finish(name, verdict, {
      unit: 'seconds',
      value: p95(h),
      windowValue: candidate.window ? p95(pick(candidate.window)) : null,
      stable: stable ? p95(pick(stable)) : null,
      samples: h.count,
      why:
        verdict === 'fail'
          ? `p95 ${stageV === 'fail' ? 'over the stage' : 'over the last interval'} is at or above ${t} s${h.count < min ? ` even counting ${min - h.count} more fast ones` : ''}`
          : verdict === 'pass'
            ? `p95 under ${t} s on ${h.count} samples`
            : `${h.count} of ${min} samples`,
    });
  }

  {
    const t = g.sse_success.threshold;
    const s = candidate.stage.sse;
    const stageV = successVerdict(s.success, s.error, t, min);
    const w = candidate.window?.sse;
    const windowV = w ? successVerdict(w.success, w.error, t, min) : 'insufficient_data';
    const verdict = worse(stageV, windowV);
    const ratio = (x: { success: number; error: number } | undefined) => (x && x.success + x.error > 0 ? round(x.success / (x.success + x.error), 5) : null);
    const n = s.success + s.error;
    finish('sse_success', verdict, {
      unit: 'ratio',
      value: ratio(s),
      windowValue: ratio(w),
      stable: stable ? ratio(stable.sse) : null,
      samples: n,
      why:
        verdict === 'fail'
          ? `${s.error} failed of ${n} streams (client aborts excluded: ${s.client_abort}); no sample up to ${Math.max(n, min, resolvableSample(t))} could reach ${t}`
          : verdict === 'pass'
            ? `${s.error} failed of ${n} streams`
            : `${s.error} failed of ${n} streams: not enough to judge ${t}`,
    });
  }

  // Zero tolerance, for what only a bad release causes: every event since the controller began
  // watching the candidate counts, the first one rolls back.
  for (const [name, pick, what] of [
    ['rls_errors', (d: Delta) => d.rlsErrors, 'RLS error(s)'],
    ['scope_violations', (d: Delta) => d.scopeViolations, 'row(s) of another tenant or user about to be served'],
  ] as const) {
    const t = g[name].threshold;
    const seen = pick(candidate.watch);
    if (seen === null) {
      finish(name, 'insufficient_data', {
        unit: 'count',
        value: null,
        windowValue: null,
        stable: stable ? pick(stable) : null,
        samples: 0,
        why: 'the candidate does not export relay_scope_violations_total: it cannot be judged (an older release?)',
      });
      continue;
    }
    finish(name, seen > t ? 'fail' : 'pass', {
      unit: 'count',
      value: seen,
      windowValue: candidate.window ? pick(candidate.window) : null,
      stable: stable ? pick(stable) : null,
      samples: seen,
      why: seen > t ? `${seen} ${what} on the candidate since it was first watched (allowed: ${t})` : `no more than ${t} ${what}`,
    });
  }

  finish('cross_tenant_attempts', ...attemptsVerdict(g.cross_tenant_attempts, min, candidate.stage, candidate.window, stable));

  {
    const t = g.pool_utilization.threshold;
    const v = candidate.stage.poolUtilization;
    finish('pool_utilization', v > t ? 'fail' : 'pass', {
      unit: 'ratio',
      value: round(v),
      windowValue: candidate.window ? round(candidate.window.poolUtilization) : null,
      stable: stable ? round(stable.poolUtilization) : null,
      samples: 1,
      why: v > t ? `${round(v)} busy, above ${t}` : `${round(v)} busy`,
    });
  }

  const comparisons: Comparison[] = (['ttfv_p95', 'ann_p95'] as const).map((metric) => {
    const pick = (d: Delta) => (metric === 'ttfv_p95' ? d.ttfv : d.ann);
    const c = pick(candidate.stage);
    const s = stable ? pick(stable) : null;
    const cv = p95(c);
    const sv = s ? p95(s) : null;
    if (!s || c.count < min || s.count < min || cv === null || sv === null || sv <= 0) return { metric, candidate: cv, stable: sv, ratio: null, verdict: 'insufficient_data' };
    const ratio = round(cv / sv, 2)!;
    return { metric, candidate: cv, stable: sv, ratio, verdict: ratio >= plan.slowerFactor ? 'warn' : 'pass' };
  });

  const warnings = [
    ...results.filter((r) => r.verdict === 'warn').map((r) => `${r.name}: ${r.why}`),
    ...comparisons.filter((c) => c.verdict === 'warn').map((c) => `${c.metric}: the candidate is ${c.ratio}× slower than stable (${c.candidate} s vs ${c.stable} s)`),
  ];
  if (!stable) warnings.push('stable could not be read: no comparison');
  const breaches = results.filter((r) => r.severity === 'rollback' && r.verdict === 'fail');
  return {
    at: (input.now ?? new Date()).toISOString(),
    guardrails: results,
    comparisons,
    breaches,
    warnings,
    promotable: breaches.length === 0 && !results.some(holdsPromotion),
  };
}

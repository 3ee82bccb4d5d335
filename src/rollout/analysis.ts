import type { GuardrailName, Plan, Severity } from './plan.ts';
import type { Delta, Histogram } from './snapshot.ts';

/**
 * `pass` and `fail` need a big enough sample (a `fail` before that only when no run of good
 * samples up to the minimum could rescue it); `warn` is a failed warning guardrail.
 */
export type Verdict = 'pass' | 'fail' | 'warn' | 'insufficient_data';

export interface GuardrailResult {
  name: GuardrailName;
  severity: Severity;
  threshold: number;
  /** The candidate over the stage so far (latencies in seconds, ratios 0..1, counts). */
  value: number | null;
  /** The candidate over the last interval. */
  windowValue: number | null;
  /** Stable over the same span as `value`. */
  stable: number | null;
  /** Streams, searches or events the value stands on. */
  samples: number;
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
  /** Every rollback-severity guardrail passed on a big enough sample. */
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

  for (const [name, pick] of [
    ['rls_errors', (d: Delta) => d.rlsErrors],
    ['cross_tenant', (d: Delta) => d.crossTenant],
  ] as const) {
    const t = g[name].threshold;
    // Zero tolerance: every event since the controller began watching the candidate counts.
    const seen = pick(candidate.watch);
    finish(name, seen > t ? 'fail' : 'pass', {
      value: seen,
      windowValue: candidate.window ? pick(candidate.window) : null,
      stable: stable ? pick(stable) : null,
      samples: seen,
      why: seen > t ? `${seen} event(s) on the candidate since it was first watched (allowed: ${t})` : `no more than ${t} event(s)`,
    });
  }

  {
    const t = g.pool_utilization.threshold;
    const v = candidate.stage.poolUtilization;
    finish('pool_utilization', v > t ? 'fail' : 'pass', {
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
    promotable: breaches.length === 0 && results.filter((r) => r.severity === 'rollback').every((r) => r.verdict === 'pass'),
  };
}

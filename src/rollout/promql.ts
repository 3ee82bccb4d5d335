import { resolvableSample } from './analysis.ts';
import { DEFAULT_GUARDRAILS, type GuardrailName, type GuardrailSpec, type Severity } from './plan.ts';

/**
 * The R1 guardrails as PromQL: the one place the Prometheus rules, the Argo Rollouts
 * AnalysisTemplate and the Grafana dashboard (src/deploy/) take their queries from.
 *
 * Each guardrail is one expression whose value is the number the guardrail judges, and which
 * is *empty* (no series) when the canary's own analysis (analysis.ts) would say
 * insufficient_data: the minimum-sample guards are written in PromQL, so no traffic is
 * inconclusive, never a pass. A present value passes or fails on its threshold alone
 * (`GuardrailPromQL.fails`), exactly where analyze() passes or fails it on the same counts:
 * - latencies: the p95 of the buckets padded with (min_samples − count) fastest observations
 *   (the analysis' best case), present when it is already at or over the threshold, or when
 *   the sample is complete and it is under;
 * - sse_success: 1 − errors / max(streams, min_samples, the sample that can absorb one
 *   failure) when that is already under the threshold, or the observed ratio once complete;
 * - rls_errors, scope_violations: the count (zero tolerance: any traffic, even none, judges);
 * - cross_tenant_attempts: refused requests over factor × the other side's per-request rate
 *   (stable in a rollout; the rest of the fleet in the rules), when both have min_samples requests;
 * - pool_utilization: the busiest instance's pool, now.
 */

/** The routes whose requests are the denominator of the per-request rates (not /metrics, /healthz, …). */
export const API_ROUTE_MATCHER = 'route=~"/api/.*"';

const quote = (release: string) => release.replace(/["\\]/g, '\\$&');

export interface PromQLOptions {
  /**
   * `increase()`/`rate()` window, e.g. `5m`. Omitted: the counters' whole lifetime (the raw
   * cumulative values, as the canary's reads since a process began).
   */
  range?: string;
  /** Judge only this release (`relay_build_info{release}`); omitted: every release, by `release`. */
  release?: string;
  /** Streams, searches or API requests a guardrail needs before it can pass. Default 50 (the plan's). */
  minSamples?: number;
  /** Thresholds and severities. Default the plan's (DEFAULT_GUARDRAILS). */
  guardrails?: Record<GuardrailName, GuardrailSpec>;
}

/** How a present value is judged: it fails when `value <op> threshold` holds, else it passes. */
export interface Judgement {
  op: '>=' | '<' | '>';
  threshold: number;
}

export interface GuardrailPromQL {
  name: GuardrailName;
  severity: Severity;
  /** What the value is in. */
  unit: 'seconds' | 'ratio' | 'count';
  /** One series per release (`release` label), none while the guardrail cannot be judged. */
  expr: string;
  fails: Judgement;
  /** The value the expression yields, in words (docs and annotations). */
  meaning: string;
}

/** The passing side of `fails`, for a condition or an alert's opposite. */
export function passOp(j: Judgement): '<' | '>=' | '<=' {
  return j.op === '>=' ? '<' : j.op === '<' ? '>=' : '<=';
}

/** Whether a value fails (true), passes (false) under `j`. */
export function judge(j: Judgement, value: number): boolean {
  return j.op === '>=' ? value >= j.threshold : j.op === '<' ? value < j.threshold : value > j.threshold;
}

class Builder {
  readonly min: number;
  readonly g: Record<GuardrailName, GuardrailSpec>;
  constructor(readonly opts: PromQLOptions) {
    this.min = opts.minSamples ?? 50;
    this.g = opts.guardrails ?? DEFAULT_GUARDRAILS;
  }
  /** The release's label (and only it) on every series of its instances, summed over them. */
  private info(release = this.opts.release) {
    return release === undefined ? 'relay_build_info' : `relay_build_info{release="${quote(release)}"}`;
  }
  private counter(series: string) {
    return this.opts.range ? `increase(${series}[${this.opts.range}])` : series;
  }
  /** `sum by (release, …extra)` of a counter over each release's instances. */
  sum(series: string, extra = '', release?: string) {
    return `sum by (release${extra ? `, ${extra}` : ''}) (${this.counter(series)} * on (instance, job) group_left (release) ${this.info(release)})`;
  }
  /** The same, without the release label (to compare two releases). */
  total(series: string, release: string) {
    return `sum(${this.counter(series)} and on (instance, job) ${this.info(release)})`;
  }
  latency(name: 'ttfv_p95' | 'ann_p95', histogram: string): GuardrailPromQL {
    const t = this.g[name].threshold;
    const count = this.sum(`${histogram}_count`);
    const padded = `histogram_quantile(0.95, ${this.sum(`${histogram}_bucket`, 'le')} + on (release) group_left () clamp_min(${this.min} - ${count}, 0))`;
    return {
      name,
      severity: this.g[name].severity,
      unit: 'seconds',
      expr: `(${padded} >= ${t}) or ((${padded} < ${t}) and (${count} >= ${this.min}))`,
      fails: { op: '>=', threshold: t },
      meaning: `p95 (s), padded with fast samples up to ${this.min}; empty until it fails or ${this.min} samples pass`,
    };
  }
  sse(): GuardrailPromQL {
    const t = this.g.sse_success.threshold;
    const ok = this.sum('relay_sse_streams_total{outcome="success"}');
    const failed = this.sum('relay_sse_streams_total{outcome="error"}');
    const n = `(${ok} + ${failed})`;
    const judgedOn = Math.max(this.min, Math.min(resolvableSample(t), Number.MAX_SAFE_INTEGER));
    const best = `(1 - ${failed} / clamp_min(${n}, ${judgedOn}))`;
    return {
      name: 'sse_success',
      severity: this.g.sse_success.severity,
      unit: 'ratio',
      expr: `(${best} < ${t}) or ((${ok} / ${n} >= ${t}) and (${n} >= ${this.min}))`,
      fails: { op: '<', threshold: t },
      meaning: `streams that succeeded (client aborts excluded); empty until the failures are too many for ${judgedOn} streams or ${this.min} streams pass`,
    };
  }
  zero(name: 'rls_errors' | 'scope_violations', counter: string): GuardrailPromQL {
    return {
      name,
      severity: this.g[name].severity,
      unit: 'count',
      expr: this.sum(counter),
      fails: { op: '>', threshold: this.g[name].threshold },
      meaning: 'events (zero tolerance: judged on any traffic, none included)',
    };
  }
  /** By release: each against the rest of the fleet (in a rollout, stable). */
  attemptsVsRest(): GuardrailPromQL {
    const spec = this.g.cross_tenant_attempts;
    const a = this.sum('relay_cross_tenant_attempts_total');
    const n = this.sum(`relay_http_requests_total{${API_ROUTE_MATCHER}}`);
    const restA = `(scalar(sum(${a})) - ${a})`;
    const restN = `(scalar(sum(${n})) - ${n})`;
    const excess = `(${a} - ${spec.threshold} * (${restA} / ${restN}) * ${n})`;
    return {
      name: 'cross_tenant_attempts',
      severity: spec.severity,
      unit: 'count',
      expr: `${excess} and (${n} >= ${this.min}) and (${restN} >= ${this.min})`,
      fails: { op: '>=', threshold: spec.minCount ?? 20 },
      meaning: `refused requests over ${spec.threshold}× the other releases' per-request rate; empty until both have ${this.min} API requests`,
    };
  }
  pool(): GuardrailPromQL {
    return {
      name: 'pool_utilization',
      severity: this.g.pool_utilization.severity,
      unit: 'ratio',
      expr: `max by (release) (relay_db_pool_utilization * on (instance, job) group_left (release) ${this.info()})`,
      fails: { op: '>', threshold: this.g.pool_utilization.threshold },
      meaning: "the busiest instance's share of its pool in use, now",
    };
  }
}

/** The order every generated file lists the guardrails in. */
export const GUARDRAIL_ORDER: readonly GuardrailName[] = ['ttfv_p95', 'rls_errors', 'scope_violations', 'sse_success', 'cross_tenant_attempts', 'ann_p95', 'pool_utilization'];

/**
 * Every guardrail by release (`release` label), each release's cross_tenant_attempts against
 * the rest of the fleet: for recording rules and dashboards. With `opts.release`, one release.
 */
export function guardrailsByRelease(opts: PromQLOptions = {}): GuardrailPromQL[] {
  const b = new Builder(opts);
  const all: Record<GuardrailName, GuardrailPromQL> = {
    ttfv_p95: b.latency('ttfv_p95', 'relay_ttfv_seconds'),
    rls_errors: b.zero('rls_errors', 'relay_rls_errors_total'),
    scope_violations: b.zero('scope_violations', 'relay_scope_violations_total'),
    sse_success: b.sse(),
    cross_tenant_attempts: b.attemptsVsRest(),
    ann_p95: b.latency('ann_p95', 'relay_ann_query_seconds'),
    pool_utilization: b.pool(),
  };
  return GUARDRAIL_ORDER.map((n) => all[n]);
}

/**
 * Every guardrail of one candidate, cross_tenant_attempts against `stable` (as the controller
 * judges it): for an Argo Rollouts AnalysisTemplate. One series (or none) per query.
 */
export function guardrailsOfCandidate(releases: { candidate: string; stable: string }, opts: Omit<PromQLOptions, 'release'> = {}): GuardrailPromQL[] {
  const b = new Builder({ ...opts, release: releases.candidate });
  return guardrailsByRelease({ ...opts, release: releases.candidate }).map((g) => {
    if (g.name !== 'cross_tenant_attempts') return g;
    const requests = `relay_http_requests_total{${API_ROUTE_MATCHER}}`;
    const nc = b.total(requests, releases.candidate);
    const ns = b.total(requests, releases.stable);
    return { ...g, expr: `(${attemptsExcessPromQL(releases, b.g.cross_tenant_attempts.threshold, opts.range)}) and on () (${nc} >= ${b.min}) and on () (${ns} >= ${b.min})`, meaning: `refused requests over ${b.g.cross_tenant_attempts.threshold}× stable's per-request rate; empty until both have ${b.min} API requests` };
  });
}

/**
 * The cross_tenant_attempts rule (analysis.ts' attemptsVerdict) as one PromQL expression: the
 * candidate's refused requests minus `factor` × stable's per-request rate × the candidate's API
 * requests, each summed over every instance of its release. The rule fails when the result is
 * ≥ min_count (and both sides have min_samples requests). Over `range` (e.g. `1h`) with
 * increase(); without it, over the counters' lifetime.
 */
export function attemptsExcessPromQL(releases: { candidate: string; stable: string }, factor: number, range?: string): string {
  const b = new Builder(range ? { range } : {});
  const attempts = (side: 'candidate' | 'stable') => b.total('relay_cross_tenant_attempts_total', releases[side]);
  const requests = (side: 'candidate' | 'stable') => b.total(`relay_http_requests_total{${API_ROUTE_MATCHER}}`, releases[side]);
  return `${attempts('candidate')} - ${factor} * (${attempts('stable')} / ${requests('stable')}) * ${requests('candidate')}`;
}

/** Throughput and errors by release, for the dashboard and its recording rules. */
export function trafficByRelease(range: string): { requests: string; errors: string } {
  const rate = (series: string) => `sum by (release) (rate(${series}[${range}]) * on (instance, job) group_left (release) relay_build_info)`;
  return { requests: rate(`relay_http_requests_total{${API_ROUTE_MATCHER}}`), errors: rate(`relay_http_requests_total{${API_ROUTE_MATCHER},status=~"5.."}`) };
}

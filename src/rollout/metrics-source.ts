import parsePrometheusTextFormat, { type PromFamily } from 'parse-prometheus-text-format';
import { API_ROUTE_MATCHER } from './promql.ts';
import type { Histogram, Snapshot } from './snapshot.ts';

/** Which side of the rollout. */
export type Side = 'stable' | 'candidate';

/** Where the controller reads each release's cumulative guardrail metrics. */
export interface MetricsSource {
  readonly kind: 'scrape' | 'prometheus';
  /** Rejects when the source does not answer or lacks the release: a blind read is an error. */
  read(side: Side): Promise<Snapshot>;
}

export class MetricsSourceError extends Error {
  override readonly name = 'MetricsSourceError';
}

async function fetchText(url: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new MetricsSourceError(`${url}: ${(err as Error).message}`);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new MetricsSourceError(`${url}: HTTP ${res.status}`);
  }
  return res.text();
}

/** The routes whose requests are the denominator of the per-request rates (not /metrics, /healthz, …). */
const API_ROUTE = /^\/api\//;
/** The same in PromQL. */
export { API_ROUTE_MATCHER };

const num = (v: string | undefined) => (v === undefined ? 0 : v === '+Inf' ? Infinity : Number(v));

/** Reads one release's snapshot out of Prometheus text (`/metrics/memory`). */
export function snapshotFromText(text: string, at = Date.now()): Snapshot {
  const families = new Map<string, PromFamily>(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  const need = (name: string) => {
    const f = families.get(name);
    if (!f) throw new MetricsSourceError(`no ${name} in the exposition: is this a relay serve?`);
    return f;
  };
  const histogram = (name: string): Histogram => {
    const m = need(name).metrics[0];
    if (!m?.buckets) return { buckets: [], count: 0, sum: 0 };
    const buckets = Object.entries(m.buckets).map(([le, n]) => [num(le), num(n)] as [number, number]);
    buckets.sort((a, b) => a[0] - b[0]);
    return { buckets, count: num(m.count), sum: num(m.sum) };
  };
  const counter = (name: string, labels: Record<string, string | RegExp> = {}) =>
    need(name)
      .metrics.filter((m) => Object.entries(labels).every(([k, v]) => (typeof v === 'string' ? m.labels?.[k] === v : v.test(m.labels?.[k] ?? ''))))
      .reduce((s, m) => s + num(m.value), 0);
  return {
    at,
    release: families.get('relay_build_info')?.metrics[0]?.labels?.release ?? null,
    ttfv: histogram('relay_ttfv_seconds'),
    ann: histogram('relay_ann_query_seconds'),
    sse: {
      success: counter('relay_sse_streams_total', { outcome: 'success' }),
      error: counter('relay_sse_streams_total', { outcome: 'error' }),
      client_abort: counter('relay_sse_streams_total', { outcome: 'client_abort' }),
    },
    rlsErrors: counter('relay_rls_errors_total'),
    crossTenant: counter('relay_cross_tenant_attempts_total'),
    // An older release has no row check: null, which the analysis reports instead of a silent 0.
    scopeViolations: families.has('relay_scope_violations_total') ? counter('relay_scope_violations_total') : null,
    requests: families.has('relay_http_requests_total') ? counter('relay_http_requests_total', { route: API_ROUTE }) : 0,
    poolUtilization: counter('relay_db_pool_utilization'),
  };
}

export interface ScrapeSourceOptions {
  urls: Record<Side, string>;
  /** RELAY_METRICS_TOKEN of the services, when they guard /metrics/memory. */
  metricsToken?: string;
  timeoutMs?: number;
}

/** `--metrics-source scrape` (default): GET each release's `/metrics/memory` directly. */
export function scrapeSource(opts: ScrapeSourceOptions): MetricsSource {
  const headers: Record<string, string> = opts.metricsToken ? { authorization: `Bearer ${opts.metricsToken}` } : {};
  return {
    kind: 'scrape',
    async read(side) {
      const text = await fetchText(new URL('/metrics/memory', opts.urls[side]).href, opts.timeoutMs ?? 5000, headers);
      return snapshotFromText(text);
    },
  };
}

export interface PrometheusSourceOptions {
  /** Prometheus' base URL, e.g. http://127.0.0.1:9090. */
  url: string;
  /** `relay_build_info{release}` of each side: every series of an instance of that release is summed. */
  releases: Record<Side, string>;
  timeoutMs?: number;
}

interface PromVector {
  status: string;
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

/**
 * `--metrics-source prometheus=URL`: the same cumulative series, summed over every instance of a
 * release (joined on `relay_build_info{release}`), through Prometheus' instant-query API. The
 * controller takes the deltas itself, exactly as with a direct scrape.
 */
export function prometheusSource(opts: PrometheusSourceOptions): MetricsSource {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const query = async (q: string): Promise<PromVector['data'] & object> => {
    const text = await fetchText(`${opts.url.replace(/\/$/, '')}/api/v1/query?query=${encodeURIComponent(q)}`, timeoutMs);
    const body = JSON.parse(text) as PromVector;
    if (body.status !== 'success' || !body.data) throw new MetricsSourceError(`prometheus: ${body.error ?? body.status}`);
    return body.data;
  };
  return {
    kind: 'prometheus',
    async read(side) {
      const release = opts.releases[side].replace(/["\\]/g, '\\$&');
      const of = (series: string) => `(${series} and on (instance, job) relay_build_info{release="${release}"})`;
      const scalar = async (q: string) => {
        const r = (await query(q)).result;
        return r.length === 0 ? 0 : Number(r[0]!.value[1]);
      };
      const histogram = async (name: string): Promise<Histogram> => {
        const [buckets, count, sum] = await Promise.all([
          query(`sum by (le) ${of(`${name}_bucket`)}`),
          scalar(`sum ${of(`${name}_count`)}`),
          scalar(`sum ${of(`${name}_sum`)}`),
        ]);
        const b = buckets.result.map((r) => [num(r.metric.le), Number(r.value[1])] as [number, number]).sort((x, y) => x[0] - y[0]);
        return { buckets: b, count, sum };
      };
      const at = Date.now();
      const info = await query(`count(relay_build_info{release="${release}"})`);
      if (info.result.length === 0) throw new MetricsSourceError(`prometheus has no relay_build_info{release="${opts.releases[side]}"}: is it scraping the ${side} release?`);
      const [ttfv, ann, success, error, clientAbort, rlsErrors, crossTenant, pool, requests, violations] = await Promise.all([
        histogram('relay_ttfv_seconds'),
        histogram('relay_ann_query_seconds'),
        scalar(`sum ${of('relay_sse_streams_total{outcome="success"}')}`),
        scalar(`sum ${of('relay_sse_streams_total{outcome="error"}')}`),
        scalar(`sum ${of('relay_sse_streams_total{outcome="client_abort"}')}`),
        scalar(`sum ${of('relay_rls_errors_total')}`),
        scalar(`sum ${of('relay_cross_tenant_attempts_total')}`),
        scalar(`max ${of('relay_db_pool_utilization')}`),
        scalar(`sum ${of(`relay_http_requests_total{${API_ROUTE_MATCHER}}`)}`),
        query(`sum ${of('relay_scope_violations_total')}`),
      ]);
      // An empty answer: no instance of the release exports the counter (an older release).
      const scopeViolations = violations.result.length === 0 ? null : Number(violations.result[0]!.value[1]);
      return { at, release: opts.releases[side], ttfv, ann, sse: { success, error, client_abort: clientAbort }, rlsErrors, crossTenant, scopeViolations, requests, poolUtilization: pool };
    },
  };
}

// The cross_tenant_attempts rule in PromQL lives with the other guardrails' (promql.ts).
export { attemptsExcessPromQL } from './promql.ts';

/** `scrape` or `prometheus=URL` → a source; the Prometheus one needs the release names. */
export function parseMetricsSourceSpec(spec: string): { kind: 'scrape' } | { kind: 'prometheus'; url: string } {
  if (spec === 'scrape') return { kind: 'scrape' };
  const m = /^prometheus=(https?:\/\/.+)$/.exec(spec);
  if (m) return { kind: 'prometheus', url: m[1]! };
  throw new MetricsSourceError(`--metrics-source must be scrape or prometheus=URL, got ${JSON.stringify(spec)}`);
}

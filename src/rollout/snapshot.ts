/** A cumulative Prometheus histogram: `[upper bound, cumulative count]` ascending, `+Inf` last. */
export interface Histogram {
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
}

/** What the controller reads of one release at one moment: cumulative counters, one gauge. */
export interface Snapshot {
  /** ms since the epoch, when it was read. */
  at: number;
  /** relay_build_info{release}, when the source tells it. */
  release: string | null;
  ttfv: Histogram;
  ann: Histogram;
  sse: { success: number; error: number; client_abort: number };
  rlsErrors: number;
  /** relay_cross_tenant_attempts_total: requests refused for reaching outside their token's scope (a client signal). */
  crossTenant: number;
  /** relay_scope_violations_total: rows dropped for another tenant or user (only a bad release); null when the release does not export it. */
  scopeViolations: number | null;
  /** relay_http_requests_total over the API routes (`/api/…`): the denominator of the per-request rates. */
  requests: number;
  poolUtilization: number;
}

export const emptyHistogram = (): Histogram => ({ buckets: [], count: 0, sum: 0 });

/** A counter's increase from `base` to `cur`; a counter that went down was reset (a restart), so all of `cur` is new. */
export function increase(cur: number, base: number): number {
  return cur >= base ? cur - base : cur;
}

/** The histogram of observations made between `base` and `cur` (a reset of the count means a restart). */
export function histogramIncrease(cur: Histogram, base: Histogram): Histogram {
  if (cur.count < base.count) return cur;
  const baseAt = new Map(base.buckets);
  return {
    buckets: cur.buckets.map(([le, n]) => [le, Math.max(0, n - (baseAt.get(le) ?? 0))]),
    count: cur.count - base.count,
    sum: cur.sum - base.sum,
  };
}

/** The observations (and counter increases) between two snapshots of one release. */
export interface Delta {
  ttfv: Histogram;
  ann: Histogram;
  sse: { success: number; error: number; client_abort: number };
  rlsErrors: number;
  crossTenant: number;
  /** null when either snapshot lacks the counter (a release without the check). */
  scopeViolations: number | null;
  requests: number;
  /** The gauge's value at the later snapshot. */
  poolUtilization: number;
  seconds: number;
}

export function deltaOf(cur: Snapshot, base: Snapshot): Delta {
  const sseReset = cur.sse.success + cur.sse.error + cur.sse.client_abort < base.sse.success + base.sse.error + base.sse.client_abort;
  return {
    ttfv: histogramIncrease(cur.ttfv, base.ttfv),
    ann: histogramIncrease(cur.ann, base.ann),
    sse: sseReset
      ? { ...cur.sse }
      : { success: increase(cur.sse.success, base.sse.success), error: increase(cur.sse.error, base.sse.error), client_abort: increase(cur.sse.client_abort, base.sse.client_abort) },
    rlsErrors: increase(cur.rlsErrors, base.rlsErrors),
    crossTenant: increase(cur.crossTenant, base.crossTenant),
    scopeViolations: typeof cur.scopeViolations === 'number' && typeof base.scopeViolations === 'number' ? increase(cur.scopeViolations, base.scopeViolations) : null,
    // A state saved before requests were read has none: its first delta counts from 0.
    requests: increase(cur.requests, base.requests ?? 0),
    poolUtilization: cur.poolUtilization,
    seconds: Math.max(0, (cur.at - base.at) / 1000),
  };
}

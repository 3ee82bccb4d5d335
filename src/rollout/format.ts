import type { GuardrailResult, Report, Unit } from './analysis.ts';

/** One guardrail as the status tables show it (`relay canary status` and the page): every number with its unit. */
export interface GuardrailRow {
  name: string;
  candidate: string;
  lastInterval: string;
  stable: string;
  threshold: string;
  samples: string;
  verdict: GuardrailResult['verdict'];
  why: string;
}

const trim = (s: string) => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);

/** A value in its unit: `12.3 ms`, `1.52 s`, `99.62%`, `3`, `4.5 per 1k req`; `–` when there is none. */
export function formatValue(v: number | null | undefined, unit: Unit): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  switch (unit) {
    case 'seconds':
      return v < 1 ? `${trim((v * 1000).toFixed(1))} ms` : `${trim(v.toFixed(2))} s`;
    case 'ratio':
      return `${trim((v * 100).toFixed(2))}%`;
    case 'per_request':
      return `${trim((v * 1000).toFixed(2))} per 1k req`;
    case 'count':
      return String(v);
  }
}

function threshold(g: GuardrailResult): string {
  const warn = g.severity === 'warn' ? 'warn ' : '';
  switch (g.name) {
    case 'ttfv_p95':
    case 'ann_p95':
      return `${warn}< ${formatValue(g.threshold, 'seconds')}`;
    case 'sse_success':
      return `${warn}≥ ${formatValue(g.threshold, 'ratio')}`;
    case 'pool_utilization':
      return `${warn}≤ ${formatValue(g.threshold, 'ratio')}`;
    case 'rls_errors':
    case 'scope_violations':
      return `${warn}≤ ${g.threshold} events`;
    case 'cross_tenant_attempts':
      return `${warn}≤ ${g.threshold}× stable's rate`;
  }
}

function samples(g: GuardrailResult): string {
  switch (g.name) {
    case 'ttfv_p95':
    case 'sse_success':
      return `${g.samples} streams`;
    case 'ann_p95':
      return `${g.samples} searches`;
    case 'rls_errors':
    case 'scope_violations':
      return `${g.samples} events`;
    case 'cross_tenant_attempts':
      return `${g.samples} req`;
    case 'pool_utilization':
      return '1 read';
  }
}

/** The candidate's or stable's rate with the refused requests it stands on: `4.5 per 1k req (9 refused)`. */
function withCount(v: string, n: number | null | undefined): string {
  return n === null || n === undefined ? v : `${v} (${n} refused)`;
}

export function guardrailRows(report: Report | null): GuardrailRow[] {
  return (report?.guardrails ?? []).map((g) => {
    // A report saved by an older controller has no unit: plain numbers, as it had.
    const unit = (g as Partial<GuardrailResult>).unit;
    const f = (v: number | null) => (unit ? formatValue(v, unit) : v === null ? '–' : String(v));
    const attempts = g.name === 'cross_tenant_attempts';
    return {
      name: g.name,
      candidate: attempts ? withCount(f(g.value), g.counts?.candidate) : f(g.value),
      lastInterval: f(g.windowValue),
      stable: attempts ? withCount(f(g.stable), g.counts?.stable) : f(g.stable),
      threshold: unit ? threshold(g) : `${g.severity === 'warn' ? 'warn ' : ''}${g.threshold}`,
      samples: unit ? samples(g) : String(g.samples),
      verdict: g.verdict,
      why: g.why,
    };
  });
}

/** The guardrail table as fixed-width text, header first. */
export function guardrailTable(report: Report | null): string[] {
  const rows = guardrailRows(report);
  const head = ['guardrail', 'candidate (stage)', 'last interval', 'stable', 'threshold', 'samples', 'verdict'];
  const cells = rows.map((r) => [r.name, r.candidate, r.lastInterval, r.stable, r.threshold, r.samples, r.verdict]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]! + 2))).join('');
  return [line(head), ...cells.map(line)];
}

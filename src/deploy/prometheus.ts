import { guardrailsByRelease, passOp, trafficByRelease, type GuardrailName, type GuardrailPromQL } from '../rollout/index.ts';

/** The window every recording rule, alert and dashboard panel judges over. */
export const WINDOW = '5m';

export interface AlertSpec {
  alert: string;
  guardrail: GuardrailName;
  /** `for:` — zero-tolerance guardrails fire at once, ratios and latencies once sustained. */
  for: string;
  severity: 'critical' | 'warning';
  summary: string;
}

/** One alert per guardrail, in GUARDRAIL_ORDER. Names are the runbook anchors in docs/operations.md. */
export const ALERTS: Record<GuardrailName, Omit<AlertSpec, 'guardrail' | 'severity'>> = {
  ttfv_p95: { alert: 'RelayTtfvP95High', for: '5m', summary: 'time to first value p95 at or over the R1 limit' },
  rls_errors: { alert: 'RelayRlsErrors', for: '0m', summary: 'the database refused a statement by row-level security' },
  scope_violations: { alert: 'RelayScopeViolations', for: '0m', summary: 'a row of another tenant or user was about to be served' },
  sse_success: { alert: 'RelaySseSuccessLow', for: '5m', summary: 'query streams failing above the R1 limit' },
  cross_tenant_attempts: { alert: 'RelayCrossTenantAttemptsHigh', for: '5m', summary: "refused cross-tenant requests clearly above the other releases' rate" },
  ann_p95: { alert: 'RelayAnnP95High', for: '10m', summary: 'vector search p95 over its R1 warning level' },
  pool_utilization: { alert: 'RelayPoolUtilizationHigh', for: '10m', summary: 'database pool busier than its R1 warning level' },
};

/** docs/operations.md's anchor for an alert (GitHub's heading slug of `### <alert>`). */
export const runbookUrl = (alert: string) => `docs/operations.md#${alert.toLowerCase()}`;

/** The recorded series of a guardrail, by release. */
export function recordName(g: Pick<GuardrailPromQL, 'name' | 'unit'>): string {
  const unit = g.unit === 'seconds' ? '_seconds' : g.unit === 'ratio' ? '_ratio' : '';
  return `release:relay_guardrail_${g.name}${unit}:${g.name === 'pool_utilization' ? 'max' : WINDOW}`;
}

export const TRAFFIC_RECORDS = { requests: `release:relay_api_requests:rate${WINDOW}`, errors: `release:relay_api_errors:rate${WINDOW}` } as const;

export interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RuleFile {
  groups: Array<{ name: string; rules: Rule[] }>;
}

/** deploy/prometheus/relay-rules.yml. */
export function relayRules(): RuleFile {
  const guardrails = guardrailsByRelease({ range: WINDOW });
  const traffic = trafficByRelease(WINDOW);
  return {
    groups: [
      {
        name: 'relay-guardrails',
        rules: [
          ...guardrails.map((g) => ({ record: recordName(g), expr: g.expr })),
          { record: TRAFFIC_RECORDS.requests, expr: traffic.requests },
          { record: TRAFFIC_RECORDS.errors, expr: traffic.errors },
        ],
      },
      {
        name: 'relay-guardrail-alerts',
        rules: guardrails.map((g) => {
          const a = ALERTS[g.name];
          const severity = g.severity === 'rollback' ? 'critical' : 'warning';
          return {
            alert: a.alert,
            expr: `${recordName(g)} ${g.fails.op} ${g.fails.threshold}`,
            for: a.for,
            // DESIGN.md: refused attempts always alert security, and a scope violation is a security incident.
            labels: { severity, guardrail: g.name, ...(g.name === 'cross_tenant_attempts' || g.name === 'scope_violations' ? { notify: 'security' } : {}) },
            annotations: {
              summary: `{{ $labels.release }}: ${a.summary}`,
              description: `R1 guardrail ${g.name} (${g.severity === 'rollback' ? 'a canary rolls back on it' : 'a warning'}): fails when ${g.fails.op} ${g.fails.threshold}, passes when ${passOp(g.fails)} ${g.fails.threshold}. The value: ${g.meaning}.`,
              runbook_url: runbookUrl(a.alert),
            },
          };
        }),
      },
    ],
  };
}

interface Series {
  series: string;
  values: string;
}

/**
 * deploy/prometheus/relay-rules.test.yml for `promtool test rules`: two releases on two
 * instances, `good` healthy on every guardrail and `bad` breaching every one; each alert must
 * fire for `bad` alone (so it fires on a breach and stays silent on a healthy series).
 */
export function relayRulesTests(): Record<string, unknown> {
  const steps = 'x40';
  const inst = { good: 'good:8080', bad: 'bad:8080' } as const;
  const s = (name: string, release: keyof typeof inst, labels: Record<string, string>, values: string): Series => {
    const all = { instance: inst[release], job: 'relay', ...labels };
    return { series: `${name}{${Object.entries(all).map(([k, v]) => `${k}="${v}"`).join(',')}}`, values };
  };
  const per = (release: keyof typeof inst, rate: number) => (rate === 0 ? `0${steps}` : `0+${rate}${steps}`);
  const histogram = (name: string, release: keyof typeof inst, slow: boolean): Series[] => [
    s(`${name}_bucket`, release, { le: '0.1' }, per(release, slow ? 0 : 10)),
    s(`${name}_bucket`, release, { le: '5' }, per(release, 10)),
    s(`${name}_bucket`, release, { le: '+Inf' }, per(release, 10)),
    s(`${name}_count`, release, {}, per(release, 10)),
  ];
  const input: Series[] = [];
  for (const release of ['good', 'bad'] as const) {
    const bad = release === 'bad';
    input.push(
      s('relay_build_info', release, { release, version: '1.0.0' }, `1${steps}`),
      ...histogram('relay_ttfv_seconds', release, bad),
      ...histogram('relay_ann_query_seconds', release, bad),
      s('relay_sse_streams_total', release, { outcome: 'success' }, per(release, 100)),
      s('relay_sse_streams_total', release, { outcome: 'error' }, per(release, bad ? 5 : 0)),
      s('relay_rls_errors_total', release, {}, per(release, bad ? 1 : 0)),
      s('relay_scope_violations_total', release, {}, per(release, bad ? 1 : 0)),
      s('relay_cross_tenant_attempts_total', release, {}, per(release, bad ? 10 : 0)),
      s('relay_http_requests_total', release, { route: '/api/v1/memory/query', status: '200' }, per(release, 100)),
      s('relay_db_pool_utilization', release, {}, `${bad ? 0.95 : 0.1}${steps}`),
    );
  }
  const rules = relayRules().groups[1]!.rules as Array<Rule & { alert: string; labels: Record<string, string>; annotations: Record<string, string> }>;
  return {
    rule_files: ['relay-rules.yml'],
    evaluation_interval: '30s',
    tests: [
      {
        interval: '30s',
        input_series: input,
        alert_rule_test: rules.map((r) => ({
          eval_time: '15m',
          alertname: r.alert,
          exp_alerts: [{ exp_labels: { ...r.labels, release: 'bad' }, exp_annotations: { ...r.annotations, summary: r.annotations.summary!.replace('{{ $labels.release }}', 'bad') } }],
        })),
      },
      {
        // No traffic at all: nothing fires (the latencies, ratios and rates are inconclusive, the zero-tolerance counts 0).
        interval: '30s',
        input_series: input.filter((i) => /relay_build_info|_count\{|_bucket\{|outcome="success"|outcome="error"|rls_errors|scope_violations/.test(i.series)).map((i) => ({ ...i, values: i.series.startsWith('relay_build_info') ? i.values : `0${steps}` })),
        alert_rule_test: rules.map((r) => ({ eval_time: '15m', alertname: r.alert, exp_alerts: [] })),
      },
    ],
  };
}

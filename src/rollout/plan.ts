import { isNode, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';

/** How a breach of a guardrail is answered. */
export type Severity = 'rollback' | 'warn';

export type GuardrailName = 'ttfv_p95' | 'rls_errors' | 'scope_violations' | 'sse_success' | 'cross_tenant_attempts' | 'ann_p95' | 'pool_utilization';

export interface GuardrailSpec {
  /**
   * Seconds for latencies, a ratio (0..1) for sse_success and pool_utilization, a count for the
   * zero-tolerance ones (rls_errors, scope_violations), and for cross_tenant_attempts the factor
   * over stable's per-request rate the candidate may reach.
   */
  threshold: number;
  severity: Severity;
  /** cross_tenant_attempts only: refused requests over the factor's allowance that make "clearly above". */
  minCount?: number;
}

export interface Hook {
  name: string;
  /** A shell command (`sh -c`), run from the controller's working directory. */
  run: string;
  timeoutMs: number;
}

export interface Stage {
  /** Share of users (percent, 0 < weight ≤ 100) sent to the candidate. */
  weight: number;
  /** Observed time the stage must pass before the next one. */
  windowMs: number;
}

/** A rollout plan, every default filled in. */
export interface Plan {
  stages: Stage[];
  /** How often the guardrails are judged. Default 30 s. */
  intervalMs: number;
  /** Streams (or searches) a ratio or latency guardrail needs in the stage before it can pass. Default 50. */
  minSamples: number;
  /** Consecutive failed reads of the candidate's metrics that roll back. Default 3. */
  maxSourceErrors: number;
  /** No retry after a rollback before this long (unless `retry --force`). Default 24 h. */
  cooldownMs: number;
  /** A candidate this many times slower (TTFV p95) than stable over the same window is a warning. Default 3. */
  slowerFactor: number;
  guardrails: Record<GuardrailName, GuardrailSpec>;
  hooks: { rollback: Hook[]; promote: Hook[] };
  /** `securityEveryMs`: at most one security alert (refused cross-tenant attempts) per this long. */
  alerts: { webhooks: string[]; timeoutMs: number; securityEveryMs: number };
}

export const DEFAULT_GUARDRAILS: Record<GuardrailName, GuardrailSpec> = {
  ttfv_p95: { threshold: 1.5, severity: 'rollback' },
  rls_errors: { threshold: 0, severity: 'rollback' },
  scope_violations: { threshold: 0, severity: 'rollback' },
  sse_success: { threshold: 0.996, severity: 'rollback' },
  cross_tenant_attempts: { threshold: 2, minCount: 20, severity: 'rollback' },
  ann_p95: { threshold: 0.25, severity: 'warn' },
  pool_utilization: { threshold: 0.85, severity: 'warn' },
};

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `250ms`, `30s`, `1h`, `1.5s`, or a bare number of seconds → milliseconds. */
export function parseDuration(value: string | number): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : null;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  return m ? Number(m[1]) * UNITS[m[2]!]! : null;
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: `must be a duration like 250ms, 30s, 1h (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  return ms;
});
const positiveDuration = duration.refine((ms) => ms > 0, 'must be longer than 0');

const guardrail = (kind: 'seconds' | 'ratio' | 'count') =>
  z
    .object({
      threshold: kind === 'seconds' ? duration.transform((ms) => ms / 1000) : kind === 'ratio' ? z.number().min(0).max(1) : z.number().int().min(0),
      severity: z.enum(['rollback', 'warn']),
    })
    .strict()
    .partial();

const relative = z
  .object({ threshold: z.number().min(1), min_count: z.number().int().min(1), severity: z.enum(['rollback', 'warn']) })
  .strict()
  .partial();

const hook = z
  .object({ name: z.string().min(1).optional(), run: z.string().min(1), timeout: positiveDuration.optional() })
  .strict();

const PlanSchema = z
  .object({
    stages: z
      .array(z.object({ weight: z.number().gt(0).max(100), window: positiveDuration }).strict())
      .min(1)
      .superRefine((stages, ctx) => {
        stages.forEach((s, i) => {
          if (i > 0 && s.weight <= stages[i - 1]!.weight) ctx.addIssue({ code: 'custom', path: [i, 'weight'], message: 'must be larger than the stage before (weights only rise)' });
        });
        if (stages.at(-1)!.weight !== 100) ctx.addIssue({ code: 'custom', path: [stages.length - 1, 'weight'], message: 'the last stage must send 100% to the candidate' });
      }),
    interval: positiveDuration,
    min_samples: z.number().int().min(1),
    max_source_errors: z.number().int().min(1),
    cooldown: duration,
    slower_factor: z.number().gt(1),
    guardrails: z
      .object({
        ttfv_p95: guardrail('seconds'),
        rls_errors: guardrail('count'),
        scope_violations: guardrail('count'),
        sse_success: guardrail('ratio'),
        cross_tenant_attempts: relative,
        // Renamed: refused attempts are judged against stable now, rows served outside the scope are zero-tolerance.
        cross_tenant: z
          .unknown()
          .refine(() => false, 'cross_tenant was split: cross_tenant_attempts (refused requests, judged against stable) and scope_violations (rows served outside the scope, zero tolerance)')
          .optional(),
        ann_p95: guardrail('seconds'),
        pool_utilization: guardrail('ratio'),
      })
      .strict()
      .partial(),
    hooks: z.object({ rollback: z.array(hook), promote: z.array(hook) }).strict().partial(),
    alerts: z.object({ webhooks: z.array(z.url({ protocol: /^https?$/ })), timeout: positiveDuration, security_every: duration }).strict().partial(),
  })
  .strict()
  .partial();

type RawPlan = z.infer<typeof PlanSchema>;

/** A plan file that cannot be used: `line` (1-based) and `field` (e.g. `stages[1].window`) name the fault. */
export class PlanError extends Error {
  override readonly name = 'PlanError';
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly field: string | null,
    readonly problem: string,
  ) {
    super(`${file}${line === null ? '' : `:${line}`}: ${field ? `${field}: ` : ''}${problem}`);
  }
}

function fieldName(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

function toPlan(raw: RawPlan): Plan {
  const hooks = (list: z.infer<typeof hook>[] | undefined, kind: string): Hook[] =>
    (list ?? []).map((h, i) => ({ name: h.name ?? `${kind}-${i + 1}`, run: h.run, timeoutMs: h.timeout ?? 60_000 }));
  const guardrails = { ...DEFAULT_GUARDRAILS };
  for (const [name, spec] of Object.entries(raw.guardrails ?? {}) as [GuardrailName, Partial<GuardrailSpec> & { min_count?: number }][]) {
    const { min_count: minCount, ...rest } = spec;
    guardrails[name] = { ...guardrails[name], ...Object.fromEntries(Object.entries({ ...rest, minCount }).filter(([, v]) => v !== undefined)) };
  }
  return {
    stages: (raw.stages ?? [
      { weight: 5, window: 3_600_000 },
      { weight: 50, window: 86_400_000 },
      { weight: 100, window: 86_400_000 },
    ]).map((s) => ({ weight: s.weight, windowMs: s.window })),
    intervalMs: raw.interval ?? 30_000,
    minSamples: raw.min_samples ?? 50,
    maxSourceErrors: raw.max_source_errors ?? 3,
    cooldownMs: raw.cooldown ?? 86_400_000,
    slowerFactor: raw.slower_factor ?? 3,
    guardrails,
    hooks: { rollback: hooks(raw.hooks?.rollback, 'rollback'), promote: hooks(raw.hooks?.promote, 'promote') },
    alerts: { webhooks: raw.alerts?.webhooks ?? [], timeoutMs: raw.alerts?.timeout ?? 5000, securityEveryMs: raw.alerts?.security_every ?? 300_000 },
  };
}

/** The default plan: 5% for 1 h, 50% for 24 h, 100% for 24 h, every 30 s, DESIGN.md's guardrails. */
export function defaultPlan(): Plan {
  return toPlan({});
}

/** Parses a YAML plan; a bad one throws a PlanError naming the line and the field at fault. */
export function parsePlan(text: string, file = 'plan'): Plan {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new PlanError(file, lineCounter.linePos(e.pos[0]).line, null, e.message.split('\n')[0]!);
  }
  const value: unknown = doc.toJS() ?? {};
  const parsed = PlanSchema.safeParse(value);
  if (parsed.success) return toPlan(parsed.data);
  const issue = parsed.error.issues[0]!;
  // The deepest node of the path that exists in the document gives the line.
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
  let line: number | null = null;
  for (let depth = path.length; depth >= 0 && line === null; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true);
    if (isNode(node) && node.range) line = lineCounter.linePos(node.range[0]).line;
  }
  let problem = issue.message;
  if (issue.code === 'unrecognized_keys') problem = `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  const field = issue.code === 'unrecognized_keys' ? fieldName([...path, issue.keys[0]!]) : fieldName(path);
  if (issue.code === 'unrecognized_keys') {
    const keyNode = doc.getIn(path, true);
    if (isNode(keyNode)) {
      const pair = (keyNode as unknown as { items?: Array<{ key: { value?: unknown; range?: [number, number, number] } }> }).items?.find((p) => p.key?.value === issue.keys[0]);
      if (pair?.key.range) line = lineCounter.linePos(pair.key.range[0]).line;
    }
  }
  throw new PlanError(file, line, field || null, problem);
}

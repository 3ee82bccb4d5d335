import { randomBytes, timingSafeEqual } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AlertResult } from './alerts.ts';
import type { Report } from './analysis.ts';
import type { HookResult } from './hooks.ts';
import type { Side } from './metrics-source.ts';
import type { Snapshot } from './snapshot.ts';

export type Status = 'running' | 'paused' | 'rolled_back' | 'promoted' | 'aborted';

export interface Decision {
  at: string;
  /** start, resume_after_restart, stage, promoted, rollback, pause, resume, abort, force_promote, retry, source_error, warning */
  action: string;
  stage: number;
  weight: number;
  reason: string;
}

export interface ChartPoint {
  at: string;
  weight: number;
  /** Candidate TTFV p95 over the last interval (s). */
  ttfvP95: number | null;
  /** Candidate SSE success over the last interval (0..1). */
  sseSuccess: number | null;
}

export interface Ending {
  at: string;
  reason: string;
  /** Each guardrail's value when it happened. */
  values: Record<string, number | null>;
  hooks: HookResult[];
  alerts: AlertResult[];
}

/** Everything a restarted controller needs to go on where it was. */
export interface CanaryState {
  version: 1;
  runId: string;
  status: Status;
  targets: Record<Side, { url: string; release: string }>;
  stageIndex: number;
  weight: number;
  /** Time of the current stage the controller saw with its own analyses (never time it was down). */
  observedMs: number;
  startedAt: string;
  stageStartedAt: string;
  /** Snapshots when the controller began watching each process (zero-tolerance counters) and when the stage began. */
  baselines: { watch: Partial<Record<Side, Snapshot>>; stage: Partial<Record<Side, Snapshot>> };
  sourceErrors: number;
  lastReport: Report | null;
  chart: ChartPoint[];
  decisions: Decision[];
  rollback: Ending | null;
  promotion: Ending | null;
  cooldownUntil: string | null;
  /** When the last security alert (refused cross-tenant attempts) went out; absent in older state files. */
  securityAlertAt?: string | null;
  /** What the traffic layer last confirmed holding; absent in older state files (builtin router). */
  traffic?: TrafficRecord;
}

/** The split as the traffic layer (builtin router or HAProxy) last confirmed it. */
export interface TrafficRecord {
  layer: 'builtin' | 'haproxy';
  /** The candidate share (percent) read back from the traffic layer; null before its first answer. */
  confirmedWeight: number | null;
  confirmedAt: string | null;
  /** Why the last call to the traffic layer failed; null when it answered. */
  error: string | null;
  /** Intervals in a row in which it did not confirm the weight (max_source_errors of them roll back). */
  failures: number;
}

const CHART_MAX = 720;
const DECISIONS_MAX = 200;

/** The controller's folder: state.json (atomic rewrite), audit.jsonl (append-only), admin.token (0600). */
export class StateStore {
  readonly statePath: string;
  readonly auditPath: string;
  readonly tokenPath: string;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.statePath = join(dir, 'state.json');
    this.auditPath = join(dir, 'audit.jsonl');
    this.tokenPath = join(dir, 'admin.token');
  }

  load(): CanaryState | null {
    if (!existsSync(this.statePath)) return null;
    const state = JSON.parse(readFileSync(this.statePath, 'utf8')) as CanaryState;
    if (state.version !== 1) throw new Error(`${this.statePath}: unknown state version ${String(state.version)}`);
    return state;
  }

  /** Written to a temporary file and renamed: a crash leaves the old state or the new, never half. */
  save(state: CanaryState): void {
    state.chart = state.chart.slice(-CHART_MAX);
    state.decisions = state.decisions.slice(-DECISIONS_MAX);
    const tmp = `${this.statePath}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(state, (_k, v: unknown) => (v === Infinity ? '+Inf' : v)), { mode: 0o600 });
    renameSync(tmp, this.statePath);
  }

  audit(entry: Record<string, unknown>): void {
    appendFileSync(this.auditPath, `${JSON.stringify({ at: new Date().toISOString(), ...entry })}\n`, { mode: 0o600 });
  }

  /** The admin token, made (32 random bytes, mode 0600) on the first run and kept. */
  adminToken(): string {
    if (!existsSync(this.tokenPath)) writeFileSync(this.tokenPath, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(this.tokenPath, 0o600);
    return readFileSync(this.tokenPath, 'utf8').trim();
  }
}

/** Reads the admin token a controller wrote (for the CLI); refuses a file others can read. */
export function readAdminToken(dir: string): string {
  const path = join(dir, 'admin.token');
  if (!existsSync(path)) throw new Error(`${path} does not exist: is a controller running with --state-dir ${dir}?`);
  if ((statSync(path).mode & 0o077) !== 0) throw new Error(`${path} is readable by others: chmod 600 it`);
  return readFileSync(path, 'utf8').trim();
}

/** `Authorization: Bearer <token>` compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!m) return false;
  const a = Buffer.from(m[1]!);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** JSON turns Infinity into null; snapshots keep `+Inf` bounds as a string, restored here. */
export function reviveSnapshot(s: Snapshot): Snapshot {
  const fix = (h: Snapshot['ttfv']) => ({ ...h, buckets: h.buckets.map(([le, n]) => [le === ('+Inf' as unknown as number) || le === null ? Infinity : le, n] as [number, number]) });
  return { ...s, ttfv: fix(s.ttfv), ann: fix(s.ann) };
}

import { randomUUID } from 'node:crypto';
import { sendAlerts } from './alerts.ts';
import { analyze, holdsPromotion, type Report } from './analysis.ts';
import { guardrailRows, type GuardrailRow } from './format.ts';
import { hookSucceeded, runHooks } from './hooks.ts';
import type { MetricsSource, Side } from './metrics-source.ts';
import type { Plan } from './plan.ts';
import { deltaOf, type Snapshot } from './snapshot.ts';
import { reviveSnapshot, type CanaryState, type Ending, type StateStore } from './state.ts';
import { builtinTraffic, type TrafficLayer } from './traffic/index.ts';

export interface ControllerOptions {
  plan: Plan;
  source: MetricsSource;
  store: StateStore;
  targets: Record<Side, { url: string; release: string }>;
  /** Where the split happens. Default: the builtin router, which reads `weight` at every request. */
  traffic?: TrafficLayer;
  /** One JSON object per decision, for the operator's log. */
  log?: (entry: Record<string, unknown>) => void;
}

/** An admin call that cannot be done now: `status` is the HTTP answer. */
export class CanaryActionError extends Error {
  override readonly name = 'CanaryActionError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What the controller did: a decision (its action), an analysis (`pass`: promotable, `fail`: a
 * rollback guardrail breached, `insufficient_data`: neither yet, `error`: the candidate's metrics
 * were unreadable), or a security alert about refused cross-tenant attempts.
 */
export type ControllerEvent =
  | { kind: 'decision'; action: string }
  | { kind: 'analysis'; verdict: AnalysisOutcome }
  | { kind: 'security_alert' };

export type AnalysisOutcome = 'pass' | 'fail' | 'insufficient_data' | 'error';
export const ANALYSIS_OUTCOMES: readonly AnalysisOutcome[] = ['pass', 'fail', 'insufficient_data', 'error'];
/** Every decision action the controller records. */
export const DECISION_ACTIONS = [
  'start', 'resume_after_restart', 'stage', 'hold', 'source_error', 'rollback', 'rollback_hooks', 'promoted', 'promotion_hooks',
  'pause', 'resume', 'abort', 'force_promote', 'retry', 'traffic_error',
] as const;

const TERMINAL = new Set(['rolled_back', 'promoted', 'aborted']);

/**
 * The rollout state machine: running ⇄ paused → promoted | rolled_back | aborted (→ retry → running).
 * Every interval it reads both releases, judges the guardrails (analysis.ts), and rolls back, holds
 * or moves to the next stage. The router reads `weight` at every request, so a rollback takes
 * effect on the next request. Time counts toward a stage only between two analyses of this
 * process: a controller that was down, blind or paused has not observed that time.
 */
export class CanaryController {
  state!: CanaryState;
  private readonly plan: Plan;
  private timer: NodeJS.Timeout | null = null;
  private lastTickAt: number | null = null;
  private lastSnap: Partial<Record<Side, Snapshot>> = {};
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(e: ControllerEvent) => void>();
  /** Security alerts on their way (stop() waits for them). */
  private readonly pending = new Set<Promise<void>>();

  private readonly traffic: TrafficLayer;
  /** Resolves once start()'s first call to the traffic layer has answered (or failed). */
  synced: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ControllerOptions) {
    this.plan = opts.plan;
    this.traffic = opts.traffic ?? builtinTraffic();
  }

  /** Candidate share (percent) the plan asks for now: the builtin router applies it at every request. */
  get weight(): number {
    return this.state.weight;
  }

  /** The share in effect as far as the traffic layer confirmed it (null: not confirmed yet). */
  get confirmedWeight(): number | null {
    return reportedWeight(this.state);
  }

  get targets(): CanaryState['targets'] {
    return this.state.targets;
  }

  /** Calls `fn` with every decision's action and every analysis' outcome (the router's own metrics count them). */
  onEvent(fn: (e: ControllerEvent) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  private emit(e: ControllerEvent): void {
    for (const fn of this.eventListeners) {
      try {
        fn(e);
      } catch {
        // A listener must not break a decision.
      }
    }
  }

  /** Calls `fn` after every saved change (tests and the bench wait on it instead of sleeping). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Loads the state (resuming a run of the same candidate release) or begins a new run; then ticks every interval. */
  start(): void {
    const saved = this.opts.store.load();
    const now = new Date().toISOString();
    if (saved && saved.targets.candidate.release === this.opts.targets.candidate.release) {
      for (const key of ['watch', 'stage'] as const) {
        for (const side of ['stable', 'candidate'] as const) {
          const snap = saved.baselines[key][side];
          if (snap) saved.baselines[key][side] = reviveSnapshot(snap);
        }
      }
      this.state = saved;
      this.state.targets = this.opts.targets;
      this.decide('resume_after_restart', `controller restarted: ${saved.status} at stage ${saved.stageIndex + 1}, weight ${saved.weight}%, ${Math.round(saved.observedMs / 1000)} s observed`);
    } else {
      this.state = this.freshState(now);
      this.decide('start', `canary of ${this.opts.targets.candidate.release} against ${this.opts.targets.stable.release}: stage 1 at ${this.state.weight}%`);
    }
    this.save();
    this.synced = this.serial(async () => {
      await this.syncTraffic();
      this.save();
    });
    this.schedule();
  }

  /**
   * Asks the traffic layer to hold `state.weight` and records what it confirmed; never throws.
   * Resolves with why it failed (null: confirmed). A failure leaves the last confirmed share in
   * the state: the next call (every interval) tries again.
   */
  private async syncTraffic(): Promise<string | null> {
    const t = (this.state.traffic ??= { layer: this.traffic.kind, confirmedWeight: null, confirmedAt: null, error: null, failures: 0 });
    t.layer = this.traffic.kind;
    try {
      const share = await this.traffic.apply(this.state.weight);
      if (t.confirmedWeight !== share && this.traffic.kind !== 'builtin') {
        this.opts.store.audit({ type: 'traffic', layer: this.traffic.kind, confirmed_weight: share, stage: this.state.stageIndex + 1 });
        this.opts.log?.({ msg: 'canary: traffic confirmed', layer: this.traffic.describe(), weight: share });
      }
      t.confirmedWeight = share;
      t.confirmedAt = new Date().toISOString();
      t.error = null;
      return null;
    } catch (err) {
      t.error = (err as Error).message;
      return t.error;
    }
  }

  private freshState(now: string): CanaryState {
    return {
      version: 1,
      runId: randomUUID(),
      status: 'running',
      targets: this.opts.targets,
      stageIndex: 0,
      weight: this.plan.stages[0]!.weight,
      observedMs: 0,
      startedAt: now,
      stageStartedAt: now,
      baselines: { watch: {}, stage: {} },
      sourceErrors: 0,
      lastReport: null,
      chart: [],
      decisions: [],
      rollback: null,
      promotion: null,
      cooldownUntil: null,
      securityAlertAt: null,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.queue.catch(() => undefined);
    await Promise.allSettled([...this.pending]);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.serial(() => this.tick()).finally(() => this.schedule());
    }, this.plan.intervalMs);
  }

  /** Admin calls and ticks run one at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private save(): void {
    this.opts.store.save(this.state);
    for (const fn of this.listeners) fn();
  }

  private decide(action: string, reason: string, extra: Record<string, unknown> = {}): void {
    const d = { at: new Date().toISOString(), action, stage: this.state.stageIndex + 1, weight: this.state.weight, reason };
    this.state.decisions.push(d);
    this.opts.store.audit({ type: 'decision', ...d, ...extra });
    this.opts.log?.({ msg: `canary: ${action}`, ...d });
    this.emit({ kind: 'decision', action });
  }

  /** One analysis: read, judge, and roll back, hold or promote. */
  async tick(): Promise<Report | null> {
    // The split first, in every status: a rollback whose weight 0 the traffic layer did not
    // confirm yet is written again here, interval after interval, until it is.
    const before = this.state.traffic?.confirmedWeight;
    const trafficError = await this.syncTraffic();
    if (TERMINAL.has(this.state.status)) {
      if (this.state.traffic?.confirmedWeight !== before) this.save();
      return null;
    }
    // HAProxy not confirming the weight: like an unreadable metrics source, the interval is blind
    // (not observed time, no promotion: the share in effect is unknown), it is tried again at the
    // next one, and max_source_errors in a row roll back. The guardrails are still judged on the
    // metrics, so a breach rolls back now (weight 0 written at the layer's next answer).
    const t = this.state.traffic!;
    const blind = trafficError !== null;
    if (trafficError) {
      t.failures = (t.failures ?? 0) + 1;
      const reason = `traffic layer not confirming the weight (${t.failures}/${this.plan.maxSourceErrors}): ${trafficError}`;
      this.opts.store.audit({ type: 'traffic', layer: this.traffic.kind, error: reason, stage: this.state.stageIndex + 1, weight: this.state.weight });
      if (t.failures >= this.plan.maxSourceErrors) {
        this.lastTickAt = null;
        await this.rollBack('rolled_back', `traffic layer failed ${t.failures} times in a row: weight 0 is written at its next answer (${trafficError})`, {});
        return null;
      }
      this.decide('traffic_error', reason);
    } else {
      t.failures = 0;
    }
    const [cand, stab] = await Promise.allSettled([this.opts.source.read('candidate'), this.opts.source.read('stable')]);
    const now = Date.now();
    if (cand.status === 'rejected') {
      this.state.sourceErrors++;
      // A blind interval is not observed time.
      this.lastTickAt = null;
      const reason = `candidate metrics unreadable (${this.state.sourceErrors}/${this.plan.maxSourceErrors}): ${(cand.reason as Error).message}`;
      this.opts.store.audit({ type: 'analysis', error: reason, stage: this.state.stageIndex + 1, weight: this.state.weight });
      this.emit({ kind: 'analysis', verdict: 'error' });
      if (this.state.sourceErrors >= this.plan.maxSourceErrors) {
        await this.rollBack('rolled_back', `metrics source failed ${this.state.sourceErrors} times in a row: a blind canary is not a healthy one (${(cand.reason as Error).message})`, {});
      } else {
        this.decide('source_error', reason);
        this.save();
      }
      return null;
    }
    this.state.sourceErrors = 0;
    const snaps: Partial<Record<Side, Snapshot>> = { candidate: cand.value };
    if (stab.status === 'fulfilled') snaps.stable = stab.value;
    const b = this.state.baselines;
    // The first look at a process: everything from here on is attributed to this run.
    if (snaps.stable && !b.watch.stable) b.watch.stable = b.stage.stable = snaps.stable;
    if (!b.watch.candidate || !b.stage.candidate) {
      b.watch.candidate = b.stage.candidate = cand.value;
      this.lastTickAt = blind ? null : now;
      this.lastSnap = snaps;
      this.save();
      return null;
    }
    const window = this.lastSnap.candidate ? deltaOf(cand.value, this.lastSnap.candidate) : null;
    const stableWindow = snaps.stable && this.lastSnap.stable ? deltaOf(snaps.stable, this.lastSnap.stable) : null;
    const report = analyze({
      plan: this.plan,
      candidate: {
        stage: deltaOf(cand.value, b.stage.candidate),
        window,
        watch: deltaOf(cand.value, b.watch.candidate),
      },
      stable: snaps.stable && b.stage.stable ? deltaOf(snaps.stable, b.stage.stable) : null,
    });
    this.emit({ kind: 'analysis', verdict: report.breaches.length > 0 ? 'fail' : report.promotable ? 'pass' : 'insufficient_data' });
    this.securityAlert(report, window?.crossTenant ?? 0, stableWindow?.crossTenant ?? 0);
    if (this.lastTickAt !== null && this.state.status === 'running' && !blind) this.state.observedMs += Math.min(now - this.lastTickAt, 2 * this.plan.intervalMs);
    this.lastTickAt = blind ? null : now;
    this.lastSnap = snaps;
    this.state.lastReport = report;
    const byName = Object.fromEntries(report.guardrails.map((g) => [g.name, g]));
    this.state.chart.push({ at: report.at, weight: this.state.weight, ttfvP95: byName.ttfv_p95?.windowValue ?? null, sseSuccess: byName.sse_success?.windowValue ?? null });
    this.opts.store.audit({
      type: 'analysis',
      stage: this.state.stageIndex + 1,
      weight: this.state.weight,
      observed_ms: this.state.observedMs,
      guardrails: report.guardrails.map(({ name, value, windowValue, stable, samples, verdict, threshold, severity }) => ({ name, value, window: windowValue, stable, samples, threshold, severity, verdict })),
      comparisons: report.comparisons,
      warnings: report.warnings,
      promotable: report.promotable,
    });
    if (report.breaches.length > 0) {
      const reason = report.breaches.map((g) => `${g.name} ${g.value ?? g.windowValue} (${g.why})`).join('; ');
      await this.rollBack('rolled_back', `guardrail breached: ${reason}`, this.values(report));
      return report;
    }
    const stage = this.plan.stages[this.state.stageIndex]!;
    if (this.state.status === 'running' && !blind && this.state.observedMs >= stage.windowMs) {
      if (report.promotable) await this.advance(report);
      else if (this.state.decisions.at(-1)?.action !== 'hold') {
        const waiting = report.guardrails.filter(holdsPromotion).map((g) => `${g.name}: ${g.verdict} (${g.why})`);
        this.decide('hold', `window over, not promoted: ${waiting.join('; ')}`);
      }
    }
    this.save();
    return report;
  }

  /**
   * Refused cross-tenant attempts go to security whichever release refused them (a client asked
   * for what its token may not have), at most once per `alerts.security_every`; the release is
   * judged on them only against stable (analysis.ts). Sent in the background: a slow webhook
   * does not delay the next analysis.
   */
  private securityAlert(report: Report, candidate: number, stable: number): void {
    if (candidate + stable === 0) return;
    const last = this.state.securityAlertAt ? Date.parse(this.state.securityAlertAt) : 0;
    if (Date.now() - last < this.plan.alerts.securityEveryMs) return;
    this.state.securityAlertAt = new Date().toISOString();
    const g = report.guardrails.find((x) => x.name === 'cross_tenant_attempts');
    const { candidate: cr, stable: sr } = this.state.targets;
    const text = `:warning: Relay security: ${candidate + stable} request(s) refused for reaching outside their token's tenant or user in the last interval (${cr.release}: ${candidate}, ${sr.release}: ${stable}). A client signal, not a release fault: the canary judges it against stable (${g ? `${g.verdict}: ${g.why}` : 'not judged yet'}). See relay_cross_tenant_attempts_total and the services' "request outside its token scope" log lines.`;
    const event = { ...this.alertEvent('cross_tenant_attempts', g?.why ?? ''), attempts: { candidate, stable }, verdict: g?.verdict ?? null, rates: { candidate: g?.value ?? null, stable: g?.stable ?? null } };
    this.opts.store.audit({ type: 'security_alert', stage: this.state.stageIndex + 1, attempts: { candidate, stable } });
    this.emit({ kind: 'security_alert' });
    const sent = sendAlerts(this.plan.alerts.webhooks, text, event, this.plan.alerts.timeoutMs).then((alerts) => {
      this.opts.store.audit({ type: 'security_alert_sent', alerts });
    });
    this.pending.add(sent);
    void sent.finally(() => this.pending.delete(sent));
  }

  private values(report: Report | null): Record<string, number | null> {
    return Object.fromEntries((report?.guardrails ?? []).map((g) => [g.name, g.value]));
  }

  private hookEnv(event: string, reason: string): Record<string, string> {
    return {
      RELAY_CANARY_EVENT: event,
      RELAY_CANARY_REASON: reason,
      RELAY_CANARY_STAGE: String(this.state.stageIndex + 1),
      RELAY_CANARY_STABLE_URL: this.state.targets.stable.url,
      RELAY_CANARY_CANDIDATE_URL: this.state.targets.candidate.url,
      RELAY_CANARY_CANDIDATE_RELEASE: this.state.targets.candidate.release,
    };
  }

  private async advance(report: Report): Promise<void> {
    const from = this.plan.stages[this.state.stageIndex]!;
    if (this.state.stageIndex === this.plan.stages.length - 1) {
      await this.promote(`every stage passed; the last (${from.weight}%) held for ${Math.round(this.state.observedMs / 1000)} s observed`, report, 'promoted');
      return;
    }
    this.state.stageIndex++;
    const to = this.plan.stages[this.state.stageIndex]!;
    this.state.weight = to.weight;
    this.state.observedMs = 0;
    this.state.stageStartedAt = new Date().toISOString();
    this.state.baselines.stage = { candidate: this.lastSnap.candidate!, stable: this.lastSnap.stable ?? this.state.baselines.stage.stable };
    this.decide('stage', `stage ${this.state.stageIndex} passed (${from.weight}%): on to ${to.weight}%`, { values: this.values(report) });
    await this.syncTraffic();
  }

  private async promote(reason: string, report: Report | null, action: 'promoted' | 'force_promote'): Promise<void> {
    this.state.status = 'promoted';
    this.state.stageIndex = this.plan.stages.length - 1;
    this.state.weight = 100;
    this.decide(action, reason);
    this.save();
    await this.syncTraffic();
    this.save();
    const hooks = await runHooks(this.plan.hooks.promote, this.hookEnv('promoted', reason));
    const ran = hooks.filter((h) => !h.skipped).map((h) => `${h.name} (${hookSucceeded(h) ? 'ok' : h.timedOut ? 'timed out' : `exit ${h.exitCode}`})`);
    const text = `Relay canary: ${this.state.targets.candidate.release} promoted to 100%. ${reason}. Hooks: ${ran.length ? ran.join(', ') : 'none'}.`;
    const alerts = await sendAlerts(this.plan.alerts.webhooks, text, this.alertEvent('promoted', reason), this.plan.alerts.timeoutMs);
    this.state.promotion = { at: new Date().toISOString(), reason, values: this.values(report), hooks, alerts };
    this.decide('promotion_hooks', `hooks run: ${ran.length ? ran.join(', ') : 'none'}`, { hooks, alerts });
    this.save();
  }

  private alertEvent(event: string, reason: string): Record<string, unknown> {
    return { event, reason, run_id: this.state.runId, stage: this.state.stageIndex + 1, candidate: this.state.targets.candidate.release, stable: this.state.targets.stable.release };
  }

  /** Weight 0 first (saved, so the next request goes to stable), then the hooks in order, then the alert. */
  private async rollBack(status: 'rolled_back' | 'aborted', reason: string, values: Record<string, number | null>): Promise<void> {
    const at = new Date();
    this.state.weight = 0;
    this.state.status = status;
    if (status === 'rolled_back') this.state.cooldownUntil = new Date(at.getTime() + this.plan.cooldownMs).toISOString();
    this.decide(status === 'aborted' ? 'abort' : 'rollback', reason, { values });
    this.save();
    await this.syncTraffic();
    this.save();
    const hooks = await runHooks(this.plan.hooks.rollback, this.hookEnv(status, reason));
    const ran = hooks.map((h) => `${h.name} (${h.skipped ? 'skipped' : hookSucceeded(h) ? 'ok' : h.timedOut ? 'timed out' : `exit ${h.exitCode}`})`);
    const text = `:rotating_light: Relay canary ${status === 'aborted' ? 'aborted' : 'rolled back'}: ${this.state.targets.candidate.release} → weight 0 (all traffic on ${this.state.targets.stable.release}). Why: ${reason}. Hooks: ${ran.length ? ran.join(', ') : 'none'}.`;
    const alerts = await sendAlerts(this.plan.alerts.webhooks, text, { ...this.alertEvent(status, reason), values }, this.plan.alerts.timeoutMs);
    const ending: Ending = { at: at.toISOString(), reason, values, hooks, alerts };
    this.state.rollback = ending;
    this.decide('rollback_hooks', `hooks run: ${ran.length ? ran.join(', ') : 'none'}; alerts: ${alerts.map((a) => `${a.url} ${a.ok ? 'delivered' : `failed (${a.status ?? a.error})`}`).join(', ') || 'none'}`, { hooks, alerts });
    this.save();
  }

  pause(): Promise<void> {
    return this.serial(async () => {
      if (this.state.status !== 'running') throw new CanaryActionError(409, `cannot pause: the canary is ${this.state.status}`);
      this.state.status = 'paused';
      this.decide('pause', 'paused by operator: the weight holds, the stage clock stops, guardrails still roll back');
      this.save();
    });
  }

  resume(): Promise<void> {
    return this.serial(async () => {
      if (this.state.status !== 'paused') throw new CanaryActionError(409, `cannot resume: the canary is ${this.state.status}`);
      this.state.status = 'running';
      this.lastTickAt = Date.now();
      this.decide('resume', 'resumed by operator');
      this.save();
    });
  }

  abort(): Promise<void> {
    return this.serial(async () => {
      if (TERMINAL.has(this.state.status)) throw new CanaryActionError(409, `cannot abort: the canary is ${this.state.status}`);
      await this.rollBack('aborted', 'aborted by operator', this.values(this.state.lastReport));
    });
  }

  forcePromote(): Promise<void> {
    return this.serial(async () => {
      if (TERMINAL.has(this.state.status)) throw new CanaryActionError(409, `cannot promote: the canary is ${this.state.status}`);
      await this.promote('promoted by operator (--force), skipping the remaining stages', this.state.lastReport, 'force_promote');
    });
  }

  retry(force: boolean): Promise<void> {
    return this.serial(async () => {
      if (this.state.status !== 'rolled_back' && this.state.status !== 'aborted') throw new CanaryActionError(409, `cannot retry: the canary is ${this.state.status}`);
      const until = this.state.cooldownUntil ? Date.parse(this.state.cooldownUntil) : 0;
      if (Date.now() < until && !force) throw new CanaryActionError(409, `cannot retry before the cool-down ends at ${this.state.cooldownUntil} (retry --force to override)`);
      const previous = this.state;
      this.state = { ...this.freshState(new Date().toISOString()), chart: previous.chart, decisions: previous.decisions };
      this.lastTickAt = null;
      this.lastSnap = {};
      this.state.traffic = previous.traffic;
      this.decide('retry', `retry${force && Date.now() < until ? ' --force, inside the cool-down' : ''}: stage 1 at ${this.state.weight}%`);
      this.save();
      await this.syncTraffic();
      this.save();
    });
  }
}

/** What `GET /canary/status` answers and `relay canary status` prints. */
export interface StatusView {
  run_id: string;
  status: CanaryState['status'];
  stage: number;
  stages: Array<{ weight: number; window_ms: number }>;
  /**
   * The candidate share in effect: the plan's with the builtin router (which applies it at every
   * request), the share HAProxy last confirmed with `--traffic haproxy` (null before its first answer).
   */
  weight: number | null;
  /** The share the plan asks for now. */
  target_weight: number;
  /** The traffic layer and what it last confirmed. */
  traffic: { layer: 'builtin' | 'haproxy'; confirmed_weight: number | null; confirmed_at: string | null; error: string | null; failures: number };
  observed_ms: number;
  /** Observed time still needed in this stage (0 when the window is over). */
  time_left_ms: number;
  interval_ms: number;
  targets: CanaryState['targets'];
  started_at: string;
  stage_started_at: string;
  source_errors: number;
  report: Report | null;
  /** The report's guardrails with units (ms, %, per 1k requests, counts), as the status tables show them. */
  guardrail_rows: GuardrailRow[];
  chart: CanaryState['chart'];
  decisions: CanaryState['decisions'];
  rollback: Ending | null;
  promotion: Ending | null;
  cooldown_until: string | null;
}

export function statusView(state: CanaryState, plan: Plan): StatusView {
  const stage = plan.stages[state.stageIndex]!;
  return {
    run_id: state.runId,
    status: state.status,
    stage: state.stageIndex + 1,
    stages: plan.stages.map((s) => ({ weight: s.weight, window_ms: s.windowMs })),
    weight: reportedWeight(state),
    target_weight: state.weight,
    traffic: { layer: state.traffic?.layer ?? 'builtin', confirmed_weight: state.traffic?.confirmedWeight ?? null, confirmed_at: state.traffic?.confirmedAt ?? null, error: state.traffic?.error ?? null, failures: state.traffic?.failures ?? 0 },
    observed_ms: state.observedMs,
    time_left_ms: TERMINAL.has(state.status) ? 0 : Math.max(0, stage.windowMs - state.observedMs),
    interval_ms: plan.intervalMs,
    targets: state.targets,
    started_at: state.startedAt,
    stage_started_at: state.stageStartedAt,
    source_errors: state.sourceErrors,
    report: state.lastReport,
    guardrail_rows: guardrailRows(state.lastReport),
    chart: state.chart,
    decisions: state.decisions.slice(-50),
    rollback: state.rollback,
    promotion: state.promotion,
    cooldown_until: state.cooldownUntil,
  };
}

/** The share to report: the plan's with the builtin router, only a confirmed one with an external traffic layer. */
export function reportedWeight(state: CanaryState): number | null {
  return state.traffic && state.traffic.layer !== 'builtin' ? state.traffic.confirmedWeight : state.weight;
}

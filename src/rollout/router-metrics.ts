import { Counter, Gauge, Registry } from 'prom-client';
import { ANALYSIS_OUTCOMES, DECISION_ACTIONS, reportedWeight, type CanaryController } from './controller.ts';
import type { Status } from './state.ts';

export const CANARY_STATUSES: readonly Status[] = ['running', 'paused', 'promoted', 'rolled_back', 'aborted'];

/**
 * The router's own Prometheus metrics (`GET /canary/metrics`), so Prometheus can alert on a
 * rollback without reading the controller's state file: stage, weight and status read from the
 * controller at scrape time, decisions and analyses counted as they happen. Every label value is
 * exported from the start (at 0), so the first rollback shows as an increase.
 */
export function createRouterMetrics(controller: CanaryController): { registry: Registry; close(): void } {
  const registry = new Registry();
  const registers = [registry];
  const state = () => (controller.state as CanaryController['state'] | undefined) ?? null;
  new Gauge({
    name: 'relay_canary_stage',
    help: 'Current stage of the rollout plan (1-based)',
    registers,
    collect() {
      this.set((state()?.stageIndex ?? 0) + 1);
    },
  });
  new Gauge({
    name: 'relay_canary_candidate_weight_ratio',
    help: 'Share of users sent to the candidate now (0..1; 0 after a rollback): the router\'s, or what HAProxy last confirmed with --traffic haproxy',
    registers,
    collect() {
      const s = state();
      this.set(((s ? reportedWeight(s) : 0) ?? 0) / 100);
    },
  });
  new Gauge({
    name: 'relay_canary_status',
    help: 'The rollout status: 1 for the current one (running, paused, promoted, rolled_back, aborted), 0 for the rest',
    labelNames: ['status'] as const,
    registers,
    collect() {
      const now = state()?.status;
      for (const status of CANARY_STATUSES) this.set({ status }, status === now ? 1 : 0);
    },
  });
  new Gauge({
    name: 'relay_canary_info',
    help: 'The releases of this rollout (always 1)',
    labelNames: ['stable', 'candidate'] as const,
    registers,
    collect() {
      const s = state();
      this.reset();
      if (s) this.set({ stable: s.targets.stable.release, candidate: s.targets.candidate.release }, 1);
    },
  });
  const decisions = new Counter({ name: 'relay_canary_decisions_total', help: 'Controller decisions by action (stage, promoted, rollback, hold, …)', labelNames: ['action'] as const, registers });
  const analyses = new Counter({ name: 'relay_canary_analyses_total', help: 'Guardrail analyses by verdict (pass, fail, insufficient_data, error)', labelNames: ['verdict'] as const, registers });
  const security = new Counter({ name: 'relay_canary_security_alerts_total', help: 'Security alerts sent about refused cross-tenant attempts', registers });
  for (const action of DECISION_ACTIONS) decisions.inc({ action }, 0);
  for (const verdict of ANALYSIS_OUTCOMES) analyses.inc({ verdict }, 0);
  const off = controller.onEvent((e) => {
    if (e.kind === 'decision') decisions.inc({ action: e.action });
    else if (e.kind === 'analysis') analyses.inc({ verdict: e.verdict });
    else security.inc();
  });
  return { registry, close: off };
}

import { AnalysisTemplate, Rollout } from '@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import { guardrailsOfCandidate, passOp, type GuardrailPromQL } from '../rollout/index.ts';
import { relayRules, WINDOW } from './prometheus.ts';

export const NAME = 'relay-memory';
/** Not shipped: the operator creates it (kubectl create secret generic relay-memory-secrets --from-literal=…). */
export const SECRET = 'relay-memory-secrets';
export const TEMPLATE = 'relay-r1-guardrails';
const labels = { 'app.kubernetes.io/name': NAME };
const PORT = 8080;

/** Argo templating: the AnalysisRun fills them in from the Rollout's pod-template hashes. */
export const ARGS = { candidate: '{{args.canary-hash}}', stable: '{{args.stable-hash}}' } as const;

/** Argo's expr: an empty result (the guardrail cannot be judged yet) meets neither condition, so the measurement is Inconclusive. */
export function conditions(g: GuardrailPromQL): { successCondition: string; failureCondition: string } {
  return {
    successCondition: `len(result) > 0 && result[0] ${passOp(g.fails)} ${g.fails.threshold}`,
    failureCondition: `len(result) > 0 && result[0] ${g.fails.op} ${g.fails.threshold}`,
  };
}

export const metricName = (g: Pick<GuardrailPromQL, 'name'>) => g.name.replace(/_/g, '-');

const secretEnv = (name: string, key: string) => ({ name, valueFrom: { secretKeyRef: { name: SECRET, key } } });

/** Each manifest, by file name under deploy/kubernetes/. */
export function kubernetesManifests(): Record<string, { toJSON(): unknown; validate(): void }> {
  const config = new ConfigMap({
    metadata: { name: `${NAME}-config`, labels },
    data: {
      HOST: '0.0.0.0',
      PORT: String(PORT),
      LOG_LEVEL: 'info',
      RELAY_MIGRATE_ON_START: 'false',
      RELAY_DRAIN_MS: '5000',
      RELAY_SHUTDOWN_GRACE_MS: '10000',
      NODE_ENV: 'production',
    },
  });
  const deployment = new Deployment({
    metadata: { name: NAME, labels },
    spec: {
      // The Rollout (workloadRef) runs the pods from this template; the Deployment itself runs none.
      replicas: 0,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels, annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/path': '/metrics/memory', 'prometheus.io/port': String(PORT) } },
        spec: {
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: 'relay',
              image: 'relay-memory:0.1.0',
              args: ['serve'],
              ports: [{ name: 'http', containerPort: PORT }],
              envFrom: [{ configMapRef: { name: `${NAME}-config` } }],
              env: [
                // relay_build_info{release}: the pod-template hash Argo labels each ReplicaSet's pods with, so the AnalysisTemplate's queries tell canary from stable.
                { name: 'RELAY_RELEASE', valueFrom: { fieldRef: { fieldPath: "metadata.labels['rollouts-pod-template-hash']" } } },
                secretEnv('DATABASE_URL', 'database-url'),
                secretEnv('RELAY_MASTER_KEY', 'master-key'),
                secretEnv('RELAY_JWT_SECRET', 'jwt-secret'),
                secretEnv('RELAY_METRICS_TOKEN', 'metrics-token'),
              ],
              readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 2, failureThreshold: 1 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 3 },
              resources: { requests: { cpu: '500m', memory: '512Mi' }, limits: { memory: '1Gi' } },
            },
          ],
        },
      },
    },
  });
  const service = new Service({
    metadata: { name: NAME, labels },
    spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
  });
  const analysisArgs = [
    { name: 'canary-hash', valueFrom: { podTemplateHashValue: 'Latest' } },
    { name: 'stable-hash', valueFrom: { podTemplateHashValue: 'Stable' } },
  ];
  const rollout = new Rollout({
    metadata: { name: NAME, labels },
    spec: {
      replicas: 20,
      selector: { matchLabels: labels },
      workloadRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: NAME, scaleDown: 'progressively' },
      strategy: {
        canary: {
          // R1: 5% → analysis → 50% → analysis → 100%. Without a traffic router the weights are replica shares (1 of 20, then 10 of 20).
          steps: [
            { setWeight: 5 },
            { analysis: { templates: [{ templateName: TEMPLATE }], args: analysisArgs } },
            { setWeight: 50 },
            { analysis: { templates: [{ templateName: TEMPLATE }], args: analysisArgs } },
            { setWeight: 100 },
          ],
        },
      },
    },
  });
  const guardrails = guardrailsOfCandidate(ARGS, { range: WINDOW });
  const template = new AnalysisTemplate({
    metadata: { name: TEMPLATE, labels },
    spec: {
      args: [{ name: 'canary-hash' }, { name: 'stable-hash' }, { name: 'prometheus-address', value: 'http://prometheus.monitoring.svc:9090' }],
      // Warnings: measured and shown, never failing the rollout.
      dryRun: guardrails.filter((g) => g.severity === 'warn').map((g) => ({ metricName: metricName(g) })),
      metrics: guardrails.map((g) => ({
        name: metricName(g),
        // Five looks a minute apart over the last WINDOW; one failure aborts, an empty result
        // (too few samples) is Inconclusive, and five of them pause the rollout for a person.
        interval: '1m',
        count: 5,
        failureLimit: 0,
        inconclusiveLimit: 4,
        ...conditions(g),
        provider: { prometheus: { address: '{{args.prometheus-address}}', query: g.expr } },
      })),
    },
  });
  // The same rule groups as deploy/prometheus/relay-rules.yml, for the Prometheus Operator.
  const promRule = new PrometheusRule({
    metadata: { name: `${NAME}-guardrails`, labels },
    spec: relayRules(),
  });
  return {
    'configmap.yaml': config,
    'deployment.yaml': deployment,
    'service.yaml': service,
    'rollout.yaml': rollout,
    'analysis-template.yaml': template,
    'prometheus-rule.yaml': promRule,
  };
}

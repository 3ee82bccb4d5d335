// `npm run deploy:generate`: writes deploy/ (Prometheus rules and their promtool tests, the
// Kubernetes and Argo Rollouts manifests, the Grafana dashboard) from src/deploy/.
import { guardrailTableMarkdown, writeDeployFiles } from '../src/deploy/index.ts';

// `-- --table`: the guardrail table docs/kubernetes.md carries, to paste.
if (process.argv.includes('--table')) {
  console.log(guardrailTableMarkdown());
  process.exit(0);
}
const changed = writeDeployFiles(process.cwd());
console.log(changed.length === 0 ? 'deploy/: up to date' : `deploy/: wrote ${changed.join(', ')}`);

import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.ts';

// Each command's module is imported only when that command runs: `relay token` need not load
// Fastify, PGlite or onnxruntime (it started in ~1.4 s with them all, docs/benchmarks.md).
const load = {
  bench: () => import('./bench.ts'),
  benchCrypto: () => import('./bench-crypto.ts'),
  canary: () => import('./canary.ts'),
  dbSetup: () => import('./db-setup.ts'),
  indexScopes: () => import('./index-scopes.ts'),
  keys: () => import('./keys.ts'),
  migrate: () => import('./migrate.ts'),
  reindex: () => import('./reindex.ts'),
  serve: () => import('./serve.ts'),
  token: () => import('./token.ts'),
};

/**
 * A reader that went away (`relay canary status | head -n 4`) is not an error: stop quietly,
 * as other command-line tools do, instead of an unhandled EPIPE stack. Any other write error
 * on stdout or stderr still fails the run.
 */
function quietOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
quietOnClosedPipe(process.stdout);
quietOnClosedPipe(process.stderr);

const USAGE = `usage: relay <command>

  serve                                   run the HTTP service (PORT, HOST, DATABASE_URL, …)
  migrate up [--to N]                     apply migrations (as RELAY_MIGRATE_URL, or the embedded store)
  migrate down [--to N]                   revert to version N (default: one step)
  migrate status                          list migrations and whether they ran
  db setup --admin-url URL --db NAME      create database, roles and pgvector; print DATABASE_URL and RELAY_MIGRATE_URL
           [--owner-role relay_owner] [--app-role app_user]
  db index-scopes [--min-rows N]          give each scope of N+ rows (default RELAY_SEARCH_EXACT_MAX) its own HNSW index
  token --tenant T (--user U | --service) [--ttl 1h]
                                          mint a bearer token (RELAY_JWT_SECRET, or the data folder's secret)
  keys rotate --tenant T                  new data key version for a tenant (new writes use it)
  keys reseal --tenant T [--batch-size N] re-encrypt the tenant's older rows under its newest key (resumable)
  keys shred --tenant T --yes             destroy the tenant's keys (nothing of it opens again), then delete its rows
  keys rotate-master                      rewrap every tenant key under RELAY_NEW_MASTER_KEY(_FILE)
  reindex --tenant T [--batch-size N]    re-embed the tenant's rows written by another embedder (resumable)
  bench crypto [--json]                   seal/open throughput against bare AES-256-GCM on one core
  bench ann [--chunks 300000] [--shape standard|peer] [--queries 300] [--seed 1] [--transform on|off] [--peer mastra] [--json] [--keep] [--reuse]
                                          filtered vector search vs exact search on a server PostgreSQL
                                          (vectors under the keyed transform, as the service stores them; off: raw)
  bench query [--chunks 20000] [--duration 30] [--rate 200] [--clients 50] [--seed 1] [--json]
                                          SSE query TTFV (open loop) and queries/s (closed loop) vs a static-event Fastify route
  bench load [--clients 200] [--duration 60] [--long] [--seed 1] [--json]
                                          200 clients × 1 request/s (80% SSE queries, 20% writes): SSE success, TTFV, errors, RSS
  bench rerank [--queries 100] [--candidates 20] [--budget 150] [--seed 1] [--json]
                                          ONNX cross-encoder (fp32, int8) vs the CPU's GEMM floor, lexical, and a rerank budget
  bench canary [--rate 200] [--duration 20] [--traffic haproxy] [--json]
                                          router overhead (p95 vs direct) and breach → weight 0 time, with real processes
  bench replicas [--replicas 3] [--duration 20] [--clients 32] [--json]
                                          queries/s through HAProxy, direct vs PgBouncer (ABBA); key events; a rolling restart
  bench failover [--writers 20] [--readers 20] [--scenario kill-node] [--json]
                                          the HA lab (scripts/ha-lab.sh): the primary lost under keyed writers and SSE readers
  canary run --stable URL --candidate URL [--listen 127.0.0.1:8080] [--plan rollout.yaml]
             [--metrics-source scrape|prometheus=URL] [--state-dir .relay-canary] [--metrics-token-file F]
             [--traffic builtin|haproxy=SOCKET --backend NAME --stable-server S --candidate-server C]
                                          route users to stable/candidate by plan stages, judge the guardrails, promote or roll back
  canary status [--json]                  stage, weight, time left, guardrails, last decisions (--listen, --state-dir as for run)
  canary pause|resume|abort               hold the stage clock / go on / roll back now (admin token from --state-dir)
  canary promote --force                  skip the remaining stages: candidate at 100%
  canary retry [--force]                  start over after a rollback (--force: inside the cool-down)`;

function int(value: string | undefined, name: string, dflt?: number): number | undefined {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      to: { type: 'string' },
      'admin-url': { type: 'string' },
      db: { type: 'string' },
      'owner-role': { type: 'string' },
      'app-role': { type: 'string' },
      chunks: { type: 'string' },
      'min-rows': { type: 'string' },
      tenant: { type: 'string' },
      user: { type: 'string' },
      service: { type: 'boolean', default: false },
      ttl: { type: 'string' },
      'batch-size': { type: 'string' },
      yes: { type: 'boolean', default: false },
      queries: { type: 'string' },
      duration: { type: 'string' },
      rate: { type: 'string' },
      clients: { type: 'string' },
      replicas: { type: 'string' },
      writers: { type: 'string' },
      readers: { type: 'string' },
      scenario: { type: 'string' },
      candidates: { type: 'string' },
      budget: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      reuse: { type: 'boolean', default: false },
      transform: { type: 'string' },
      shape: { type: 'string' },
      peer: { type: 'string' },
      long: { type: 'boolean', default: false },
      stable: { type: 'string' },
      candidate: { type: 'string' },
      listen: { type: 'string' },
      plan: { type: 'string' },
      'metrics-source': { type: 'string' },
      'state-dir': { type: 'string' },
      'metrics-token-file': { type: 'string' },
      traffic: { type: 'string' },
      backend: { type: 'string' },
      'stable-server': { type: 'string' },
      'candidate-server': { type: 'string' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, sub] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    if (!command && !values.help) process.exitCode = 2;
    return;
  }
  switch (command) {
    case 'serve':
      return (await load.serve()).serve();
    case 'migrate':
      return (await load.migrate()).migrate(sub, int(values.to, 'to'));
    case 'db':
      if (sub === 'index-scopes') return (await load.indexScopes()).indexScopes(int(values['min-rows'], 'min-rows'));
      if (sub !== 'setup') throw new UsageError('usage: relay db setup --admin-url URL --db NAME | relay db index-scopes [--min-rows N]');
      if (!values['admin-url'] || !values.db) throw new UsageError('db setup needs --admin-url and --db');
      return (await load.dbSetup()).dbSetup({
        adminUrl: values['admin-url'],
        database: values.db,
        ownerRole: values['owner-role'],
        appRole: values['app-role'],
        embeddingDim: int(process.env.RELAY_EMBED_DIM, 'RELAY_EMBED_DIM'),
      });
    case 'token':
      return (await load.token()).token({ tenant: values.tenant, user: values.user, service: values.service, ttl: values.ttl });
    case 'keys':
      return (await load.keys()).keys(sub, { tenant: values.tenant, batchSize: int(values['batch-size'], 'batch-size'), yes: values.yes });
    case 'canary':
      return (await load.canary()).canary(sub, {
        stable: values.stable,
        candidate: values.candidate,
        listen: values.listen,
        plan: values.plan,
        metricsSource: values['metrics-source'],
        stateDir: values['state-dir'],
        metricsTokenFile: values['metrics-token-file'],
        traffic: values.traffic,
        backend: values.backend,
        stableServer: values['stable-server'],
        candidateServer: values['candidate-server'],
        force: values.force,
        json: values.json,
      });
    case 'reindex':
      return (await load.reindex()).reindex({ tenant: values.tenant, batchSize: int(values['batch-size'], 'batch-size') });
    case 'bench':
      if (sub === 'crypto') return (await load.benchCrypto()).runBenchCrypto(values.json);
      if (sub === 'query') {
        return (await load.bench()).runBenchQuery({
          chunks: int(values.chunks, 'chunks', 20000)!,
          durationS: int(values.duration, 'duration', 30)!,
          rate: int(values.rate, 'rate', 200)!,
          clients: int(values.clients, 'clients', 50)!,
          seed: int(values.seed, 'seed', 1)!,
          json: values.json,
        });
      }
      if (sub === 'load') {
        return (await load.bench()).runBenchLoad({
          clients: int(values.clients, 'clients', 200)!,
          durationS: int(values.duration, 'duration', values.long ? 300 : 60)!,
          long: values.long,
          seed: int(values.seed, 'seed', 1)!,
          json: values.json,
        });
      }
      if (sub === 'replicas') {
        return (await load.bench()).runBenchReplicas({
          replicas: int(values.replicas, 'replicas', 3)!,
          durationS: int(values.duration, 'duration', 20)!,
          clients: int(values.clients, 'clients', 32)!,
          seed: int(values.seed, 'seed', 1)!,
          json: values.json,
        });
      }
      if (sub === 'failover') {
        const scenario = values.scenario ?? 'kill-node';
        if (scenario !== 'kill-node' && scenario !== 'kill-postmaster' && scenario !== 'switchover') {
          throw new UsageError(`--scenario must be kill-node, kill-postmaster or switchover, got ${JSON.stringify(scenario)}`);
        }
        return (await load.bench()).runBenchFailover({
          writers: int(values.writers, 'writers', 20)!,
          readers: int(values.readers, 'readers', 20)!,
          scenario,
          json: values.json,
        });
      }
      if (sub === 'canary') return (await load.canary()).runBenchCanary({ rate: int(values.rate, 'rate', 200)!, durationS: int(values.duration, 'duration', 20)!, json: values.json, traffic: values.traffic });
      if (sub === 'rerank') {
        return (await load.bench()).runBenchRerank({
          queries: int(values.queries, 'queries', 100)!,
          candidates: int(values.candidates, 'candidates', 20)!,
          budgetMs: int(values.budget, 'budget', 150)!,
          seed: int(values.seed, 'seed', 1)!,
          json: values.json,
        });
      }
      if (sub !== 'ann') {
        throw new UsageError(
          'usage: relay bench ann [--chunks N] [--shape standard|peer] [--queries N] [--seed N] [--transform on|off] [--peer mastra] [--json] | relay bench query [--chunks N] [--duration S] [--rate N] [--clients N] [--json] | relay bench load [--clients N] [--duration S] [--long] [--json] | relay bench crypto [--json] | relay bench rerank [--queries N] [--candidates N] [--budget MS] [--json] | relay bench canary [--rate N] [--duration S] [--traffic haproxy] [--json] | relay bench replicas [--replicas N] [--duration S] [--clients N] [--json] | relay bench failover [--writers N] [--readers N] [--scenario kill-node|kill-postmaster|switchover] [--json]',
        );
      }
      if (values.transform !== undefined && values.transform !== 'on' && values.transform !== 'off') {
        throw new UsageError(`--transform must be on or off, got ${JSON.stringify(values.transform)}`);
      }
      if (values.peer !== undefined && values.peer !== 'mastra') throw new UsageError(`--peer must be mastra, got ${JSON.stringify(values.peer)}`);
      if (values.shape !== undefined && values.shape !== 'standard' && values.shape !== 'peer') {
        throw new UsageError(`--shape must be standard or peer, got ${JSON.stringify(values.shape)}`);
      }
      return (await load.bench()).runBenchAnn({
        chunks: int(values.chunks, 'chunks', 300000)!,
        shape: values.shape ?? 'standard',
        peer: values.peer,
        queries: int(values.queries, 'queries', 300)!,
        seed: int(values.seed, 'seed', 1)!,
        json: values.json,
        keep: values.keep,
        reuse: values.reuse,
        transform: values.transform !== 'off',
      });
    default:
      throw new UsageError(`unknown command ${command}\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  // Operators get the message; the stack only when asked for (LOG_LEVEL=debug or trace).
  const verbose = ['debug', 'trace'].includes(process.env.LOG_LEVEL ?? '') && !usage && (err as { code?: string }).code !== 'invalid_config';
  console.error(`relay: ${err instanceof Error ? (verbose ? (err.stack ?? err.message) : err.message) : String(err)}`);
  process.exitCode = usage ? 2 : 1;
});

import { benchAnn, mastraPeer, type AnnPeer, type AnnShape, benchLoad, benchQuery, benchReplicas, benchRerank, runFailover, type FailoverScenario } from '../bench/index.ts';
import { loadConfig } from '../config/index.ts';
import { Store, openStore, primaryOnly } from '../store/index.ts';
import { haLabAvailable } from '../fleet/index.ts';

export interface BenchAnnArgs {
  chunks: number;
  shape: AnnShape;
  queries: number;
  seed: number;
  json: boolean;
  keep: boolean;
  reuse: boolean;
  /** Vectors at rest under the keyed transform (`--transform on`, the default). */
  transform: boolean;
  /** `--peer mastra`: the same rows and queries on Mastra's PgVector, interleaved. */
  peer?: 'mastra';
}

/** `relay bench ann`: needs a server store (DATABASE_URL and RELAY_MIGRATE_URL); meant for a scratch database. */
export async function runBenchAnn(args: BenchAnnArgs): Promise<void> {
  const config = loadConfig();
  if (config.store.kind !== 'pg' || !config.store.migrateUrl) {
    throw new Error('bench ann runs on a server PostgreSQL: set DATABASE_URL and RELAY_MIGRATE_URL (see `relay db setup`)');
  }
  const store = await openStore({ location: primaryOnly(config.store), appRole: config.appRole, embeddingDim: config.embeddingDim, search: config.search });
  const exactStore = new Store(store.driver, { appRole: config.appRole, embeddingDim: config.embeddingDim, search: { exactMax: Number.MAX_SAFE_INTEGER } });
  const log = (line: string) => console.error(`bench ann: ${line}`);
  let peer: AnnPeer | undefined;
  try {
    // The peer creates its own table: it connects as the owner role.
    if (args.peer) peer = await mastraPeer(config.store.migrateUrl, config.embeddingDim);
    await store.migrate();
    const summary = await benchAnn(store, exactStore, { ...args, peer, k: 10, log });
    if (!args.json) {
      const kinds = summary.kinds as Record<string, Record<string, number>>;
      console.log('kind    queries  p50_ms  p95_ms  recall@10  underfilled  exact_p95_ms');
      for (const [kind, s] of Object.entries(kinds)) {
        console.log(`${kind.padEnd(8)}${String(s.queries).padStart(7)}${String(s.p50_ms).padStart(8)}${String(s.p95_ms).padStart(8)}${String(s.recall_at_10).padStart(11)}${String(s.underfilled).padStart(13)}${String(s.exact_p95_ms).padStart(14)}`);
      }
    }
    console.log(JSON.stringify(summary));
  } finally {
    await peer?.close();
    await store.close();
  }
}

export interface BenchQueryArgs {
  chunks: number;
  durationS: number;
  rate: number;
  clients: number;
  seed: number;
  json: boolean;
}

/** `relay bench query`: the service in a child process on a server store; see benchQuery. */
export async function runBenchQuery(args: BenchQueryArgs): Promise<void> {
  const config = loadConfig();
  if (config.store.kind !== 'pg' || !config.store.migrateUrl) {
    throw new Error('bench query runs on a server PostgreSQL: set DATABASE_URL and RELAY_MIGRATE_URL (see `relay db setup`)');
  }
  const summary = await benchQuery({ ...args, log: (line) => console.error(`bench query: ${line}`) });
  if (!args.json) {
    console.log(`TTFV p50 ${summary.ttfv_p50_ms} ms, p95 ${summary.ttfv_p95_ms} ms at ${summary.offered_rate} queries/s offered; SSE success ${summary.sse_success}`);
    console.log(`${summary.qps} queries/s with ${summary.clients} clients; the framework's floor: ${summary.baseline_qps} (ratio ${summary.qps_ratio})`);
  }
  console.log(JSON.stringify(summary));
}

export interface BenchRerankArgs {
  queries: number;
  candidates: number;
  budgetMs: number;
  seed: number;
  json: boolean;
}

/** `relay bench rerank`: the ONNX cross-encoder on a generated model, in-process; no database. */
export async function runBenchRerank(args: BenchRerankArgs): Promise<void> {
  const summary = await benchRerank({ ...args, log: (line) => console.error(`bench rerank: ${line}`) });
  if (!args.json) {
    console.log(`fp32 p50 ${summary.p50_ms} ms, p95 ${summary.p95_ms} ms; int8 p50 ${summary.p50_ms_int8} ms, p95 ${summary.p95_ms_int8} ms (${summary.candidates} candidates, ${summary.threads} threads)`);
    console.log(`efficiency ${summary.efficiency} fp32 (floor ${summary.floor_gflops} GFLOP/s), ${summary.efficiency_int8} int8 (floor ${summary.floor_gflops_int8} GFLOP/s)`);
    console.log(`maybeRerank at ${summary.budget_ms} ms: p95 ${summary.budget_p95_ms} ms, ${summary.reranked_mean} reranked on average; lexical p95 ${summary.lexical_p95_ms} ms`);
  }
  console.log(JSON.stringify(summary));
}

export interface BenchLoadArgs {
  clients: number;
  durationS: number;
  long: boolean;
  seed: number;
  json: boolean;
}

/** `relay bench load`: mixed queries and writes from many clients against the service on a server store; see benchLoad. */
export async function runBenchLoad(args: BenchLoadArgs): Promise<void> {
  const config = loadConfig();
  if (config.store.kind !== 'pg' || !config.store.migrateUrl) {
    throw new Error('bench load runs on a server PostgreSQL: set DATABASE_URL and RELAY_MIGRATE_URL (see `relay db setup`)');
  }
  const summary = await benchLoad({
    clients: args.clients,
    perClientRate: 1,
    durationS: args.durationS,
    writeShare: 0.2,
    tenants: 8,
    seedChunks: 20,
    warmupS: 5,
    baselineS: Math.min(10, args.durationS),
    seed: args.seed,
    log: (line) => console.error(`bench load: ${line}`),
  });
  if (!args.json) {
    console.log(`SSE success ${summary.sse_success}, TTFV p95 ${summary.ttfv_p95_ms} ms (static route ${summary.baseline_ttfv_p95_ms} ms), write p95 ${summary.write_p95_ms} ms at ${summary.offered_rate} requests/s offered`);
    console.log(`RSS ${summary.rss_start_mb} → ${summary.rss_end_mb} MB (max ${summary.rss_max_mb}); errors ${JSON.stringify(summary.errors)}`);
  }
  console.log(JSON.stringify(summary));
}

export interface BenchReplicasArgs {
  replicas: number;
  durationS: number;
  clients: number;
  seed: number;
  json: boolean;
}

/** `relay bench replicas`: N replicas behind HAProxy, direct and through PgBouncer; see benchReplicas. */
export async function runBenchReplicas(args: BenchReplicasArgs): Promise<void> {
  const config = loadConfig();
  if (config.store.kind !== 'pg' || !config.store.migrateUrl) {
    throw new Error('bench replicas runs on a server PostgreSQL: set DATABASE_URL and RELAY_MIGRATE_URL (see `relay db setup`)');
  }
  if (args.replicas < 1) throw new Error('--replicas must be at least 1');
  const summary = await benchReplicas({
    ...args,
    keySamples: 20,
    appUrl: config.store.databaseUrl,
    ownerUrl: config.store.migrateUrl,
    log: (line) => console.error(`bench replicas: ${line}`),
  });
  if (!args.json) {
    console.log(`${summary.replicas} replicas behind HAProxy: ${summary.qps_direct} queries/s straight to PostgreSQL, ${summary.qps_pgbouncer} through PgBouncer (ratio ${summary.pgbouncer_ratio})`);
    console.log(`key events: p95 ${summary.key_event_p95_ms} ms to every replica; rolling restart: SSE success ${summary.rolling_restart_sse_success}`);
  }
  const { replicas, qps_direct, qps_pgbouncer, pgbouncer_ratio, key_event_p95_ms, rolling_restart_sse_success, ...rest } = summary;
  console.error(`bench replicas: ${JSON.stringify(rest)}`);
  console.log(JSON.stringify({ replicas, qps_direct, qps_pgbouncer, pgbouncer_ratio, key_event_p95_ms, rolling_restart_sse_success }));
}

export interface BenchFailoverArgs {
  writers: number;
  readers: number;
  scenario: FailoverScenario;
  json: boolean;
}

/**
 * `relay bench failover`: starts the HA lab (scripts/ha-lab.sh), `relay serve` on it, and loses
 * the primary under keyed writers and SSE readers; see runFailover. Needs what the lab needs
 * (scripts/install-fleet.sh installs it), not DATABASE_URL: the lab is its own database.
 */
export async function runBenchFailover(args: BenchFailoverArgs): Promise<void> {
  if (args.writers < 1 || args.readers < 0) throw new Error('--writers must be at least 1, --readers at least 0');
  if (!haLabAvailable()) throw new Error('bench failover needs Debian\'s patroni, etcd-server, haproxy and PostgreSQL: run scripts/install-fleet.sh as root');
  const r = await runFailover({ writers: args.writers, readers: args.readers, scenario: args.scenario, log: (line) => console.error(`bench failover: ${line}`) });
  if (!args.json) {
    console.log(`${r.scenario}: ${r.acked_writes} writes acknowledged, ${r.lost_writes} lost, ${r.duplicate_writes} written twice; longest write gap ${r.write_gap_s} s (ttl ${r.ttl_s} s, loop_wait ${r.loop_wait_s} s)`);
    console.log(`new primary ${r.failover_s} s after the fault, first write on it ${r.reconnect_s} s later; ${r.read_errors} of ${r.reads} reads failed; rejoined ${r.rejoined}; sync/async write rate ${r.sync_commit_cost}`);
  }
  const { write_statuses, missing_retry_after, hung_requests, reads, failover_s, loop_wait_s, scenario, ...figures } = r;
  console.error(`bench failover: ${JSON.stringify({ scenario, failover_s, loop_wait_s, reads, write_statuses, missing_retry_after, hung_requests })}`);
  const { acked_writes, lost_writes, duplicate_writes, write_gap_s, reconnect_s, ttl_s, read_errors, rejoined, sync_commit_cost } = figures;
  console.log(JSON.stringify({ acked_writes, lost_writes, duplicate_writes, write_gap_s, reconnect_s, ttl_s, read_errors, rejoined, sync_commit_cost }));
}

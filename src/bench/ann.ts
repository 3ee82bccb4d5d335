import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { prepareDataKey, sealWithKey, VectorTransform } from '../crypto/index.ts';
import { prewarm, Store, withVectorIndexRebuilt, type Scope, type SearchStrategy, type SearchVectors } from '../store/index.ts';
import { ClusteredSpace, rng } from './synthetic.ts';

export interface AnnBenchOptions {
  /** Total rows, split 1/6 small users, 1/6 mid users, 2/3 one heavy user. Default 300000. */
  chunks: number;
  queries: number;
  seed: number;
  k: number;
  /** Leave the rows in place for a later `--reuse` run. */
  keep: boolean;
  /** Use rows a previous `--keep` run left (same chunks and seed). */
  reuse: boolean;
  /**
   * Vectors at rest under the keyed transform, as the service stores them by default: rows
   * hold Q·v with `vector_key` 1, and each query carries Q·q (primary, key 1) and q (key null),
   * the shape the service sends, so it pays the vector_key probe the service pays. Off: raw
   * vectors, `vector_key` null and a plain query, as before transforms existed. Default true.
   */
  transform: boolean;
  log: (line: string) => void;
}

type Kind = 'small' | 'mid' | 'heavy';

interface BenchUser {
  kind: Kind;
  scope: Scope;
  size: number;
  clusters: number[];
}

const TENANT_PREFIX = 'bench-ann';

/** Users as real tenants look: many small ones, one busy tenant, one agent with a long history. */
function plan(chunks: number, seed: number, clusterCount: number): BenchUser[] {
  const rand = rng(seed ^ 0x5eed);
  const pick = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * clusterCount));
  const users: BenchUser[] = [];
  const add = (kind: Kind, tenant: string, user: string, size: number, topics: number) => {
    const tenantId = `${TENANT_PREFIX}-${seed}-${tenant}`;
    users.push({ kind, scope: { tenantId, userHash: createHash('sha256').update(`${tenantId}/${user}`).digest() }, size, clusters: pick(topics) });
  };
  const smallUsers = Math.max(1, Math.round(chunks / 6 / 50));
  for (let u = 0; u < smallUsers; u++) add('small', `t${Math.floor(u / 10)}`, `u${u % 10}`, 50, 3);
  const midSize = Math.max(1, Math.round(chunks / 6 / 10));
  for (let u = 0; u < 10; u++) add('mid', 'busy', `u${u}`, midSize, 12);
  add('heavy', 'agent', 'long-history', Math.max(1, chunks - smallUsers * 50 - 10 * midSize), 200);
  return users;
}

/** Bursts of 1..16 chunks per user, shuffled together: rows land interleaved, as written over time. */
function timeline(users: BenchUser[], seed: number): Array<{ user: number; count: number }> {
  const rand = rng(seed ^ 0x71e);
  const bursts: Array<{ user: number; count: number }> = [];
  users.forEach((u, i) => {
    for (let left = u.size; left > 0; ) {
      const count = Math.min(left, 1 + Math.floor(rand() * 16));
      bursts.push({ user: i, count });
      left -= count;
    }
  });
  for (let i = bursts.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [bursts[i], bursts[j]] = [bursts[j]!, bursts[i]!];
  }
  return bursts;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
}

const round = (x: number, d = 2) => Number(x.toFixed(d));

/**
 * The rows' text is sealed for real (the search never opens it) under a key of this process
 * only: the bench measures search, the key catalog is not part of it.
 */
const BENCH_KEY = prepareDataKey(randomBytes(32), 'dk', 1);
const TEXT = Buffer.from('synthetic benchmark chunk');

/** The data key version the bench's transformed rows are under. */
const BENCH_VECTOR_KEY = 1;

/**
 * Each user's transform under its tenant's vector seed. The seed stands in for a data key's
 * vector seed (no keyring here); it comes from the bench seed and the tenant, not from
 * randomBytes, so that a `--reuse` run queries rows a `--keep` run left in the same spaces.
 */
function transformsOf(users: BenchUser[], seed: number, dim: number): VectorTransform[] {
  const seeds = new Map<string, Buffer>();
  return users.map((u) => {
    let s = seeds.get(u.scope.tenantId);
    if (!s) {
      s = createHash('sha256').update(`relay bench ann vector seed/${seed}/${u.scope.tenantId}`).digest();
      seeds.set(u.scope.tenantId, s);
    }
    return VectorTransform.derive(s, u.scope.userHash, dim);
  });
}

async function load(
  store: Store,
  users: BenchUser[],
  space: ClusteredSpace,
  seed: number,
  transforms: VectorTransform[] | null,
  log: (l: string) => void,
): Promise<void> {
  const bursts = timeline(users, seed);
  const rand = rng(seed ^ 0x10ad);
  const started = Date.now();
  let written = 0;
  let next = 0;
  const worker = async () => {
    for (;;) {
      const b = bursts[next++];
      if (!b) return;
      const user = users[b.user]!;
      const transform = transforms?.[b.user];
      const rows = Array.from({ length: b.count }, () => {
        const id = randomUUID();
        const v = space.near(user.clusters[Math.floor(rand() * user.clusters.length)]!);
        return {
          id,
          ciphertext: sealWithKey(BENCH_KEY, TEXT, { tenantId: user.scope.tenantId, userHash: user.scope.userHash, chunkId: id, purpose: 'bench.text' }),
          keyId: 'dk:1',
          embedding: transform ? transform.apply(v) : v,
          vectorKey: transform ? BENCH_VECTOR_KEY : null,
          embedderId: 'bench-synthetic',
        };
      });
      await store.withScope(user.scope, (c) => c.insert(rows));
      written += b.count;
      if (written % 50000 < b.count) log(`loaded ${written} rows (${Math.round(written / ((Date.now() - started) / 1000))}/s)`);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
}

interface Sample {
  kind: Kind;
  ms: number;
  ids: string[];
  strategy: SearchStrategy;
  expected: number;
}

interface BenchQuery {
  user: number;
  /** What the search is given: the raw vector, or (transform on) the keyed query the service sends. */
  search: Float32Array | SearchVectors;
}

async function runQueries(store: Store, users: BenchUser[], queries: BenchQuery[], k: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (const q of queries) {
    const user = users[q.user]!;
    const started = process.hrtime.bigint();
    const outcome = await store.withScope(user.scope, (c) => c.search(q.search, k));
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    samples.push({ kind: user.kind, ms, ids: outcome.hits.map((h) => h.id), strategy: outcome.strategy, expected: Math.min(k, user.size) });
  }
  return samples;
}

/**
 * `relay bench ann`: filtered vector search on a server PostgreSQL against exact search
 * in the same run. Returns the summary object that is printed as the last line.
 */
export async function benchAnn(store: Store, exactStore: Store, opts: AnnBenchOptions): Promise<Record<string, unknown>> {
  const { log, k } = opts;
  const space = new ClusteredSpace(store.embeddingDim, 2000, opts.seed);
  const users = plan(opts.chunks, opts.seed, space.centers.length);
  const heavy = users.find((u) => u.kind === 'heavy')!;
  const transforms = opts.transform ? transformsOf(users, opts.seed, store.embeddingDim) : null;
  const vectorKey = opts.transform ? BENCH_VECTOR_KEY : null;
  const mode = opts.transform ? 'on' : 'off';

  const present = await store.withScope(heavy.scope, (c) => c.list(1));
  const left = present.chunks[0];
  if (opts.reuse && left && left.vectorKey === vectorKey) {
    log(`reusing rows left by an earlier --keep run (transform ${mode})`);
  } else {
    // Rows left with the transform the other way would make every large scope read as mixed
    // (searched exactly) or be compared in the wrong space: load again.
    if (opts.reuse && left) log(`the rows left by an earlier --keep run are ${left.vectorKey === null ? 'raw' : `under vector key ${left.vectorKey}`}, not what --transform ${mode} stores: loading again`);
    await cleanup(store, users);
    log(`loading ${opts.chunks} rows for ${users.length} users (interleaved bursts, transform ${mode})`);
    const started = Date.now();
    await withVectorIndexRebuilt(store.driver, () => load(store, users, space, opts.seed, transforms, log));
    log(`loaded and indexed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  // What `relay db index-scopes` does on a server: an HNSW index of its own for each large scope.
  const scopeStarted = Date.now();
  const scopeIndexes = await store.ensureScopeIndexes({ minRows: store.tuning.exactMax, concurrently: false, log });
  log(`scope indexes: ${scopeIndexes.created.length} built, ${scopeIndexes.kept} kept, ${scopeIndexes.dropped.length} dropped in ${((Date.now() - scopeStarted) / 1000).toFixed(1)} s`);

  const byKind = (kind: Kind) => users.map((u, i) => ({ u, i })).filter((x) => x.u.kind === kind);
  const makeQueries = (seed: number) => {
    const rand = rng(seed);
    const out: BenchQuery[] = [];
    (['small', 'mid', 'heavy'] as const).forEach((kind, n) => {
      const pool = byKind(kind);
      const count = Math.floor(opts.queries / 3) + (n < opts.queries % 3 ? 1 : 0);
      for (let j = 0; j < count; j++) {
        const { u, i } = pool[Math.floor(rand() * pool.length)]!;
        const q = space.near(u.clusters[Math.floor(rand() * u.clusters.length)]!);
        // Q·q is computed here, outside the timed search (the service derives and applies it
        // before the search too); the exact baseline gets the same keyed query, so its top k
        // is the exact top k in the rows' own space (Q is orthogonal: the raw space's as well).
        const t = transforms?.[i];
        out.push({ user: i, search: t ? { primary: { key: BENCH_VECTOR_KEY, vector: t.apply(q) }, others: [{ key: null, vector: q }] } : q });
      }
    });
    return out;
  };
  const queries = makeQueries(opts.seed ^ 0x9e77);

  // Steady state, as a serving replica sees it: the table and indexes in shared buffers
  // (when pg_prewarm is there and they fit), caches warmed by other queries of the same mix.
  const warmed = await prewarm(store.driver);
  const settings = await store.driver.ownerTransaction((sql) =>
    sql.query<{ sb: string; rel: string }>(
      "SELECT current_setting('shared_buffers') AS sb, pg_size_pretty(pg_total_relation_size('memory_chunks')) AS rel",
    ),
  );
  const sharedBuffers = settings.rows[0]?.sb ?? 'unknown';
  log(`shared_buffers ${sharedBuffers}, memory_chunks with indexes ${settings.rows[0]?.rel}; prewarmed: ${warmed.length > 0 ? warmed.join(', ') : 'no (pg_prewarm missing)'}`);
  log('warming up with a different query set of the same mix');
  await runQueries(store, users, makeQueries(opts.seed ^ 0x3a3a), k);
  log(`running ${queries.length} filtered searches`);
  const ann = await runQueries(store, users, queries, k);
  log('running the same searches exactly (baseline)');
  const exact = await runQueries(exactStore, users, queries, k);

  const summarize = (idx: number[]) => {
    const ms = idx.map((i) => ann[i]!.ms).sort((a, b) => a - b);
    const ems = idx.map((i) => exact[i]!.ms).sort((a, b) => a - b);
    let underfilled = 0;
    for (const i of idx) if (ann[i]!.ids.length < ann[i]!.expected) underfilled++;
    return {
      queries: idx.length,
      p50_ms: round(quantile(ms, 0.5)),
      p95_ms: round(quantile(ms, 0.95)),
      // A kind with no queries (fewer than three in all) has no recall, not a perfect one.
      recall_at_10: idx.length > 0 ? round(recallAt(idx.map((i) => ({ got: ann[i]!.ids, truth: exact[i]!.ids })), k), 4) : null,
      underfilled,
      exact_p50_ms: round(quantile(ems, 0.5)),
      exact_p95_ms: round(quantile(ems, 0.95)),
    };
  };
  const all = summarize(ann.map((_, i) => i));
  const kinds = Object.fromEntries(
    (['small', 'mid', 'heavy'] as const).map((kind) => [kind, summarize(ann.flatMap((s, i) => (s.kind === kind ? [i] : [])))]),
  );
  const strategies: Record<string, number> = {};
  for (const s of ann) strategies[s.strategy] = (strategies[s.strategy] ?? 0) + 1;

  if (!opts.keep) {
    await cleanup(store, users);
    await store.ensureScopeIndexes({ minRows: store.tuning.exactMax, concurrently: false, log });
  }
  const heavyStats = kinds.heavy!;
  return {
    bench: 'ann',
    chunks: opts.chunks,
    dim: store.embeddingDim,
    k,
    transform: mode,
    ...all,
    heavy_p95_ms: heavyStats.p95_ms,
    heavy_recall_at_10: heavyStats.recall_at_10,
    // From the unrounded times: a rounded exact p95 could read 0.
    p95_vs_exact: round(
      ratioTo(
        quantile(ann.map((s) => s.ms).sort((a, b) => a - b), 0.95),
        quantile(exact.map((s) => s.ms).sort((a, b) => a - b), 0.95),
        'the exact search p95',
      ),
      3,
    ),
    shared_buffers: sharedBuffers,
    prewarmed: warmed.length > 0,
    scope_indexes: scopeIndexes.created.length + scopeIndexes.kept,
    strategies,
    kinds,
  };
}

/**
 * Recall@k of each search against the exact search of the same query, over all queries. Every
 * query's user has rows, so an exact search that found nothing is a broken baseline, not a
 * perfect score: it throws, and so does a run with no queries (there is no recall to compute).
 */
export function recallAt(pairs: ReadonlyArray<{ got: readonly string[]; truth: readonly string[] }>, k: number): number {
  if (pairs.length === 0) throw new Error('bench ann: no queries, so no recall can be computed');
  let hit = 0;
  let total = 0;
  for (const [i, p] of pairs.entries()) {
    const truth = new Set(p.truth.slice(0, k));
    if (truth.size === 0) throw new Error(`bench ann: the exact search of query ${i} returned nothing, so no recall can be computed (the baseline is broken)`);
    hit += p.got.filter((id) => truth.has(id)).length;
    total += truth.size;
  }
  return hit / total;
}

/** `value ÷ baseline`; a baseline that is zero, negative or not a number makes the ratio meaningless, and throws. */
export function ratioTo(value: number, baseline: number, what: string): number {
  if (!Number.isFinite(baseline) || baseline <= 0) throw new Error(`bench ann: ${what} is ${baseline}, so no ratio can be computed against it`);
  if (!Number.isFinite(value)) throw new Error(`bench ann: the figure compared with ${what} is ${value}`);
  return value / baseline;
}

async function cleanup(store: Store, users: BenchUser[]): Promise<void> {
  for (const u of users) await store.withScope(u.scope, (c) => c.deleteAll());
}

import { createHash, randomBytes } from 'node:crypto';
import { prepareDataKey, sealWithKey, VectorTransform } from '../crypto/index.ts';
import { prewarm, Store, withVectorIndexRebuilt, type Scope, type SearchStrategy, type SearchVectors } from '../store/index.ts';
import type { AnnPeer, PeerRow } from './ann-peer.ts';
import { ClusteredSpace, rng } from './synthetic.ts';
import { inTurns } from './turns.ts';

/**
 * How the rows are spread over scopes. `standard`: 1/6 in 50-row users (ten per tenant), 1/6 in
 * ten mid users of one tenant, 2/3 in one heavy user. `peer`: the shape of the peer comparison
 * (docs/benchmarks.md), half in 50-row users (ten per tenant), half in ten mid users of one
 * tenant; at 100,000 chunks, 100 tenants × 10 users × 50 and 10 users × 5,000.
 */
export type AnnShape = 'standard' | 'peer';

export interface AnnBenchOptions {
  /** Total rows, spread as `shape` says. Default 300000. */
  chunks: number;
  /** Default `standard`. */
  shape: AnnShape;
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
  /** A peer asked the same queries, interleaved with relay's (`--peer mastra`). */
  peer?: AnnPeer;
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
const KINDS = ['small', 'mid', 'heavy'] as const;
const CLUSTERS = 2000;

/** Users as real tenants look: many small ones, one busy tenant, one agent with a long history. */
function plan(chunks: number, shape: AnnShape, seed: number, clusterCount: number): BenchUser[] {
  const rand = rng(seed ^ 0x5eed);
  const pick = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * clusterCount));
  const users: BenchUser[] = [];
  const add = (kind: Kind, tenant: string, user: string, size: number, topics: number) => {
    const tenantId = `${TENANT_PREFIX}-${seed}${shape === 'peer' ? '-peer' : ''}-${tenant}`;
    users.push({ kind, scope: { tenantId, userHash: createHash('sha256').update(`${tenantId}/${user}`).digest() }, size, clusters: pick(topics) });
  };
  const share = shape === 'peer' ? 1 / 2 : 1 / 6;
  const smallUsers = Math.max(1, Math.round((chunks * share) / 50));
  for (let u = 0; u < smallUsers; u++) add('small', `t${Math.floor(u / 10)}`, `u${u % 10}`, 50, 3);
  const midSize = Math.max(1, Math.round((chunks * share) / 10));
  for (let u = 0; u < 10; u++) add('mid', 'busy', `u${u}`, midSize, 12);
  if (shape === 'standard') add('heavy', 'agent', 'long-history', Math.max(1, chunks - smallUsers * 50 - 10 * midSize), 200);
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

/** The bench's row ids: the same for a seed and shape in every run, so a peer loaded later holds them too. */
function benchId(seed: number, shape: AnnShape, n: number): string {
  const h = createHash('sha256').update(`relay bench ann row/${seed}/${shape}/${n}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** One burst of rows as written: raw vectors (the model's space) and their ids. */
interface BenchBurst {
  user: number;
  rows: Array<{ id: string; vector: Float32Array }>;
}

/**
 * Every row of the bench, burst by burst in write order: the same ids and vectors for a seed
 * and shape in every run and every call (a space of its own: the same centers, its own noise).
 */
function* bursts(users: BenchUser[], dim: number, seed: number, shape: AnnShape): Generator<BenchBurst> {
  const space = new ClusteredSpace(dim, CLUSTERS, seed);
  const rand = rng(seed ^ 0x10ad);
  let n = 0;
  for (const b of timeline(users, seed)) {
    const user = users[b.user]!;
    const rows = Array.from({ length: b.count }, () => ({
      id: benchId(seed, shape, n++),
      vector: space.near(user.clusters[Math.floor(rand() * user.clusters.length)]!),
    }));
    yield { user: b.user, rows };
  }
}

/** The id of the first row the bench writes for a user (no vectors drawn): what says a --keep run's rows are these. */
function firstIdOf(users: BenchUser[], user: number, seed: number, shape: AnnShape): string {
  let n = 0;
  for (const b of timeline(users, seed)) {
    if (b.user === user) return benchId(seed, shape, n);
    n += b.count;
  }
  throw new Error('bench ann: the user writes no rows');
}

async function load(store: Store, users: BenchUser[], source: Iterator<BenchBurst>, transforms: VectorTransform[] | null, log: (l: string) => void): Promise<void> {
  const started = Date.now();
  let written = 0;
  const worker = async () => {
    for (;;) {
      const next = source.next();
      if (next.done) return;
      const b = next.value;
      const user = users[b.user]!;
      const transform = transforms?.[b.user];
      const rows = b.rows.map(({ id, vector }) => ({
        id,
        ciphertext: sealWithKey(BENCH_KEY, TEXT, { tenantId: user.scope.tenantId, userHash: user.scope.userHash, chunkId: id, purpose: 'bench.text' }),
        keyId: 'dk:1',
        embedding: transform ? transform.apply(vector) : vector,
        vectorKey: transform ? BENCH_VECTOR_KEY : null,
        embedderId: 'bench-synthetic',
      }));
      await store.withScope(user.scope, (c) => c.insert(rows));
      written += rows.length;
      if (written % 50000 < rows.length) log(`loaded ${written} rows (${Math.round(written / ((Date.now() - started) / 1000))}/s)`);
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
  /** The query in the model's space: what a peer storing raw vectors is asked. */
  raw: Float32Array;
  /** What the search is given: the raw vector, or (transform on) the keyed query the service sends. */
  search: Float32Array | SearchVectors;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = process.hrtime.bigint();
  const value = await fn();
  return { value, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

/**
 * Each query on `store` and, given a peer, on the peer right after or right before it (the
 * order alternates), so that both see the same moment of the machine.
 */
async function runQueries(store: Store, users: BenchUser[], queries: BenchQuery[], k: number, peer?: AnnPeer): Promise<{ samples: Sample[]; peer: Sample[] }> {
  const samples: Sample[] = [];
  const peerSamples: Sample[] = [];
  for (const [n, q] of queries.entries()) {
    const user = users[q.user]!;
    const expected = Math.min(k, user.size);
    const ours = async () => {
      // A read, as the service's query route runs it (read-only; on the primary here).
      const { value, ms } = await timed(() => store.withScope(user.scope, (c) => c.search(q.search, k), { read: {} }));
      samples.push({ kind: user.kind, ms, ids: value.hits.map((h) => h.id), strategy: value.strategy, expected });
    };
    const theirs = async () => {
      if (!peer) return;
      const { value, ms } = await timed(() => peer.query(user.scope.tenantId, user.scope.userHash.toString('hex'), q.raw, k));
      peerSamples.push({ kind: user.kind, ms, ids: value, strategy: 'exact', expected });
    };
    await inTurns(n, ours, theirs);
  }
  return { samples, peer: peerSamples };
}

/**
 * `relay bench ann`: filtered vector search on a server PostgreSQL against exact search
 * in the same run. Returns the summary object that is printed as the last line.
 */
export async function benchAnn(store: Store, exactStore: Store, opts: AnnBenchOptions): Promise<Record<string, unknown>> {
  const { log, k } = opts;
  // The queries' space; the rows are drawn from one of their own (bursts), so the queries are
  // the same whether this run loads or reuses rows.
  const space = new ClusteredSpace(store.embeddingDim, CLUSTERS, opts.seed);
  const users = plan(opts.chunks, opts.shape, opts.seed, space.centers.length);
  const kindsPresent = KINDS.filter((kind) => users.some((u) => u.kind === kind));
  // The largest scope: the one whose rows say whether a --keep run left them.
  const largest = users.reduce((a, b) => (b.size > a.size ? b : a));
  const transforms = opts.transform ? transformsOf(users, opts.seed, store.embeddingDim) : null;
  const vectorKey = opts.transform ? BENCH_VECTOR_KEY : null;
  const mode = opts.transform ? 'on' : 'off';

  // Seconds to write the rows and to build the table-wide index over them; null when --reuse found them.
  let build: { load_s: number | null; index_s: number | null } = { load_s: null, index_s: null };
  const firstId = firstIdOf(users, users.indexOf(largest), opts.seed, opts.shape);
  const left = await store.withScope(largest.scope, (c) => c.get(firstId));
  if (opts.reuse && left && left.vectorKey === vectorKey) {
    log(`reusing rows left by an earlier --keep run (transform ${mode})`);
  } else {
    // Rows left with the transform the other way would make every large scope read as mixed
    // (searched exactly) or be compared in the wrong space: load again.
    if (opts.reuse && left) log(`the rows left by an earlier --keep run are ${left.vectorKey === null ? 'raw' : `under vector key ${left.vectorKey}`}, not what --transform ${mode} stores: loading again`);
    if (opts.reuse && !left) log('no rows of an earlier --keep run with this --chunks, --shape and --seed: loading');
    await cleanup(store, users);
    log(`loading ${opts.chunks} rows for ${users.length} users (interleaved bursts, transform ${mode})`);
    const started = Date.now();
    const source = bursts(users, store.embeddingDim, opts.seed, opts.shape);
    let loaded = started;
    await withVectorIndexRebuilt(store.driver, async () => {
      await load(store, users, source, transforms, log);
      loaded = Date.now();
    });
    const done = Date.now();
    build = { load_s: round((loaded - started) / 1000, 1), index_s: round((done - loaded) / 1000, 1) };
    log(`loaded in ${build.load_s} s, table-wide index built (and VACUUM ANALYZE) in ${build.index_s} s`);
  }
  const peer = opts.peer;
  let peerLoadS: number | null = null;
  if (peer) {
    if (opts.reuse && (await peer.count()) === opts.chunks) {
      log(`peer ${peer.name}: reusing its ${opts.chunks} rows`);
    } else {
      log(`peer ${peer.name} ${peer.version}: loading the same ${opts.chunks} rows (raw vectors)`);
      const started = Date.now();
      await peer.load(peerBatches(users, bursts(users, store.embeddingDim, opts.seed, opts.shape)), log);
      peerLoadS = round((Date.now() - started) / 1000, 1);
    }
  }
  // What `relay db index-scopes` does on a server: an HNSW index of its own for each large scope.
  const scopeStarted = Date.now();
  const scopeIndexes = await store.ensureScopeIndexes({ minRows: store.tuning.exactMax, concurrently: false, log });
  const scopeIndexS = round((Date.now() - scopeStarted) / 1000, 1);
  log(`scope indexes: ${scopeIndexes.created.length} built, ${scopeIndexes.kept} kept, ${scopeIndexes.dropped.length} dropped in ${scopeIndexS} s`);

  const byKind = (kind: Kind) => users.map((u, i) => ({ u, i })).filter((x) => x.u.kind === kind);
  const makeQueries = (seed: number) => {
    const rand = rng(seed);
    const out: BenchQuery[] = [];
    kindsPresent.forEach((kind, n) => {
      const pool = byKind(kind);
      const count = Math.floor(opts.queries / kindsPresent.length) + (n < opts.queries % kindsPresent.length ? 1 : 0);
      for (let j = 0; j < count; j++) {
        const { u, i } = pool[Math.floor(rand() * pool.length)]!;
        const q = space.near(u.clusters[Math.floor(rand() * u.clusters.length)]!);
        // Q·q is computed here, outside the timed search (the service derives and applies it
        // before the search too); the exact baseline gets the same keyed query, so its top k
        // is the exact top k in the rows' own space (Q is orthogonal: the raw space's as well).
        const t = transforms?.[i];
        out.push({ user: i, raw: q, search: t ? { primary: { key: BENCH_VECTOR_KEY, vector: t.apply(q) }, others: [{ key: null, vector: q }] } : q });
      }
    });
    return out;
  };
  const queries = makeQueries(opts.seed ^ 0x9e77);

  // Steady state, as a serving replica sees it: the table and indexes in shared buffers
  // (when pg_prewarm is there and they fit), caches warmed by other queries of the same mix.
  const warmed = await prewarm(store.driver);
  const settings = await store.driver.ownerTransaction((sql) =>
    sql.query<{ sb: string; rel: string; table_bytes: string; index_bytes: string; rows: number }>(
      `SELECT current_setting('shared_buffers') AS sb, pg_size_pretty(pg_total_relation_size('memory_chunks')) AS rel,
              pg_table_size('memory_chunks') AS table_bytes, pg_indexes_size('memory_chunks') AS index_bytes,
              (SELECT count(*)::int FROM memory_chunks) AS rows`,
    ),
  );
  // Per row of the table (the bench's rows, unless the database holds others): heap and TOAST, and every index.
  const sizes = settings.rows[0];
  const perRow = (bytes: string | undefined) => (sizes && sizes.rows > 0 ? Math.round(Number(bytes) / sizes.rows) : null);
  const sharedBuffers = sizes?.sb ?? 'unknown';
  log(`shared_buffers ${sharedBuffers}, memory_chunks with indexes ${sizes?.rel}; prewarmed: ${warmed.length > 0 ? warmed.join(', ') : 'no (pg_prewarm missing)'}`);
  log('warming up with a different query set of the same mix');
  await runQueries(store, users, makeQueries(opts.seed ^ 0x3a3a), k, peer);
  log(`running ${queries.length} filtered searches${peer ? `, each beside the same search on ${peer.name}` : ''}`);
  const { samples: ann, peer: theirs } = await runQueries(store, users, queries, k, peer);
  log('running the same searches exactly (baseline)');
  const { samples: exact } = await runQueries(exactStore, users, queries, k);

  const sortedMs = (samples: Sample[], idx: number[]) => idx.map((i) => samples[i]!.ms).sort((a, b) => a - b);
  const p95Of = (samples: Sample[], idx: number[]) => quantile(sortedMs(samples, idx), 0.95);
  const summarize = (samples: Sample[], idx: number[]) => {
    const ms = sortedMs(samples, idx);
    let underfilled = 0;
    for (const i of idx) if (samples[i]!.ids.length < samples[i]!.expected) underfilled++;
    return {
      queries: idx.length,
      p50_ms: round(quantile(ms, 0.5)),
      p95_ms: round(quantile(ms, 0.95)),
      // A kind with no queries (fewer than three in all) has no recall, not a perfect one.
      recall_at_10: idx.length > 0 ? round(recallAt(idx.map((i) => ({ got: samples[i]!.ids, truth: exact[i]!.ids })), k), 4) : null,
      underfilled,
    };
  };
  const withExact = (idx: number[]) => {
    const ems = sortedMs(exact, idx);
    return { ...summarize(ann, idx), exact_p50_ms: round(quantile(ems, 0.5)), exact_p95_ms: round(quantile(ems, 0.95)) };
  };
  const ofKind = (kind: Kind) => ann.flatMap((s, i) => (s.kind === kind ? [i] : []));
  const everyIdx = ann.map((_, i) => i);
  const all = withExact(everyIdx);
  const kinds = Object.fromEntries(kindsPresent.map((kind) => [kind, withExact(ofKind(kind))]));
  // Per kind, relay's p95 over the peer's (from the unrounded times): the goal is ≤ 0.5 on every kind.
  const peerSummary = peer && {
    name: peer.name,
    version: peer.version,
    load_s: peerLoadS,
    ...summarize(theirs, everyIdx),
    kinds: Object.fromEntries(kindsPresent.map((kind) => [kind, summarize(theirs, ofKind(kind))])),
    p95_ratio: Object.fromEntries(
      [['all', everyIdx] as const, ...kindsPresent.map((kind) => [kind, ofKind(kind)] as const)].map(([name, idx]) => [
        name,
        round(ratioTo(p95Of(ann, idx), p95Of(theirs, idx), `the peer's p95 (${name})`), 3),
      ]),
    ),
  };
  const strategies: Record<string, number> = {};
  for (const s of ann) strategies[s.strategy] = (strategies[s.strategy] ?? 0) + 1;

  if (!opts.keep) {
    await cleanup(store, users);
    await store.ensureScopeIndexes({ minRows: store.tuning.exactMax, concurrently: false, log });
    await peer?.drop();
  }
  const heavyStats = kinds.heavy;
  return {
    bench: 'ann',
    chunks: opts.chunks,
    shape: opts.shape,
    dim: store.embeddingDim,
    k,
    transform: mode,
    ...all,
    heavy_p95_ms: heavyStats?.p95_ms ?? null,
    heavy_recall_at_10: heavyStats?.recall_at_10 ?? null,
    // From the unrounded times: a rounded exact p95 could read 0.
    p95_vs_exact: round(ratioTo(p95Of(ann, everyIdx), p95Of(exact, everyIdx), 'the exact search p95'), 3),
    shared_buffers: sharedBuffers,
    table_bytes_per_chunk: perRow(sizes?.table_bytes),
    index_bytes_per_chunk: perRow(sizes?.index_bytes),
    prewarmed: warmed.length > 0,
    ...build,
    scope_indexes: scopeIndexes.created.length + scopeIndexes.kept,
    scope_index_s: scopeIndexS,
    strategies,
    kinds,
    ...(peerSummary ? { peer: peerSummary } : {}),
  };
}

/** The rows as the peer files them, in batches of up to 1,000 (raw vectors, tenant and user hash as metadata). */
function* peerBatches(users: BenchUser[], source: Iterable<BenchBurst>): Generator<PeerRow[]> {
  let batch: PeerRow[] = [];
  for (const b of source) {
    const user = users[b.user]!;
    for (const r of b.rows) batch.push({ id: r.id, tenant: user.scope.tenantId, user: user.scope.userHash.toString('hex'), vector: r.vector });
    if (batch.length >= 1000) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
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

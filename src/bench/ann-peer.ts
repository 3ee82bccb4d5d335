/**
 * A peer for `relay bench ann --peer mastra`: Mastra's `PgVector` (`@mastra/pg`), on the same
 * database, loaded with the same rows (raw vectors; tenant and user as metadata with B-tree
 * indexes, as its docs advise for per-user filters) and asked the same queries, interleaved
 * with relay's query by query. Not a dependency of relay: installed for the comparison with
 * `npm install --no-save @mastra/pg@1.27.1 @mastra/core@1.71.0`.
 */

export const PEER_INSTALL = 'npm install --no-save @mastra/pg@1.27.1 @mastra/core@1.71.0';

/** The table (Mastra's "index") the peer's rows live in. */
const INDEX_NAME = 'relay_bench_ann_peer';

export interface PeerRow {
  id: string;
  tenant: string;
  /** The user's hash in hex: what a service of that kind would file the row under. */
  user: string;
  vector: Float32Array;
}

export interface AnnPeer {
  name: string;
  version: string;
  /** Rows the peer holds now (0 when its table is missing). */
  count(): Promise<number>;
  /** Drops what an earlier run left, writes the rows, then builds the HNSW index. */
  load(rows: Iterable<PeerRow[]>, log: (line: string) => void): Promise<void>;
  /** The ids of the k nearest rows of one user. */
  query(tenant: string, user: string, vector: Float32Array, k: number): Promise<string[]>;
  drop(): Promise<void>;
  close(): Promise<void>;
}

/** What the bench uses of `@mastra/pg` 1.27 (typed here: the package is not installed with relay). */
interface PgVectorLike {
  createIndex(args: {
    indexName: string;
    dimension: number;
    metric: 'cosine';
    indexConfig?: { type: 'hnsw'; hnsw: { m: number; efConstruction: number } };
    buildIndex?: boolean;
    metadataIndexes?: string[];
  }): Promise<void>;
  buildIndex(args: { indexName: string; metric: 'cosine'; indexConfig: { type: 'hnsw'; hnsw: { m: number; efConstruction: number } } }): Promise<void>;
  upsert(args: { indexName: string; vectors: number[][]; metadata: Array<Record<string, string>>; ids: string[] }): Promise<string[]>;
  query(args: { indexName: string; queryVector: number[]; topK: number; filter: Record<string, string> }): Promise<Array<{ id: string }>>;
  describeIndex(args: { indexName: string }): Promise<{ count: number }>;
  listIndexes(): Promise<string[]>;
  deleteIndex(args: { indexName: string }): Promise<void>;
  disconnect(): Promise<void>;
}

interface MastraPgModule {
  PgVector: new (config: { id: string; connectionString: string }) => PgVectorLike;
}

/** HNSW as relay builds it (migration 0008), so the two differ in how they search, not in the graph. */
const HNSW = { type: 'hnsw' as const, hnsw: { m: 16, efConstruction: 128 } };

/** Opens the peer on `connectionString` (a role that may create tables: the bench's owner role). */
export async function mastraPeer(connectionString: string, dim: number): Promise<AnnPeer> {
  // A name in a variable: the compiler does not look for a package relay does not install.
  const specifier = '@mastra/pg';
  let mod: MastraPgModule;
  try {
    mod = (await import(specifier)) as MastraPgModule;
  } catch (err) {
    throw new Error(`bench ann --peer mastra needs @mastra/pg, which relay does not install: run \`${PEER_INSTALL}\` first (${(err as Error).message.split('\n')[0]})`);
  }
  const version = await packageVersion();
  const db = new mod.PgVector({ id: 'relay-bench-peer', connectionString });
  return {
    name: 'mastra',
    version,
    async count() {
      if (!(await db.listIndexes()).includes(INDEX_NAME)) return 0;
      return (await db.describeIndex({ indexName: INDEX_NAME })).count;
    },
    async load(rows, log) {
      if ((await db.listIndexes()).includes(INDEX_NAME)) await db.deleteIndex({ indexName: INDEX_NAME });
      await db.createIndex({ indexName: INDEX_NAME, dimension: dim, metric: 'cosine', buildIndex: false, metadataIndexes: ['tenant', 'user'] });
      const started = Date.now();
      let written = 0;
      for (const batch of rows) {
        await db.upsert({
          indexName: INDEX_NAME,
          vectors: batch.map((r) => Array.from(r.vector)),
          metadata: batch.map((r) => ({ tenant: r.tenant, user: r.user })),
          ids: batch.map((r) => r.id),
        });
        written += batch.length;
        if (written % 50000 < batch.length) log(`peer: loaded ${written} rows (${Math.round(written / ((Date.now() - started) / 1000))}/s)`);
      }
      const indexStarted = Date.now();
      await db.buildIndex({ indexName: INDEX_NAME, metric: 'cosine', indexConfig: HNSW });
      log(`peer: HNSW built in ${((Date.now() - indexStarted) / 1000).toFixed(1)} s`);
    },
    async query(tenant, user, vector, k) {
      const hits = await db.query({ indexName: INDEX_NAME, queryVector: Array.from(vector), topK: k, filter: { tenant, user } });
      return hits.map((h) => h.id);
    },
    async drop() {
      if ((await db.listIndexes()).includes(INDEX_NAME)) await db.deleteIndex({ indexName: INDEX_NAME });
    },
    close: () => db.disconnect(),
  };
}

async function packageVersion(): Promise<string> {
  try {
    const { createRequire } = await import('node:module');
    const { readFile } = await import('node:fs/promises');
    const main = createRequire(import.meta.url).resolve('@mastra/pg');
    const root = main.slice(0, main.lastIndexOf('/node_modules/@mastra/pg/') + '/node_modules/@mastra/pg/'.length);
    const path = `${root}package.json`;
    return (JSON.parse(await readFile(path, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

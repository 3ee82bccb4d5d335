import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { currentVersion, latestVersion, migrateDown, migrateUp, scopeIndexName, withVectorIndexRebuilt, type Store } from '../src/store/index.ts';
import { vectorIndexDef } from '../src/store/bulk-load.ts';
import { chunk, ClusteredSpace, scopeOf, testTenant } from './helpers/fixtures.ts';
import { postgresBinDir, startPgCluster, withClient, type PgCluster } from './helpers/pg-cluster.ts';
import { serverTargetAt } from './helpers/targets.ts';

const bin = postgresBinDir();
const skip = bin ? false : 'no PostgreSQL binaries (initdb, pg_ctl) on this machine: this suite needs a cluster of its own';
if (!bin) console.log(`# hnsw-build-shm skipped: ${skip}`);

// A parallel HNSW build asks for one dynamic shared memory segment of the whole
// maintenance_work_mem. Docker's /dev/shm is 64 MB; this cluster's processes may write no file
// above 32 MB, so any such segment above it fails the same way, and every table is big enough
// for a parallel build (min_parallel_table_scan_size 0).
const LIMIT = 32 * 2 ** 20;

describe('HNSW builds where shared memory is short (Docker /dev/shm)', { skip }, () => {
  let cluster: PgCluster;
  let store: Store;
  const vars = { embeddingDim: 0, appRole: 'app_user' };

  before(async () => {
    // startPgCluster runs `relay db setup`: migrations 0007 and 0008 each build the table-wide
    // index with maintenance_work_mem 1 GB.
    cluster = await startPgCluster(bin!, { settings: ['min_parallel_table_scan_size=0', 'max_parallel_maintenance_workers=2'], fileSizeBytes: LIMIT });
    store = await serverTargetAt(cluster.appUrl, cluster.ownerUrl).open({ search: { exactMax: 1 } });
    vars.embeddingDim = store.embeddingDim;
  });

  after(async () => {
    await store?.close();
    cluster?.destroy();
  });

  const invalidIndexes = () =>
    withClient(cluster.adminUrl.replace(/\/postgres$/, '/relay_faults'), async (c) =>
      (await c.query<{ name: string }>("SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = 'memory_chunks'::regclass AND NOT indisvalid")).rows.map((r) => r.name),
    );

  it('cannot build in parallel with 1 GB, nor with 64 MB: the failure the rest recovers from', async () => {
    await withClient(cluster.adminUrl.replace(/\/postgres$/, '/relay_faults'), async (c) => {
      for (const mem of ['1GB', '64MB']) {
        await c.query('BEGIN');
        await c.query(`SET LOCAL maintenance_work_mem = '${mem}'`);
        await assert.rejects(
          c.query(`CREATE INDEX shm_probe ON memory_chunks USING hnsw ((embedding::halfvec(${store.embeddingDim})) halfvec_cosine_ops)`),
          (err: Error & { code?: string }) => ['53100', '53200'].includes(err.code ?? '') && /shared memory segment/.test(err.message),
        );
        await c.query('ROLLBACK');
        // Serially, the same build goes through.
        await c.query('BEGIN');
        await c.query(`SET LOCAL maintenance_work_mem = '${mem}'`);
        await c.query('SET LOCAL max_parallel_maintenance_workers = 0');
        await c.query(`CREATE INDEX shm_probe ON memory_chunks USING hnsw ((embedding::halfvec(${store.embeddingDim})) halfvec_cosine_ops)`);
        await c.query('ROLLBACK');
      }
    });
  });

  it('migrations that build the index apply (0007, 0008 at 1 GB), revert and apply again, with rows in the table', async (t) => {
    assert.equal(await currentVersion(store.driver), latestVersion());
    const space = new ClusteredSpace(store.embeddingDim, 4, 3, 0.05);
    const scope = scopeOf(testTenant('shm-migrate'), 'u');
    await store.withScope(scope, (c) => c.insert(Array.from({ length: 40 }, (_, i) => chunk(`m${i}`, space.near(i % 4)))));
    t.after(() => store.withScope(scope, (c) => c.deleteAll()));
    assert.deepEqual(await migrateDown(store.driver, vars, 6), [8, 7]);
    assert.deepEqual(await migrateUp(store.driver, vars), [7, 8]);
    const def = await store.driver.ownerTransaction(vectorIndexDef);
    assert.match(def ?? '', /USING hnsw \(\(\(embedding\)::halfvec\(\d+\)\) halfvec_cosine_ops\) WITH \(m='16', ef_construction='128'\)/);
    assert.deepEqual(await invalidIndexes(), []);
    // The search uses it and finds the rows.
    const found = await store.withScope(scope, (c) => c.search(space.near(1), 5));
    assert.equal(found.strategy, 'hnsw');
    assert.equal(found.hits.length, 5);
  });

  it('relay db index-scopes builds the scope indexes without parallel workers once one could not, and leaves nothing invalid', async () => {
    const space = new ClusteredSpace(store.embeddingDim, 4, 5, 0.05);
    const tenant = testTenant('shm-scopes');
    const big = scopeOf(tenant, 'big');
    const other = scopeOf(tenant, 'other');
    await store.withScope(big, (c) => c.insert(Array.from({ length: 30 }, (_, i) => chunk(`b${i}`, space.near(i % 4)))));
    await store.withScope(other, (c) => c.insert(Array.from({ length: 30 }, (_, i) => chunk(`o${i}`, space.near(i % 4)))));
    const lines: string[] = [];
    const report = await store.ensureScopeIndexes({ minRows: 20, maxShare: 0.6, log: (l) => lines.push(l) });
    const names = [scopeIndexName(big.tenantId, big.userHash), scopeIndexName(other.tenantId, other.userHash)];
    assert.deepEqual([...report.created].sort(), [...names].sort());
    // The first build finds the shared memory short and goes again serially; the run's other builds
    // start serially (the setting holds for the session).
    const fallbacks = lines.filter((l) => / could not resize shared memory segment .*; building it again without parallel workers$/.test(l));
    assert.equal(fallbacks.length, 1, lines.join('\n'));
    assert.ok(names.some((name) => fallbacks[0]!.startsWith(`${name}: `)), lines.join('\n'));
    assert.deepEqual(await invalidIndexes(), []);
    // Built and used: a second run keeps both.
    const again = await store.ensureScopeIndexes({ minRows: 20, maxShare: 0.6 });
    assert.deepEqual(again.created, []);
    assert.equal(again.kept, 2);
    await store.withScope(big, (c) => c.deleteAll());
    await store.withScope(other, (c) => c.deleteAll());
    await store.ensureScopeIndexes({ minRows: 20, maxShare: 0.6 });
  });

  it('a bulk load rebuilds the table-wide index', async () => {
    const space = new ClusteredSpace(store.embeddingDim, 4, 7, 0.05);
    const scope = scopeOf(testTenant('shm-bulk'), 'u');
    await withVectorIndexRebuilt(store.driver, async () => {
      await store.withScope(scope, (c) => c.insert(Array.from({ length: 40 }, (_, i) => chunk(`l${i}`, space.near(i % 4)))));
    });
    assert.match((await store.driver.ownerTransaction(vectorIndexDef)) ?? '', /ef_construction='128'/);
    assert.deepEqual(await invalidIndexes(), []);
    await store.withScope(scope, (c) => c.deleteAll());
  });
});

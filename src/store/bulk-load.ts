import { buildingTransaction, buildMemoryMb } from './hnsw-build.ts';
import type { Driver, SqlClient } from './sql-client.ts';

/** The table-wide HNSW index (migration 0001). */
export const VECTOR_INDEX = 'memory_chunks_embedding_hnsw_idx';

/** The table-wide HNSW index's CREATE INDEX statement, from the catalog; null when it is missing. */
export async function vectorIndexDef(sql: SqlClient): Promise<string | null> {
  const def = await sql.query<{ def: string | null }>('SELECT pg_get_indexdef(to_regclass($1)) AS def', [VECTOR_INDEX]);
  return def.rows[0]?.def ?? null;
}

/**
 * Runs a bulk load with the HNSW index dropped and builds it once afterwards (as the
 * owner): one build is far cheaper than as many incremental inserts. The index is
 * recreated from its own definition even when the load fails. Searches during the
 * load fall back to exact scans, so this is for scratch databases, benchmarks and
 * tests, not for a live service.
 */
export async function withVectorIndexRebuilt(driver: Driver, load: () => Promise<void>): Promise<void> {
  const indexDef = await driver.ownerTransaction(vectorIndexDef);
  if (!indexDef) throw new Error(`${VECTOR_INDEX} not found: run migrations first`);
  await driver.ownerTransaction((sql) => sql.exec(`DROP INDEX ${VECTOR_INDEX}`));
  try {
    await load();
  } finally {
    await buildingTransaction(driver, async (sql) => {
      // PGlite keeps 1 GB: its WebAssembly heap is the whole process's, it builds serially, and
      // past the setting the build only slows.
      const mb = driver.kind === 'pg' ? buildMemoryMb((await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks')).rows[0]?.n ?? 0) : 1024;
      await sql.exec(`SET LOCAL maintenance_work_mem = '${mb}MB'`);
      await sql.exec(indexDef);
    });
    // Sets the visibility map too, so scope counts are index-only from the start.
    await driver.ownerSession((sql) => sql.exec('VACUUM (ANALYZE) memory_chunks'));
  }
}

/**
 * Loads memory_chunks and all its indexes (the per-scope ones too) into shared buffers with pg_prewarm, when the
 * extension is installed (`relay db setup` installs it). Returns the relations warmed,
 * or an empty list when pg_prewarm is not there.
 */
export async function prewarm(driver: Driver): Promise<string[]> {
  const has = await driver.ownerTransaction((sql) => sql.query("SELECT 1 FROM pg_extension WHERE extname = 'pg_prewarm'"));
  if (has.rowCount === 0) return [];
  const warmed = await driver.ownerTransaction((sql) =>
    sql.query<{ rel: string }>(
      `SELECT r.oid::regclass::text AS rel, pg_prewarm(r.oid) FROM pg_class r
        WHERE r.oid = 'memory_chunks'::regclass OR r.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'memory_chunks'::regclass)`,
    ),
  );
  return warmed.rows.map((r) => r.rel);
}

import type { Driver } from './sql-client.ts';

const VECTOR_INDEX = 'memory_chunks_embedding_hnsw_idx';

/**
 * Runs a bulk load with the HNSW index dropped and builds it once afterwards (as the
 * owner): one build is far cheaper than as many incremental inserts. The index is
 * recreated from its own definition even when the load fails. Searches during the
 * load fall back to exact scans, so this is for scratch databases, benchmarks and
 * tests, not for a live service.
 */
export async function withVectorIndexRebuilt(driver: Driver, load: () => Promise<void>): Promise<void> {
  const def = await driver.ownerTransaction((sql) =>
    sql.query<{ def: string | null }>('SELECT pg_get_indexdef(to_regclass($1)) AS def', [VECTOR_INDEX]),
  );
  const indexDef = def.rows[0]?.def;
  if (!indexDef) throw new Error(`${VECTOR_INDEX} not found: run migrations first`);
  await driver.ownerTransaction((sql) => sql.exec(`DROP INDEX ${VECTOR_INDEX}`));
  try {
    await load();
  } finally {
    await driver.ownerTransaction(async (sql) => {
      await sql.exec("SET LOCAL maintenance_work_mem = '1GB'");
      await sql.exec(indexDef);
      await sql.exec('ANALYZE memory_chunks');
    });
  }
}

import { sqlState } from './errors.ts';
import type { Driver, SqlClient } from './sql-client.ts';

/**
 * maintenance_work_mem for an HNSW build over `rows` rows: 2 KB a row in steps of 64 MB, at least
 * 64 MB (PostgreSQL's default) and at most 4 GB. A 384-d halfvec graph (m 16) takes 1.55 KB a row in
 * memory (pgvector's notice: 128 MB no longer held it after 86,696 rows); past the setting, pgvector
 * finishes the build by inserting the remaining rows one at a time, far slower.
 *
 * Not more than that: a parallel build asks PostgreSQL for one dynamic shared memory segment of the
 * whole setting, whatever the table's size, and where /dev/shm is small (Docker's default is 64 MB)
 * that fails (`could not resize shared memory segment`); see withSerialBuildFallback.
 */
export function buildMemoryMb(rows: number): number {
  return Math.min(4096, Math.max(64, Math.ceil((rows * 2) / 1024 / 64) * 64));
}

/**
 * PostgreSQL could not size a dynamic shared memory segment: 53100 (disk_full: ENOSPC, a /dev/shm
 * too small for it) or 53200 (out_of_memory: EFBIG, ENOMEM).
 */
export function isSharedMemoryShortage(err: unknown): boolean {
  const state = sqlState(err);
  return state === '53100' || state === '53200';
}

/** Turns parallel index builds off for the rest of the transaction (`local`) or the session. */
export async function serialBuilds(sql: SqlClient, local: boolean): Promise<void> {
  await sql.exec(`SET ${local ? 'LOCAL ' : ''}max_parallel_maintenance_workers = 0`);
}

/**
 * Runs `build` (statements that create HNSW indexes, `serial` false); when PostgreSQL cannot get
 * the shared memory a parallel build asks for (see buildMemoryMb), runs it once more with `serial`
 * true, where it must call serialBuilds first: a serial build takes its memory in its own backend,
 * as it goes. Anything else, or a second failure, is thrown as it came.
 */
export async function withSerialBuildFallback<T>(build: (serial: boolean) => Promise<T>, onFallback?: (err: Error) => void): Promise<T> {
  try {
    return await build(false);
  } catch (err) {
    if (!isSharedMemoryShortage(err)) throw err;
    onFallback?.(err as Error);
    return build(true);
  }
}

/**
 * An owner transaction whose statements build HNSW indexes (a migration, a bulk load's rebuild):
 * run once more, whole and with parallel builds off, when shared memory was short.
 */
export function buildingTransaction<T>(driver: Driver, fn: (sql: SqlClient) => Promise<T>): Promise<T> {
  return withSerialBuildFallback((serial) =>
    driver.ownerTransaction(async (sql) => {
      if (serial) await serialBuilds(sql, true);
      return fn(sql);
    }),
  );
}

import { createHash } from 'node:crypto';
import { VECTOR_INDEX, vectorIndexDef } from './bulk-load.ts';
import { buildMemoryMb, serialBuilds, withSerialBuildFallback } from './hnsw-build.ts';
import type { Driver, SqlClient } from './sql-client.ts';

/** Partial HNSW indexes made here are named with this prefix (and nothing else is). */
export const SCOPE_INDEX_PREFIX = 'memory_chunks_hnsw_scope_';

export interface ScopeIndexOptions {
  /** Scopes with at least this many rows get an HNSW index of their own. Default 2000. */
  minRows?: number;
  /**
   * Scopes holding more than this share of the table are left to the table-wide index:
   * its filter then keeps most of what it finds, and measured, a partial index gave them
   * no better latency and worse recall (docs/benchmarks.md). Default 0.2.
   */
  maxShare?: number;
  /**
   * Build without blocking writes (`CREATE INDEX CONCURRENTLY`). Default true on a
   * server; the embedded store has one connection and builds plainly.
   */
  concurrently?: boolean;
  /** Progress lines for the CLI. */
  log?: (line: string) => void;
}

export interface ScopeIndexReport {
  created: string[];
  dropped: string[];
  kept: number;
}

/** Stable, short and opaque: the index name says nothing about the tenant or user. */
export function scopeIndexName(tenantId: string, userHash: Buffer): string {
  const digest = createHash('sha256').update(`${tenantId.length}:${tenantId}`).update(userHash).digest('hex');
  return `${SCOPE_INDEX_PREFIX}${digest.slice(0, 24)}`;
}

/**
 * The per-scope indexes on the table, with whether each is usable: an invalid one is what a
 * failed concurrent build leaves. Readable by the application role too (the catalog).
 */
export async function listScopeIndexes(sql: SqlClient): Promise<Array<{ name: string; valid: boolean }>> {
  const res = await sql.query<{ name: string; valid: boolean }>(
    `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = 'memory_chunks'::regclass AND starts_with(c.relname, $1)`,
    [SCOPE_INDEX_PREFIX],
  );
  return res.rows;
}

/**
 * Gives every large scope (one user of one tenant) an HNSW index of its own, a partial
 * index whose predicate is that scope, and drops the ones whose scope has shrunk to a
 * quarter of the threshold (erasure, expiry).
 *
 * Why: the table-wide HNSW index serves a scope through a filter. For a user holding a
 * few percent of the rows, an iterative scan walks past many other users' neighbours
 * before it has k of its own; a partial index holds only that user's rows, so the same
 * search reads a small graph and nothing is filtered away. The planner picks the partial
 * index by itself when the query's `tenant_id = $1 AND user_hash = $2` (planned with its
 * values) implies the predicate. Scopes below the threshold are searched exactly.
 *
 * Runs as the owner (it is DDL); meant for `relay db index-scopes` from a timer and for
 * bulk loads. The predicate's values are quoted by the server (`format('%L')`).
 */
export async function ensureScopeIndexes(driver: Driver, opts: ScopeIndexOptions = {}): Promise<ScopeIndexReport> {
  const minRows = opts.minRows ?? 2000;
  if (!Number.isInteger(minRows) || minRows < 1) throw new RangeError('minRows must be a positive integer');
  const maxShare = opts.maxShare ?? 0.2;
  const concurrently = (opts.concurrently ?? true) && driver.kind === 'pg';
  const log = opts.log ?? (() => undefined);

  // One session, holding a lock that a second run (another timer, another replica) does not get.
  return driver.ownerSession(async (sql) => {
    const lock = await sql.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext('relay.index-scopes')) AS ok");
    if (!lock.rows[0]?.ok) throw new Error('another relay db index-scopes run holds the lock; try again when it is done');
    try {
      // One scan: each scope large enough to matter, and the table's total beside it.
      const scopes = await sql.query<{ tenant_id: string; user_hash: Buffer; n: number; total: number }>(
        `SELECT tenant_id, user_hash, n, total FROM (
           SELECT tenant_id, user_hash, count(*)::int AS n, (sum(count(*)) OVER ())::int AS total
             FROM memory_chunks GROUP BY tenant_id, user_hash) s
          WHERE n >= $1`,
        [Math.max(1, Math.floor(minRows / 4))],
      );
      const total = scopes.rows[0]?.total ?? 0;
      const indexes = await listScopeIndexes(sql);
      const existing = new Set(indexes.filter((r) => r.valid).map((r) => r.name));
      const invalid = indexes.filter((r) => !r.valid).map((r) => r.name);
      // Each scope's index is the table-wide one restricted to the scope: the same expression,
      // operator class and build options (what the search orders by), read from the catalog.
      const method = /\sUSING hnsw (.+)$/.exec((await vectorIndexDef(sql)) ?? '')?.[1];
      if (!method) throw new Error(`${VECTOR_INDEX} is missing or not an HNSW index: run migrations first`);

      const wanted = new Map<string, { tenantId: string; userHash: Buffer; rows: number }>();
      const keepable = new Set<string>();
      for (const s of scopes.rows) {
        const name = scopeIndexName(s.tenant_id, s.user_hash);
        if (s.n <= maxShare * total) keepable.add(name);
        if (s.n >= minRows && s.n <= maxShare * total) wanted.set(name, { tenantId: s.tenant_id, userHash: s.user_hash, rows: s.n });
      }

      const report: ScopeIndexReport = { created: [], dropped: [], kept: 0 };
      for (const name of [...existing, ...invalid]) {
        if (keepable.has(name) && existing.has(name)) continue;
        log(`dropping ${name} (${existing.has(name) ? 'its scope is gone or small' : 'left invalid by a failed build'})`);
        await sql.exec(`DROP INDEX ${concurrently ? 'CONCURRENTLY ' : ''}IF EXISTS ${name}`);
        report.dropped.push(name);
      }
      for (const [name, scope] of wanted) {
        if (existing.has(name)) {
          report.kept++;
          continue;
        }
        log(`building ${name} for a scope of ${scope.rows} rows`);
        const ddl = await sql.query<{ ddl: string }>(
          `SELECT format('CREATE INDEX ${concurrently ? 'CONCURRENTLY ' : ''}IF NOT EXISTS %I ON memory_chunks USING hnsw %s WHERE tenant_id = %L AND user_hash = %L::bytea', $1::text, $4::text, $2::text, '\\x' || encode($3::bytea, 'hex')) AS ddl`,
          [name, scope.tenantId, scope.userHash, method],
        );
        if (driver.kind === 'pg') await sql.exec(`SET maintenance_work_mem = '${buildMemoryMb(scope.rows)}MB'`);
        await withSerialBuildFallback(
          async (serial) => {
            if (serial) {
              // A failed CONCURRENTLY build leaves its index behind, invalid: IF NOT EXISTS would keep it.
              // Serial from here to the end of the run: the next scope's build would fail the same way.
              await sql.exec(`DROP INDEX ${concurrently ? 'CONCURRENTLY ' : ''}IF EXISTS ${name}`);
              await serialBuilds(sql, false);
            }
            await sql.exec(ddl.rows[0]!.ddl);
          },
          (err) => log(`${name}: ${err.message}; building it again without parallel workers`),
        );
        report.created.push(name);
      }
      if (report.created.length > 0 || report.dropped.length > 0) {
        await sql.exec('ANALYZE memory_chunks');
      }
      return report;
    } finally {
      if (driver.kind === 'pg') {
        await sql.exec('RESET maintenance_work_mem');
        await sql.exec('RESET max_parallel_maintenance_workers');
      }
      await sql.query("SELECT pg_advisory_unlock(hashtext('relay.index-scopes'))");
    }
  });
}

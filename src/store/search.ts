import type { SqlClient } from './sql-client.ts';

/** How the nearest neighbours of one scope are found. */
export interface SearchTuning {
  /**
   * Scopes with at most this many rows are searched exactly (B-tree on tenant/user,
   * then a distance sort). Larger scopes use HNSW with iterative scans. Default 20000.
   */
  exactMax: number;
  /** `hnsw.ef_search` for large scopes. Default 100. */
  efSearch: number;
  /** `hnsw.max_scan_tuples`: how far an iterative scan may go before giving up. Default 20000. */
  maxScanTuples: number;
}

export const DEFAULT_SEARCH_TUNING: SearchTuning = { exactMax: 20000, efSearch: 100, maxScanTuples: 20000 };

export type SearchStrategy = 'exact' | 'hnsw' | 'hnsw_then_exact';

export interface Neighbour {
  id: string;
  distance: number;
}

export interface NeighbourResult {
  neighbours: Neighbour[];
  strategy: SearchStrategy;
}

const LIVE = '(expires_at IS NULL OR expires_at > now())';

/** Upper bound on the scope's rows, capped at `cap` so large scopes cost no more than small ones. */
async function scopeSize(sql: SqlClient, tenantId: string, userHash: Buffer, cap: number): Promise<number> {
  const res = await sql.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM (SELECT 1 FROM memory_chunks WHERE tenant_id = $1 AND user_hash = $2 LIMIT $3) s',
    [tenantId, userHash, cap],
  );
  return res.rows[0]?.n ?? 0;
}

/**
 * Every live row of the scope, by distance. MATERIALIZED keeps the planner from
 * answering with the HNSW index, whose post-filter could return fewer than k rows.
 */
async function exact(sql: SqlClient, tenantId: string, userHash: Buffer, vector: string, k: number): Promise<Neighbour[]> {
  const res = await sql.query<{ id: string; distance: number }>(
    `WITH c AS MATERIALIZED (
       SELECT id, embedding <=> $3::vector AS distance FROM memory_chunks
       WHERE tenant_id = $1 AND user_hash = $2 AND ${LIVE})
     SELECT id, distance FROM c ORDER BY distance, id LIMIT $4`,
    [tenantId, userHash, vector, k],
  );
  return res.rows;
}

/** HNSW with pgvector 0.8's iterative scan, re-sorted because relaxed order may swap neighbours. */
async function approximate(sql: SqlClient, tenantId: string, userHash: Buffer, vector: string, k: number, tuning: SearchTuning): Promise<Neighbour[]> {
  await sql.query(
    `SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),
            set_config('hnsw.max_scan_tuples', $2, true)`,
    [String(Math.max(tuning.efSearch, k)), String(tuning.maxScanTuples)],
  );
  const res = await sql.query<{ id: string; distance: number }>(
    `WITH c AS MATERIALIZED (
       SELECT id, embedding <=> $3::vector AS distance FROM memory_chunks
       WHERE tenant_id = $1 AND user_hash = $2 AND ${LIVE}
       ORDER BY embedding <=> $3::vector LIMIT $4)
     SELECT id, distance FROM c ORDER BY distance, id`,
    [tenantId, userHash, vector, k],
  );
  return res.rows;
}

/**
 * The k nearest live rows of one scope: always min(k, live rows in scope).
 * Small scopes are searched exactly; large ones with HNSW, and when the index comes
 * back short (a selective filter, expired rows) the exact search answers instead.
 */
export async function nearestInScope(
  sql: SqlClient,
  tenantId: string,
  userHash: Buffer,
  vector: string,
  k: number,
  tuning: SearchTuning,
): Promise<NeighbourResult> {
  const size = await scopeSize(sql, tenantId, userHash, tuning.exactMax + 1);
  if (size <= tuning.exactMax) return { neighbours: await exact(sql, tenantId, userHash, vector, k), strategy: 'exact' };
  const found = await approximate(sql, tenantId, userHash, vector, k, tuning);
  if (found.length >= k) return { neighbours: found, strategy: 'hnsw' };
  return { neighbours: await exact(sql, tenantId, userHash, vector, k), strategy: 'hnsw_then_exact' };
}

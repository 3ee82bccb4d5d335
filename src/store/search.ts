import type { Settings, SqlClient } from './sql-client.ts';

/** How the nearest neighbours of one scope are found. */
export interface SearchTuning {
  /**
   * Scopes with at most this many rows are searched exactly (B-tree on tenant/user,
   * then a distance sort). Larger scopes use HNSW with iterative scans. Default 2000.
   */
  exactMax: number;
  /** `hnsw.ef_search` for a large scope with an HNSW index of its own. Default 100. */
  efSearch: number;
  /**
   * `hnsw.ef_search` for a large scope served by the table-wide index: what its walk finds is
   * shared with other scopes, whose rows the filter drops, so it looks further to keep recall
   * (measured: docs/benchmarks.md, "the TID fetch, halfvec indexes, ef_search per index"). Default 150.
   */
  efSearchShared: number;
  /** `hnsw.max_scan_tuples`: how far an iterative scan may go before giving up. Default 20000. */
  maxScanTuples: number;
}

export const DEFAULT_SEARCH_TUNING: SearchTuning = { exactMax: 2000, efSearch: 100, efSearchShared: 150, maxScanTuples: 20000 };

/**
 * Transaction-local pgvector settings, applied with the scope in the transaction's
 * first statement. Relaxed order lets an iterative scan go on past rows the scope
 * filter drops; the query re-sorts what it returns.
 */
export function searchSettings(tuning: SearchTuning, scope: { ownIndex: boolean } = { ownIndex: false }): Settings {
  return [
    // The search statement is prepared once per connection. A scope with an HNSW index of its
    // own needs a plan made with its values (a generic plan cannot prove the partial index's
    // predicate); any other scope may get PostgreSQL's cached generic plan and skip planning.
    ['plan_cache_mode', scope.ownIndex ? 'force_custom_plan' : 'force_generic_plan'],
    ['hnsw.ef_search', String(scope.ownIndex ? tuning.efSearch : tuning.efSearchShared)],
    ['hnsw.iterative_scan', 'relaxed_order'],
    ['hnsw.max_scan_tuples', String(tuning.maxScanTuples)],
    // The HNSW branch runs only for a large scope, but the planner prices it before the
    // count is known and, from column statistics, may guess the scope is small and plan a
    // B-tree scan plus a sort of the whole scope. Pricing sorts out leaves it the vector
    // indexes (the scope's own partial one when `relay db index-scopes` built it); the
    // sorts the statement needs (top-k of the exact branch, the final order) stay.
    ['enable_sort', 'off'],
    // …which pushes the statement's estimated cost past jit_above_cost: compiling it would
    // take far longer (hundreds of ms) than running it.
    ['jit', 'off'],
  ];
}

export type SearchStrategy = 'exact' | 'hnsw' | 'hnsw_then_exact';

export interface Neighbour<R> {
  row: R;
  distance: number;
}

export interface NeighbourResult<R> {
  neighbours: Array<Neighbour<R>>;
  strategy: SearchStrategy;
}

/**
 * Extra conditions a search applies besides the scope (the active embedder, a metadata filter).
 * Given the number of its first parameter, it returns a boolean SQL expression and its
 * parameters. Its text must depend only on the condition's shape, never on values: the
 * statement is prepared and cached by text.
 */
export type Predicate = (firstParam: number) => { sql: string; params: unknown[] };

/**
 * What a search compares rows with. Vectors at rest may be under a keyed transform
 * (`vector_key`: the data key version; null: the model's own space), and a query needs its
 * vector in each space the scope may hold. `primary` is the space new rows are written in;
 * `others` (asked for only when needed) the rest. Without `others`, every row is compared with
 * the primary vector, as before transforms existed, and nothing checks the rows' spaces. Each
 * vector is a parameter in pgvector's text form, or its binary form (a `Buffer`) where the
 * driver sends buffers in binary (`SqlClient.binaryParams`); the statements cast it to `vector`
 * only, so the parameter's type is `vector` either way.
 */
export interface QueryVectors {
  primary: { key: number | null; vector: string | Buffer };
  others?: () => ReadonlyArray<{ key: number | null; vector: string | Buffer }>;
}

function scopeRows(where: string): string {
  return `FROM memory_chunks WHERE tenant_id = $1 AND user_hash = $2 AND (expires_at IS NULL OR expires_at > now())${where}`;
}

/**
 * The distance of a row to the query in the row's own space ($3 is the primary vector), and
 * the parameters that names, numbered from `first`: a key and a vector for each other space.
 * Exact search only: an index orders by one vector.
 */
function keyedDistance(others: ReadonlyArray<{ key: number | null; vector: string | Buffer }>, first: number): { distance: string; params: unknown[] } {
  if (others.length === 0) return { distance: 'embedding <=> $3::vector', params: [] };
  const params: unknown[] = [];
  const arms: string[] = [];
  for (const other of others) {
    params.push(other.key, other.vector);
    arms.push(`WHEN vector_key IS NOT DISTINCT FROM $${first + params.length - 2}::int THEN $${first + params.length - 1}::vector`);
  }
  return { distance: `embedding <=> (CASE ${arms.join(' ')} ELSE $3::vector END)`, params };
}

/**
 * Exact: every live row of the scope by distance. MATERIALIZED keeps the planner
 * from answering with the HNSW index, whose post-filter could return fewer than k rows.
 */
function exact(where: string, distance: string): string {
  return `s AS MATERIALIZED (SELECT ctid AS tid, id, ${distance} AS distance ${scopeRows(where)}),
  c AS (SELECT tid, id, distance FROM s ORDER BY distance, id LIMIT $4)`;
}

/**
 * True when the scope holds a row whose vector is not in the primary space (`primaryKey`):
 * two index descents in `relay_vector_keys_mixed` (migration 0006), whose statements stay
 * planned per server connection even where every search statement is planned anew (PgBouncer
 * in transaction mode). An empty scope counts as mixed unless the key is null.
 */
function mixedKeys(primaryKey: string): string {
  return `relay_vector_keys_mixed($1, $2, ${primaryKey}::int)`;
}

/**
 * What the HNSW indexes order by (migration 0007): the distance between half-precision copies.
 * The graph walk reads half the pages; what a search returns is still ordered and reported by
 * the full-precision distance, computed for the k rows it found.
 */
export function indexedDistance(dim: number): string {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`dim must be a positive integer, got ${dim}`);
  // $3 through vector: typed by this cast alone, the parameter could be read as a halfvec.
  return `embedding::halfvec(${dim}) <=> $3::vector::halfvec(${dim})`;
}

/**
 * One statement that picks its own path: an index-only count of the scope, capped at $5,
 * gates two branches with one-time filters, so only one of them runs — exact for a small
 * scope, HNSW (iterative scan) for a large one. The count ignores the extra conditions (it
 * stays index-only); a selective condition on a large scope makes the HNSW branch come back
 * short, and the exact search then settles it. With `keyed`, neither branch runs when the
 * scope holds vectors outside the primary space ($6; between `keys rotate` and `keys reseal`,
 * or rows of a release with the transform off): the statement comes back empty and the exact
 * search, with the query in every space, settles it.
 */
function adaptive(where: string, keyed: boolean, dim: number): string {
  const gate = keyed ? ` AND NOT (SELECT mixed FROM o)` : '';
  return `n AS MATERIALIZED (SELECT count(*)::int AS n FROM (SELECT 1 FROM memory_chunks WHERE tenant_id = $1 AND user_hash = $2 LIMIT $5) x),
  ${keyed ? `o AS MATERIALIZED (SELECT ${mixedKeys('$6')} AS mixed),` : ''}
  s AS MATERIALIZED (SELECT ctid AS tid, id, embedding <=> $3::vector AS distance ${scopeRows(where)}),
  c AS (
    (SELECT tid, id, distance FROM s WHERE (SELECT n FROM n) < $5${gate} ORDER BY distance, id LIMIT $4)
    UNION ALL
    (SELECT tid, id, distance FROM (
       SELECT ctid AS tid, id, embedding <=> $3::vector AS distance ${scopeRows(where)} AND (SELECT n FROM n) >= $5${gate}
       ORDER BY ${indexedDistance(dim)} LIMIT $4) a))`;
}

/**
 * The candidates joined back to their rows: k fetches by the tuple id the branch read them at
 * (one heap page each; the statement's snapshot keeps it the same row). By primary key, the
 * planner, taking the RLS quals' unknown values for a selective scope, walked the scope's
 * B-tree and filtered on id instead: ~900 buffers a row for a 5,000-row scope. The LIMIT
 * keeps the planner from flattening the LATERAL into a join that hashes the whole scope.
 */
function withRows(ctes: string, columns: string, extra = ''): string {
  return `WITH ${ctes}
    SELECT m.*, c.distance${extra} FROM c CROSS JOIN LATERAL (SELECT ${columns} FROM memory_chunks WHERE ctid = c.tid LIMIT 1) m
    ORDER BY c.distance, c.id`;
}

type Found<R> = Array<Neighbour<R> & { scopeRows?: number; mixed?: boolean }>;

/**
 * The k nearest live rows of one scope: always min(k, live rows in scope).
 * Small scopes are searched exactly, large ones with HNSW; when the index comes back
 * short (a selective filter, expired rows), the exact search answers instead. `prepare`
 * keeps the statements prepared per connection: only for a bounded set of statement texts.
 */
export async function nearestInScope<R>(
  sql: SqlClient,
  columns: string,
  dim: number,
  tenantId: string,
  userHash: Buffer,
  query: QueryVectors,
  k: number,
  tuning: SearchTuning,
  where?: Predicate,
  prepare = true,
): Promise<NeighbourResult<R>> {
  const cap = tuning.exactMax + 1;
  const run = async (text: string, params: unknown[]): Promise<Found<R>> => {
    const res = await sql.query<Record<string, unknown>>(text, params, { prepare });
    return res.rows.map(({ scope_rows, mixed_keys, ...row }) => ({
      row: row as R,
      distance: Number(row.distance),
      scopeRows: typeof scope_rows === 'number' ? scope_rows : undefined,
      mixed: mixed_keys === true,
    }));
  };
  const base = [tenantId, userHash, query.primary.vector, k];
  // The extra conditions' parameters follow the fixed ones of each statement.
  const extra = (first: number) => {
    const e = where?.(first);
    return { cond: e ? ` AND (${e.sql})` : '', params: e?.params ?? [] };
  };
  const keyed = query.others !== undefined;
  const a = extra(base.length + 2 + (keyed ? 1 : 0));
  const found = await run(withRows(adaptive(a.cond, keyed, dim), columns, ', (SELECT n FROM n) AS scope_rows'), [
    ...base,
    cap,
    ...(keyed ? [query.primary.key] : []),
    ...a.params,
  ]);
  const large = (found[0]?.scopeRows ?? 0) >= cap;
  if (found.length >= k) return { neighbours: found, strategy: large ? 'hnsw' : 'exact' };
  // Short. Under the cap the exact branch ran, so that is all there is; over it, or when
  // nothing came back (the count is then unknown, or the scope's vectors are in more than one
  // space), the exact search settles it.
  if (found.length > 0 && !large) return { neighbours: found, strategy: 'exact' };
  // Keyed, it says whether the scope was in more than one space: then no index ran before it.
  const ek = keyedDistance(query.others?.() ?? [], base.length + 1 + (keyed ? 1 : 0));
  const e = extra(base.length + 1 + (keyed ? 1 : 0) + ek.params.length);
  const all = await run(withRows(exact(e.cond, ek.distance), columns, keyed ? `, (${mixedKeys('$5')}) AS mixed_keys` : ''), [
    ...base,
    ...(keyed ? [query.primary.key] : []),
    ...ek.params,
    ...e.params,
  ]);
  const indexRan = found.length > 0 || (all.length > 0 && all[0]?.mixed !== true);
  return { neighbours: all, strategy: indexRan ? 'hnsw_then_exact' : 'exact' };
}

import { createHash, randomBytes } from 'node:crypto';
import { SCOPE_SETTINGS, type Scope, type SqlClient, type Store } from '../../src/store/index.ts';
import { axis, chunk, scopeOf, testTenant } from '../helpers/fixtures.ts';

/**
 * Every table under row-level security and every policy on it, as the migrations make them
 * (src/store/migrations/*.up.sql). The leak suite checks that the database has exactly these,
 * so a new table or policy cannot arrive without its checks here.
 */
export const RLS_POLICIES = {
  memory_chunks: { memory_chunks_select: 'SELECT', memory_chunks_insert: 'INSERT', memory_chunks_update: 'UPDATE', memory_chunks_delete: 'DELETE' },
  tenant_keys: { tenant_keys_select: 'SELECT', tenant_keys_insert: 'INSERT' },
  tenant_shreds: { tenant_shreds_select: 'SELECT' },
  idempotency_keys: { idempotency_keys_select: 'SELECT', idempotency_keys_insert: 'INSERT', idempotency_keys_delete: 'DELETE' },
} as const;

export type RlsTable = keyof typeof RLS_POLICIES;

export interface PolicyDef {
  tablename: string;
  policyname: string;
  cmd: string;
  roles: string[] | string;
  qual: string | null;
  with_check: string | null;
}

/** The policies of the tables under RLS, as pg_policies deparses them. */
export async function policyDefs(store: Store): Promise<PolicyDef[]> {
  const res = await store.driver.ownerTransaction((sql) =>
    sql.query<PolicyDef & Record<string, unknown>>(
      "SELECT tablename, policyname, cmd, roles, qual, with_check FROM pg_policies WHERE schemaname = 'public' ORDER BY tablename, policyname",
    ),
  );
  return res.rows;
}

/** The public tables with row-level security enabled, and whether it is forced. */
export async function rlsTables(store: Store): Promise<Array<{ relname: string; forced: boolean }>> {
  const res = await store.driver.ownerTransaction((sql) =>
    sql.query<{ relname: string; forced: boolean }>(
      `SELECT c.relname, c.relforcerowsecurity AS forced FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity ORDER BY c.relname`,
    ),
  );
  return res.rows;
}

/** Public tables with a tenant_id column: each of them must be under RLS. */
export async function tenantTables(store: Store): Promise<string[]> {
  const res = await store.driver.ownerTransaction((sql) =>
    sql.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY table_name",
    ),
  );
  return res.rows.map((r) => r.table_name);
}

/**
 * The mutations of one policy that make it allow everything: USING (true) where it has a USING
 * clause, WITH CHECK (true) where it has a WITH CHECK clause (an UPDATE policy has both, each
 * mutated on its own). Each comes with the statement that puts the policy back.
 */
export function openMutations(def: PolicyDef): Array<{ what: string; change: string; restore: string; clause: 'USING' | 'WITH CHECK' }> {
  const on = `ALTER POLICY ${def.policyname} ON ${def.tablename}`;
  const out: Array<{ what: string; change: string; restore: string; clause: 'USING' | 'WITH CHECK' }> = [];
  if (def.qual) out.push({ what: `${def.policyname} USING (true)`, change: `${on} USING (true)`, restore: `${on} USING (${def.qual})`, clause: 'USING' });
  if (def.with_check) out.push({ what: `${def.policyname} WITH CHECK (true)`, change: `${on} WITH CHECK (true)`, restore: `${on} WITH CHECK (${def.with_check})`, clause: 'WITH CHECK' });
  return out;
}

type Settings = Array<[string, string]>;

/** Carries a row count out of a transaction that must roll back. */
class Counted extends Error {
  constructor(readonly rowCount: number) {
    super('rolled back on purpose');
  }
}

const sha = (s: string) => createHash('sha256').update(s).digest();

/**
 * Every policy of every table under RLS, as app_user: for each table × command, a statement
 * aimed at another tenant's or another user's rows that the policy must stop, next to the same
 * statement on the caller's own rows, which must work. Tenants of its own (test-pol-*), and every
 * statement names them in its WHERE, so that with a policy opened by a mutation nothing outside
 * them is touched, on a shared server either. Returns the violations (empty = every policy held).
 */
export async function runPolicySuite(store: Store): Promise<string[]> {
  const violations: string[] = [];
  const fail = (what: string) => violations.push(what);
  const dim = store.embeddingDim;
  const A = testTenant('pol-a');
  const B = testTenant('pol-b');
  const S = testTenant('pol-shred');
  const S2 = testTenant('pol-shred2');
  const ours = [A, B, S, S2];
  const alice = scopeOf(A, 'alice');
  const bob = scopeOf(A, 'bob');
  const mallory = scopeOf(B, 'mallory');
  const full = (s: Scope): Settings => [
    [SCOPE_SETTINGS.tenant, s.tenantId],
    [SCOPE_SETTINGS.user, s.userHash.toString('hex')],
  ];
  const tenantOnly = (t: string): Settings => [[SCOPE_SETTINGS.tenant, t]];
  const as = (settings: Settings, q: string, params: unknown[] = []) => store.driver.appTransaction(settings, (sql) => sql.query<Record<string, unknown>>(q, params));
  const refused = async (what: string, settings: Settings, q: string, params: unknown[] = []) => {
    const outcome = await as(settings, q, params).then(
      (r) => `succeeded (${r.rowCount} rows)`,
      () => null,
    );
    if (outcome !== null) fail(`${what}: ${outcome}, must be refused`);
  };
  const works = async (what: string, settings: Settings, q: string, params: unknown[] = []) => {
    try {
      return await as(settings, q, params);
    } catch (err) {
      fail(`${what}: refused (${(err as Error).message}), must work`);
      return null;
    }
  };
  /**
   * A statement without WHERE, in a transaction that is always rolled back; its row count.
   * UPDATE and DELETE apply the SELECT policy too as soon as they read a column (a WHERE does),
   * so only a statement that reads none shows what the UPDATE or DELETE policy alone allows;
   * rolled back, it changes nothing even when a mutation lets it reach every row of the table.
   */
  const probe = async (what: string, settings: Settings, q: string): Promise<number | null> => {
    try {
      await store.driver.appTransaction(settings, async (sql) => {
        throw new Counted((await sql.query(q)).rowCount ?? -1);
      });
    } catch (err) {
      if (err instanceof Counted) return err.rowCount;
      fail(`${what}: refused (${(err as Error).message}), must work`);
    }
    return null;
  };
  const owner = <T extends Record<string, unknown>>(q: string, params: unknown[] = []) => store.driver.ownerTransaction((sql) => sql.query<T>(q, params));
  const values = (rows: Array<Record<string, unknown>>, col: string) => rows.map((r) => String(r[col])).sort();
  const same = (a: string[], b: string[]) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
  const insertChunk = (sql: SqlClient, s: Scope) => {
    const c = chunk('planted', axis(dim, 7));
    return sql.query(
      `INSERT INTO memory_chunks (id, tenant_id, user_hash, ciphertext, key_id, embedding, embedder_id) VALUES ($1, $2, $3, $4, $5, $6::vector, $7)`,
      [c.id, s.tenantId, s.userHash, c.ciphertext, c.keyId, `[${Array.from(c.embedding).join(',')}]`, c.embedderId],
    );
  };
  const insertIdem = (s: Scope, key: string) => [
    'INSERT INTO idempotency_keys (tenant_id, user_hash, key_hash, request_hash, response) VALUES ($1, $2, $3, $3, $4)',
    [s.tenantId, s.userHash, sha(key), '{"ids":[]}'],
  ] as const;
  const insertKey = (tenant: string, version: number) => [
    'INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, provider_id) VALUES ($1, $2, $3, $4, $5)',
    [tenant, 'data', version, randomBytes(60), 'test-policy-suite'],
  ] as const;

  try {
    // ---- the world, as the owner (and each principal's own chunk through the helper) --------
    const chunkOf = new Map<Scope, string>();
    for (const s of [alice, bob, mallory]) {
      const [id] = await store.withScope(s, (c) => c.insert([chunk(`policy suite ${s.tenantId}`, axis(dim, 1))]));
      chunkOf.set(s, id!);
    }
    await store.driver.ownerTransaction(async (sql) => {
      for (const [t, v] of [[A, 1], [B, 1], [S, 1]] as const) await sql.query(insertKey(t, v)[0], [...insertKey(t, v)[1]]);
      for (const t of [S, S2]) await sql.query('INSERT INTO tenant_shreds (tenant_id) VALUES ($1)', [t]);
      for (const s of [alice, bob, mallory]) await sql.query(insertIdem(s, 'k1')[0], [...insertIdem(s, 'k1')[1]]);
    });
    const aliceChunk = chunkOf.get(alice)!;

    // ---- memory_chunks ------------------------------------------------------------------------
    const seen = await works('memory_chunks SELECT own', full(alice), 'SELECT id FROM memory_chunks WHERE tenant_id = ANY($1)', [ours]);
    if (seen && !same(values(seen.rows, 'id'), [aliceChunk])) fail(`memory_chunks SELECT: alice saw ${seen.rows.length} rows of the suite's tenants, not exactly her own 1`);
    for (const [label, target] of [['another user of the tenant', bob], ['another tenant', mallory]] as const) {
      const outcome = await store.driver.appTransaction(full(alice), (sql) => insertChunk(sql, target)).then(
        () => 'succeeded',
        () => null,
      );
      if (outcome) fail(`memory_chunks INSERT: alice wrote a row for ${label}`);
      await refused(`memory_chunks UPDATE: alice moving her row to ${label}`, full(alice), 'UPDATE memory_chunks SET tenant_id = $2, user_hash = $3 WHERE id = $1', [aliceChunk, target.tenantId, target.userHash]);
      // With a WHERE the new row must pass the SELECT policy too; without one only the UPDATE
      // policy's WITH CHECK stands between her rows and another scope (rolled back either way).
      const moved = await store.driver
        .appTransaction(full(alice), async (sql) => {
          throw new Counted((await sql.query('UPDATE memory_chunks SET tenant_id = $1, user_hash = $2', [target.tenantId, target.userHash])).rowCount ?? -1);
        })
        .catch((err: unknown) => (err instanceof Counted ? err.rowCount : null));
      if (moved !== null) fail(`memory_chunks UPDATE: alice's UPDATE without WHERE moved ${moved} rows to ${label}`);
    }
    const ownInsert = await store.driver.appTransaction(full(alice), (sql) => insertChunk(sql, alice)).then(
      () => null,
      (e: Error) => e.message,
    );
    if (ownInsert) fail(`memory_chunks INSERT: alice could not write her own row (${ownInsert})`);
    const upd = await works('memory_chunks UPDATE own', full(alice), `UPDATE memory_chunks SET metadata = '{"touched":"alice"}' WHERE tenant_id = ANY($1)`, [ours]);
    if (upd && upd.rowCount !== 2) fail(`memory_chunks UPDATE: alice's UPDATE over the suite's tenants touched ${upd.rowCount} rows, her own are 2`);
    const updAll = await probe('memory_chunks UPDATE without WHERE', full(alice), `UPDATE memory_chunks SET metadata = '{}'`);
    if (updAll !== null && updAll !== 2) fail(`memory_chunks UPDATE: alice's UPDATE without WHERE reached ${updAll} rows, her own are 2`);
    const delAll = await probe('memory_chunks DELETE without WHERE', full(alice), 'DELETE FROM memory_chunks');
    if (delAll !== null && delAll !== 2) fail(`memory_chunks DELETE: alice's DELETE without WHERE reached ${delAll} rows, her own are 2`);
    const del = await works('memory_chunks DELETE', full(alice), 'DELETE FROM memory_chunks WHERE tenant_id = ANY($1) AND id <> $2', [ours, aliceChunk]);
    if (del && del.rowCount !== 1) fail(`memory_chunks DELETE: alice's DELETE over the suite's tenants removed ${del.rowCount} rows, her own other row is 1`);
    const leftChunks = await owner<{ id: string; metadata: unknown }>('SELECT id, metadata FROM memory_chunks WHERE tenant_id = ANY($1)', [ours]);
    for (const s of [bob, mallory]) {
      const row = leftChunks.rows.find((r) => r.id === chunkOf.get(s));
      if (!row) fail(`memory_chunks: ${s === bob ? "bob's" : "mallory's"} row is gone after alice's statements`);
      else if (JSON.stringify(row.metadata).includes('alice')) fail(`memory_chunks: ${s === bob ? "bob's" : "mallory's"} row was changed by alice`);
    }

    // ---- tenant_keys: the catalog of the scope's tenant, added to, never for a shredded one ---
    for (const [t, want] of [[A, [A]], [B, [B]], [S2, []]] as const) {
      const keys = await works(`tenant_keys SELECT as ${t}`, tenantOnly(t), 'SELECT DISTINCT tenant_id FROM tenant_keys WHERE tenant_id = ANY($1)', [ours]);
      if (keys && !same(values(keys.rows, 'tenant_id'), [...want])) fail(`tenant_keys SELECT: the scope of one tenant saw the keys of ${JSON.stringify(values(keys.rows, 'tenant_id'))}`);
    }
    await refused('tenant_keys INSERT: a key for another tenant', tenantOnly(A), insertKey(B, 2)[0], [...insertKey(B, 2)[1]]);
    await refused('tenant_keys INSERT: a key for a shredded tenant, by its own scope (the database must refuse, not only the keyring)', tenantOnly(S), insertKey(S, 2)[0], [...insertKey(S, 2)[1]]);
    await refused('tenant_keys INSERT: a first key for a shredded tenant', tenantOnly(S2), insertKey(S2, 1)[0], [...insertKey(S2, 1)[1]]);
    await works('tenant_keys INSERT: a new version for its own tenant', tenantOnly(A), insertKey(A, 2)[0], [...insertKey(A, 2)[1]]);
    await refused('tenant_keys UPDATE (never granted)', tenantOnly(A), "UPDATE tenant_keys SET provider_id = 'x' WHERE tenant_id = $1", [A]);
    await refused('tenant_keys DELETE (never granted)', tenantOnly(A), 'DELETE FROM tenant_keys WHERE tenant_id = $1', [A]);
    const keysLeft = await owner<{ tenant_id: string; n: number }>('SELECT tenant_id, count(*)::int AS n FROM tenant_keys WHERE tenant_id = ANY($1) GROUP BY tenant_id', [ours]);
    const count = (t: string) => keysLeft.rows.find((r) => r.tenant_id === t)?.n ?? 0;
    if (count(B) !== 1 || count(S) !== 1 || count(S2) !== 0) fail(`tenant_keys: after the refused inserts B has ${count(B)}, the shredded ${count(S)} and ${count(S2)} keys (want 1, 1, 0)`);

    // ---- tenant_shreds: a tenant sees only its own mark ---------------------------------------
    for (const [t, want] of [[S, [S]], [A, []]] as const) {
      const marks = await works(`tenant_shreds SELECT as ${t}`, tenantOnly(t), 'SELECT tenant_id FROM tenant_shreds WHERE tenant_id = ANY($1)', [ours]);
      if (marks && !same(values(marks.rows, 'tenant_id'), [...want])) fail(`tenant_shreds SELECT: one tenant's scope saw the marks of ${JSON.stringify(values(marks.rows, 'tenant_id'))}`);
    }
    await refused('tenant_shreds DELETE (never granted)', tenantOnly(S), 'DELETE FROM tenant_shreds WHERE tenant_id = $1', [S]);

    // ---- idempotency_keys: one user's keys ------------------------------------------------------
    const idem = await works('idempotency_keys SELECT', full(alice), 'SELECT tenant_id, user_hash FROM idempotency_keys WHERE tenant_id = ANY($1)', [ours]);
    if (idem && idem.rows.length !== 1) fail(`idempotency_keys SELECT: alice saw ${idem.rows.length} keys of the suite's tenants, her own is 1`);
    for (const [label, target] of [['another user of the tenant', bob], ['another tenant', mallory]] as const) {
      await refused(`idempotency_keys INSERT: a key for ${label}`, full(alice), insertIdem(target, 'k2')[0], [...insertIdem(target, 'k2')[1]]);
    }
    await works('idempotency_keys INSERT: her own', full(alice), insertIdem(alice, 'k2')[0], [...insertIdem(alice, 'k2')[1]]);
    await refused('idempotency_keys UPDATE (never granted)', full(alice), "UPDATE idempotency_keys SET response = '{}' WHERE tenant_id = ANY($1)", [ours]);
    // Erasure's statement, in her scope: it must reach her keys and no one else's.
    const reach = await probe('idempotency_keys DELETE without WHERE', full(alice), 'DELETE FROM idempotency_keys');
    if (reach !== null && reach !== 2) fail(`idempotency_keys DELETE: alice's DELETE without WHERE reached ${reach} keys, her own are 2`);
    const gone = await works('idempotency_keys DELETE', full(alice), 'DELETE FROM idempotency_keys WHERE tenant_id = ANY($1)', [ours]);
    if (gone && gone.rowCount !== 2) fail(`idempotency_keys DELETE: alice's DELETE over the suite's tenants removed ${gone.rowCount} keys, her own are 2`);
    const idemLeft = await owner('SELECT 1 FROM idempotency_keys WHERE tenant_id = ANY($1)', [ours]);
    if (idemLeft.rows.length !== 2) fail(`idempotency_keys: ${idemLeft.rows.length} keys of bob and mallory are left, they had 2`);

    // ---- no scope: nothing of any table --------------------------------------------------------
    for (const table of Object.keys(RLS_POLICIES)) {
      const none = await as([], `SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = ANY($1)`, [ours]).then(
        (r) => Number(r.rows[0]?.n),
        () => 0,
      );
      if (none !== 0) fail(`${table}: a transaction with no scope saw ${none} rows`);
    }
  } finally {
    await store.driver.ownerTransaction(async (sql) => {
      for (const table of Object.keys(RLS_POLICIES)) await sql.query(`DELETE FROM ${table} WHERE tenant_id = ANY($1)`, [ours]);
    });
  }
  return violations;
}

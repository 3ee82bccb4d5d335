import type { Scope, Store, SqlClient } from '../../src/store/index.ts';
import { axis, chunk, scopeOf, testTenant } from './fixtures.ts';

interface Principal {
  name: string;
  scope: Scope;
  ids: string[];
}

/**
 * Tenants A and B, two users each, three chunks each; then every operation, through
 * the scoped helper and through raw SQL as app_user, is checked against what that
 * principal may see or touch. Returns the violations found (empty = isolated).
 * It is run as is, and again with each policy dropped or weakened, where it must find some.
 */
export async function runLeakSuite(store: Store): Promise<string[]> {
  const violations: string[] = [];
  const fail = (what: string) => violations.push(what);
  const dim = store.embeddingDim;
  const tenants = { A: testTenant('leak-a'), B: testTenant('leak-b') };
  const principals: Principal[] = [];
  let n = 0;
  for (const [t, tenantId] of Object.entries(tenants)) {
    for (const u of ['u1', 'u2']) {
      const p: Principal = { name: `${t}/${u}`, scope: scopeOf(tenantId, u), ids: [] };
      const rows = [0, 1, 2].map((i) => chunk(`${p.name} secret ${i}`, axis(dim, n * 3 + i, 0.1), { metadata: { owner: p.name } }));
      try {
        p.ids = await store.withScope(p.scope, (c) => c.insert(rows));
      } catch (err) {
        fail(`${p.name}: storing its own chunks was refused (${(err as Error).message})`);
      }
      principals.push(p);
      n++;
    }
  }
  const allIds = principals.flatMap((p) => p.ids);
  const expectThrow = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
      fail(`${what}: succeeded, should have been refused`);
    } catch {
      /* refused, as it must be */
    }
  };
  const sameSet = (a: string[], b: string[]) => a.length === b.length && a.every((x) => b.includes(x));

  for (const p of principals) {
    const foreign = allIds.filter((id) => !p.ids.includes(id));
    const other = principals.find((o) => o !== p && o.scope.tenantId !== p.scope.tenantId)!;
    const sibling = principals.find((o) => o !== p && o.scope.tenantId === p.scope.tenantId)!;

    // Through the helper.
    const listed = await store.withScope(p.scope, (c) => c.list(100));
    if (!sameSet(listed.chunks.map((c) => c.id), p.ids)) fail(`${p.name}: list returned ${listed.chunks.length} rows, not exactly its own ${p.ids.length}`);
    const found = await store.withScope(p.scope, (c) => c.search(axis(dim, 0), 100));
    if (!sameSet(found.hits.map((h) => h.id), p.ids)) fail(`${p.name}: search returned rows other than exactly its own`);
    for (const id of foreign) {
      if (await store.withScope(p.scope, (c) => c.get(id))) fail(`${p.name}: get of a foreign row returned it`);
      if ((await store.withScope(p.scope, (c) => c.update(id, { metadata: { pwned: p.name } }))) !== null) fail(`${p.name}: update of a foreign row changed it`);
      if (await store.withScope(p.scope, (c) => c.delete(id))) fail(`${p.name}: delete of a foreign row removed it`);
    }

    // Raw SQL as app_user inside the scope.
    await store.withScopeSql(p.scope, async (sql) => {
      const all = await sql.query<{ id: string }>('SELECT id FROM memory_chunks');
      if (!sameSet(all.rows.map((r) => r.id), p.ids)) fail(`${p.name}: raw SELECT saw ${all.rows.length} rows, not exactly its own`);
      const nn = await sql.query<{ id: string }>(`SELECT id FROM memory_chunks ORDER BY embedding <=> $1::vector LIMIT 100`, [`[${axis(dim, 5).join(',')}]`]);
      if (nn.rows.some((r) => !p.ids.includes(r.id))) fail(`${p.name}: raw vector search returned a foreign row`);
      const byTenant = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1', [other.scope.tenantId]);
      if (byTenant.rows[0]?.n !== 0) fail(`${p.name}: raw SELECT by another tenant's id saw rows`);
      const upd = await sql.query(`UPDATE memory_chunks SET metadata = jsonb_build_object('touched_by', $1::text)`, [p.name]);
      if (upd.rowCount !== p.ids.length) fail(`${p.name}: raw UPDATE without WHERE touched ${upd.rowCount} rows, not its own ${p.ids.length}`);
      const del = await sql.query('DELETE FROM memory_chunks WHERE NOT (tenant_id = $1 AND user_hash = $2)', [p.scope.tenantId, p.scope.userHash]);
      if (del.rowCount !== 0) fail(`${p.name}: raw DELETE of foreign rows removed ${del.rowCount}`);
    });
    for (const [label, target] of [['another tenant', other], ['another user of its tenant', sibling]] as const) {
      await expectThrow(`${p.name}: raw INSERT of a row for ${label}`, () =>
        store.withScopeSql(p.scope, (sql) => insertRaw(sql, target.scope, dim)),
      );
      if (p.ids[0]) {
        await expectThrow(`${p.name}: raw UPDATE moving its row to ${label}`, () =>
          store.withScopeSql(p.scope, (sql) =>
            sql.query('UPDATE memory_chunks SET tenant_id = $2, user_hash = $3 WHERE id = $1', [p.ids[0], target.scope.tenantId, target.scope.userHash]),
          ),
        );
      }
    }
  }

  // No scope at all: nothing is visible and nothing can be written.
  await store.driver.appTransaction([], async (sql) => {
    const r = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks');
    if (r.rows[0]?.n !== 0) fail(`no scope: SELECT saw ${r.rows[0]?.n} rows`);
    const u = await sql.query("UPDATE memory_chunks SET metadata = '{}'");
    if (u.rowCount !== 0) fail(`no scope: UPDATE touched ${u.rowCount} rows`);
    const d = await sql.query('DELETE FROM memory_chunks');
    if (d.rowCount !== 0) fail(`no scope: DELETE removed ${d.rowCount} rows`);
  }).catch(() => undefined);
  await expectThrow('no scope: INSERT', () => store.driver.appTransaction([], (sql) => insertRaw(sql, principals[0]!.scope, dim)));

  // Forged scope values: quotes, SQL, wildcards, non-hex hashes.
  const a1 = principals[0]!;
  for (const forged of [`${tenants.A}' OR '1'='1`, `' OR true --`, '%', '*', `${tenants.A}'; RESET ROLE; --`]) {
    const seen = await store
      .withScopeSql({ tenantId: forged, userHash: a1.scope.userHash }, (sql) => sql.query('SELECT id FROM memory_chunks'))
      .then((r) => r.rows.length)
      .catch(() => 0);
    if (seen !== 0) fail(`forged tenant ${JSON.stringify(forged)} saw ${seen} rows`);
  }
  for (const forgedHash of [`${a1.scope.userHash.toString('hex')}' OR '1'='1`, 'zz', '\\x00']) {
    const seen = await store.driver
      .appTransaction([['relay.tenant_id', tenants.A], ['relay.user_hash', forgedHash]], (sql) => sql.query('SELECT id FROM memory_chunks'))
      .then((r) => r.rows.length)
      .catch(() => 0);
    if (seen !== 0) fail(`forged user hash ${JSON.stringify(forgedHash)} saw ${seen} rows`);
  }

  // What app_user may never do, with or without a scope.
  for (const stmt of [
    'ALTER TABLE memory_chunks DISABLE ROW LEVEL SECURITY',
    'ALTER TABLE memory_chunks NO FORCE ROW LEVEL SECURITY',
    'DROP POLICY memory_chunks_select ON memory_chunks',
    'CREATE POLICY sneaky ON memory_chunks FOR SELECT USING (true)',
    'TRUNCATE memory_chunks',
    'DROP TABLE memory_chunks',
    'DELETE FROM relay_migrations',
    // The key guards of migration 0004: the master key check is the owner's to replace, and the
    // refusal of rows for a shredded tenant cannot be switched off.
    "UPDATE master_key_check SET provider_id = 'local:0000000000000000'",
    'DELETE FROM master_key_check',
    'DROP TRIGGER memory_chunks_refuse_shredded ON memory_chunks',
    'ALTER TABLE memory_chunks DISABLE TRIGGER memory_chunks_refuse_shredded',
    'DELETE FROM tenant_shreds',
  ]) {
    await expectThrow(`app_user: ${stmt}`, () => store.withScopeSql(a1.scope, (sql) => sql.exec(stmt)));
  }
  const rowSecurityOff = await store
    .withScopeSql(a1.scope, async (sql) => {
      await sql.exec('SET LOCAL row_security = off');
      return (await sql.query('SELECT id FROM memory_chunks')).rows.length;
    })
    .catch(() => 0);
  if (rowSecurityOff > a1.ids.length) fail('app_user: row_security = off showed foreign rows');

  // Each may delete its own rows, one through the helper …
  for (const p of principals) {
    if (p.ids[2] && !(await store.withScope(p.scope, (c) => c.delete(p.ids[2]!)))) fail(`${p.name}: could not delete its own row`);
  }
  // … and nothing above changed another principal's rows.
  for (const p of principals) {
    const expected = Math.max(0, p.ids.length - 1);
    const rows = await store.withScope(p.scope, (c) => c.list(100));
    if (rows.chunks.length !== expected) fail(`${p.name}: has ${rows.chunks.length} rows at the end, expected ${expected}`);
    for (const c of rows.chunks) {
      const m = c.metadata as { touched_by?: string; pwned?: string };
      if (m.pwned || (m.touched_by && m.touched_by !== p.name)) fail(`${p.name}: a row was changed by ${m.pwned ?? m.touched_by}`);
    }
  }
  // A DELETE without WHERE reads no column, so only the DELETE policy stands between it
  // and the rest of the table: it must remove exactly the principal's own remaining rows.
  for (const p of principals) {
    const expected = Math.max(0, p.ids.length - 1);
    const removed = await store.withScopeSql(p.scope, (sql) => sql.query('DELETE FROM memory_chunks')).then((r) => r.rowCount);
    if (removed !== expected) fail(`${p.name}: DELETE without WHERE removed ${removed} rows, its own were ${expected}`);
  }
  return violations;
}

async function insertRaw(sql: SqlClient, scope: Scope, dim: number): Promise<unknown> {
  const c = chunk('planted', axis(dim, 7));
  return sql.query(
    `INSERT INTO memory_chunks (id, tenant_id, user_hash, ciphertext, key_id, embedding, embedder_id)
     VALUES ($1, $2, $3, $4, $5, $6::vector, $7)`,
    [c.id, scope.tenantId, scope.userHash, c.ciphertext, c.keyId, `[${Array.from(c.embedding).join(',')}]`, c.embedderId],
  );
}

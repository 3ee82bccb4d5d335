import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Store } from '../src/store/index.ts';
import { runLeakSuite } from './helpers/leak-suite.ts';
import { targets } from './helpers/targets.ts';
import { openMutations, policyDefs as allPolicyDefs, RLS_POLICIES, rlsTables, runPolicySuite, tenantTables, type PolicyDef as AnyPolicyDef } from './regression/policies.ts';

interface PolicyDef {
  policyname: string;
  cmd: string;
  roles: string[] | string;
  qual: string | null;
  with_check: string | null;
}

const POLICIES = ['memory_chunks_select', 'memory_chunks_insert', 'memory_chunks_update', 'memory_chunks_delete'];

async function policyDefs(store: Store): Promise<PolicyDef[]> {
  const res = await store.driver.ownerTransaction((sql) =>
    sql.query<PolicyDef & Record<string, unknown>>(
      "SELECT policyname, cmd, roles, qual, with_check FROM pg_policies WHERE tablename = 'memory_chunks' ORDER BY policyname",
    ),
  );
  return res.rows;
}

function createPolicySql(p: PolicyDef): string {
  const roles = Array.isArray(p.roles) ? p.roles : String(p.roles).replace(/[{}]/g, '').split(',');
  return `CREATE POLICY ${p.policyname} ON memory_chunks FOR ${p.cmd} TO ${roles.join(', ')}` +
    (p.qual ? ` USING (${p.qual})` : '') +
    (p.with_check ? ` WITH CHECK (${p.with_check})` : '');
}

/** Applies `change` as the owner, runs the suite, and puts the policy back whatever happens. */
async function withMutation(store: Store, change: string, restore: string): Promise<string[]> {
  await store.driver.ownerTransaction((sql) => sql.exec(change));
  try {
    return await runLeakSuite(store);
  } finally {
    await store.driver.ownerTransaction((sql) => sql.exec(restore));
  }
}

for (const target of targets()) {
  describe(`row-level security (${target.name})`, () => {
    let store: Store;
    let defs: PolicyDef[];
    let rlsErrors = 0;
    before(async () => {
      store = await target.open({ observer: { rlsError: () => rlsErrors++ } });
      defs = await policyDefs(store);
    });
    after(async () => {
      await store?.close();
    });

    it('has RLS enabled and forced, with exactly the four policies', async () => {
      const rel = await store.driver.ownerTransaction((sql) =>
        sql.query<{ relrowsecurity: boolean; relforcerowsecurity: boolean }>(
          "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'memory_chunks'",
        ),
      );
      assert.deepEqual(rel.rows[0], { relrowsecurity: true, relforcerowsecurity: true });
      assert.deepEqual(defs.map((d) => d.policyname).sort(), [...POLICIES].sort());
    });

    it('keeps every principal inside its own tenant and user (helper and raw SQL)', async () => {
      assert.deepEqual(await runLeakSuite(store), []);
    });

    for (const name of POLICIES) {
      it(`goes red when ${name} is dropped`, async () => {
        const def = defs.find((d) => d.policyname === name)!;
        const violations = await withMutation(store, `DROP POLICY ${name} ON memory_chunks`, createPolicySql(def));
        assert.ok(violations.length > 0, 'the suite found nothing with the policy gone');
      });

      it(`goes red when ${name} is weakened to tenant-only`, async () => {
        const def = defs.find((d) => d.policyname === name)!;
        const tenantOnly = (expr: string | null) => expr && expr.replace(/AND \(user_hash = [\s\S]*\)\)$/, ')');
        const weak = { ...def, qual: tenantOnly(def.qual), with_check: tenantOnly(def.with_check) };
        assert.notEqual(createPolicySql(weak), createPolicySql(def), 'the weakening did not change the policy');
        const violations = await withMutation(
          store,
          `DROP POLICY ${name} ON memory_chunks; ${createPolicySql(weak)}`,
          `DROP POLICY ${name} ON memory_chunks; ${createPolicySql(def)}`,
        );
        assert.ok(violations.length > 0, 'the suite found nothing with the user check gone');
      });
    }

    it('goes red when row-level security is disabled', async () => {
      const violations = await withMutation(
        store,
        'ALTER TABLE memory_chunks DISABLE ROW LEVEL SECURITY',
        'ALTER TABLE memory_chunks ENABLE ROW LEVEL SECURITY',
      );
      assert.ok(violations.length > 0);
    });

    describe('every policy of every table under RLS', () => {
      let all: AnyPolicyDef[];
      before(async () => {
        all = await allPolicyDefs(store);
      });

      it('RLS is enabled and forced on every table with a tenant_id, and the policies are exactly those the policy suite covers', async () => {
        const tables = await rlsTables(store);
        assert.deepEqual(tables.map((t) => t.relname), Object.keys(RLS_POLICIES).sort());
        assert.ok(tables.every((t) => t.forced), JSON.stringify(tables));
        for (const t of await tenantTables(store)) assert.ok(t in RLS_POLICIES, `${t} has a tenant_id but no row-level security`);
        const want = Object.entries(RLS_POLICIES).flatMap(([table, ps]) => Object.entries(ps).map(([name, cmd]) => `${table}.${name} ${cmd}`));
        assert.deepEqual(all.map((d) => `${d.tablename}.${d.policyname} ${d.cmd}`).sort(), want.sort());
      });

      it('as app_user under a scope, no statement reads, adds, changes or removes another tenant\'s or user\'s rows', async () => {
        assert.deepEqual(await runPolicySuite(store), []);
      });

      for (const [table, policies] of Object.entries(RLS_POLICIES)) {
        for (const name of Object.keys(policies)) {
          it(`goes red when ${table}.${name} allows every row (USING (true) / WITH CHECK (true))`, async () => {
            const def = all.find((d) => d.policyname === name && d.tablename === table);
            assert.ok(def, `${name} is not in the database`);
            const mutations = openMutations(def);
            assert.ok(mutations.length > 0);
            for (const m of mutations) {
              await store.driver.ownerTransaction((sql) => sql.exec(m.change));
              let violations: string[];
              try {
                violations = await runPolicySuite(store);
              } finally {
                await store.driver.ownerTransaction((sql) => sql.exec(m.restore));
              }
              assert.ok(violations.length > 0, `the policy suite found nothing with ${m.what}`);
            }
          });
        }
      }

      it('goes red when tenant_keys_insert forgets shredded tenants (only the tenant check left): the database, not only the keyring, refuses', async () => {
        const def = all.find((d) => d.policyname === 'tenant_keys_insert')!;
        assert.match(def.with_check ?? '', /tenant_shreds/);
        await store.driver.ownerTransaction((sql) => sql.exec("ALTER POLICY tenant_keys_insert ON tenant_keys WITH CHECK (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), '')))"));
        let violations: string[];
        try {
          violations = await runPolicySuite(store);
        } finally {
          await store.driver.ownerTransaction((sql) => sql.exec(`ALTER POLICY tenant_keys_insert ON tenant_keys WITH CHECK (${def.with_check})`));
        }
        assert.ok(violations.some((v) => v.includes('shredded')), JSON.stringify(violations));
      });

      it('and every policy is as it was afterwards', async () => {
        const now = await allPolicyDefs(store);
        assert.deepEqual(now, all);
      });
    });

    it('counts an RLS violation raised by the database', async () => {
      const before = rlsErrors;
      const a = { tenantId: 'test-rls-count-a', userHash: Buffer.alloc(32, 1) };
      await assert.rejects(
        store.withScopeSql(a, (sql) =>
          sql.query(
            `INSERT INTO memory_chunks (id, tenant_id, user_hash, ciphertext, key_id, embedding, embedder_id)
             VALUES (gen_random_uuid(), 'test-rls-count-b', $1, '\\x00', 'k', $2::vector, 'e')`,
            [a.userHash, `[${new Array(store.embeddingDim).fill(0.1).join(',')}]`],
          ),
        ),
        (err: { code?: string }) => err.code === '42501',
      );
      assert.equal(rlsErrors, before + 1);
    });
  });
}

// A server gives app_user a login of its own; these escapes exist only there (on PGlite the
// single session is a superuser, see docs/security.md).
const serverUrl = process.env.RELAY_TEST_DATABASE_URL;
if (serverUrl) {
  describe('app_user on the server', () => {
    it('is LOGIN, NOSUPERUSER, NOBYPASSRLS and does not own memory_chunks', async () => {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      try {
        const me = await c.query(
          `SELECT r.rolsuper, r.rolbypassrls, r.rolcanlogin, r.rolcreaterole, r.rolcreatedb,
                  (SELECT tableowner FROM pg_tables WHERE tablename = 'memory_chunks') AS owner, current_user AS me
           FROM pg_roles r WHERE r.rolname = current_user`,
        );
        const row = me.rows[0];
        assert.equal(row.rolsuper, false);
        assert.equal(row.rolbypassrls, false);
        assert.equal(row.rolcanlogin, true);
        assert.equal(row.rolcreaterole, false);
        assert.equal(row.rolcreatedb, false);
        assert.notEqual(row.owner, row.me);
        await assert.rejects(c.query(`SET ROLE ${row.owner}`), (e: { code?: string }) => e.code === '42501');
        await assert.rejects(c.query('SET ROLE postgres'), (e: { code?: string }) => e.code === '42501');
        const grants = await c.query(
          `SELECT privilege_type FROM information_schema.role_table_grants
           WHERE table_name = 'memory_chunks' AND grantee = current_user ORDER BY 1`,
        );
        assert.deepEqual(grants.rows.map((g) => g.privilege_type), ['DELETE', 'INSERT', 'SELECT', 'UPDATE']);
      } finally {
        await c.end();
      }
    });
  });
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../src/store/index.ts';
import { targets } from '../helpers/targets.ts';
import { startFuzzHarness, type FuzzHarness } from './harness.ts';
import { openMutations, policyDefs as allPolicyDefs, RLS_POLICIES, type PolicyDef as AnyPolicyDef } from './policies.ts';
import { assertIsolation, checkIsolation, fuzzSettings, type FuzzSettings } from './property.ts';

/**
 * `npm run test:regression`: the cross-tenant isolation fuzz (docs/security.md, "The adversarial
 * isolation suite"), then the proof that it notices a broken service: each memory_chunks policy
 * dropped or weakened to tenant-only, every policy of every table under RLS made USING (true) /
 * WITH CHECK (true), RLS disabled, and each API scope check removed must make it fail.
 * RELAY_FUZZ_TARGET=pglite|pg runs one store only (a replay names the store it failed on).
 */

const FULL: FuzzSettings = { runs: 60, seed: 8_2026, maxOps: 40 };
/** The mutation runs stop at their first failure; this many scenarios at most to find one. */
const MUTANT: FuzzSettings = { runs: 40, seed: 8_2026, maxOps: 40 };

const POLICIES = ['memory_chunks_select', 'memory_chunks_insert', 'memory_chunks_update', 'memory_chunks_delete'];

interface PolicyDef {
  policyname: string;
  cmd: string;
  roles: string[] | string;
  qual: string | null;
  with_check: string | null;
}

async function policyDefs(store: Store): Promise<PolicyDef[]> {
  const res = await store.driver.ownerTransaction((sql) =>
    sql.query<PolicyDef & Record<string, unknown>>("SELECT policyname, cmd, roles, qual, with_check FROM pg_policies WHERE tablename = 'memory_chunks'"),
  );
  return res.rows;
}

function createPolicySql(p: PolicyDef): string {
  const roles = Array.isArray(p.roles) ? p.roles : String(p.roles).replace(/[{}]/g, '').split(',');
  return `CREATE POLICY ${p.policyname} ON memory_chunks FOR ${p.cmd} TO ${roles.join(', ')}` + (p.qual ? ` USING (${p.qual})` : '') + (p.with_check ? ` WITH CHECK (${p.with_check})` : '');
}

/** Runs the fuzz with `change` applied as the owner, and puts things back whatever happens. */
async function fuzzMutated(h: FuzzHarness, change: string, restore: string) {
  await h.api.store.driver.ownerTransaction((sql) => sql.exec(change));
  try {
    return await checkIsolation(h, MUTANT, { endOnFailure: true });
  } finally {
    await h.api.store.driver.ownerTransaction((sql) => sql.exec(restore));
  }
}

function assertRed(out: { failed: boolean; numRuns: number; errorInstance: unknown }, what: string): void {
  assert.ok(out.failed, `the fuzz passed ${out.numRuns} scenarios with ${what}`);
  // What it found, for the log: the first line of the violation.
  const why = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
  console.log(`  ${what}: red after ${out.numRuns} scenario(s): ${why.replace(/^operation #\d+ (\{.*?\}): /s, '').slice(0, 300)}`);
}

const only = process.env.RELAY_FUZZ_TARGET;
for (const target of targets().filter((t) => !only || t.name === only)) {
  describe(`cross-tenant isolation fuzz (${target.name})`, () => {
    let h: FuzzHarness;
    let defs: PolicyDef[];
    let all: AnyPolicyDef[];
    before(async () => {
      h = await startFuzzHarness(target);
      defs = await policyDefs(h.api.store);
      all = await allPolicyDefs(h.api.store);
    });
    after(async () => {
      await h?.close();
    });

    it('every answer, HTTP and SQL, matches the oracle of what each principal may see', async () => {
      const s = fuzzSettings(FULL);
      const stats = new Map<string, number>();
      const done = await assertIsolation(h, s, stats);
      const total = [...stats.values()].reduce((a, b) => a + b, 0);
      console.log(`  ${done.runs} scenarios of up to ${s.maxOps} operations, seed ${done.seed}: ${total} checked steps`);
      console.log(`  ${[...stats].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}: ${v}`).join(' · ')}`);
    });

    describe('goes red when the database stops isolating', () => {
      for (const name of POLICIES) {
        it(`with ${name} dropped`, async () => {
          const def = defs.find((d) => d.policyname === name)!;
          assertRed(await fuzzMutated(h, `DROP POLICY ${name} ON memory_chunks`, createPolicySql(def)), `${name} dropped`);
        });

        it(`with ${name} weakened to tenant-only`, async () => {
          const def = defs.find((d) => d.policyname === name)!;
          const tenantOnly = (expr: string | null) => expr && expr.replace(/AND \(user_hash = [\s\S]*\)\)$/, ')');
          const weak = { ...def, qual: tenantOnly(def.qual), with_check: tenantOnly(def.with_check) };
          assert.notEqual(createPolicySql(weak), createPolicySql(def), 'the weakening did not change the policy');
          assertRed(
            await fuzzMutated(h, `DROP POLICY ${name} ON memory_chunks; ${createPolicySql(weak)}`, `DROP POLICY ${name} ON memory_chunks; ${createPolicySql(def)}`),
            `${name} tenant-only`,
          );
        });
      }

      // Every policy of every table under RLS, opened. On a shared server, an UPDATE or DELETE
      // policy of memory_chunks opened would let the fuzz's statements without WHERE (committed)
      // reach other suites' rows: those two run on PGlite only, like RLS disabled below.
      for (const [table, policies] of Object.entries(RLS_POLICIES)) {
        for (const [name, cmd] of Object.entries(policies)) {
          // USING for what reads existing rows, WITH CHECK for what writes new ones; UPDATE has both.
          const clauses = cmd === 'INSERT' ? (['WITH CHECK'] as const) : cmd === 'UPDATE' ? (['USING', 'WITH CHECK'] as const) : (['USING'] as const);
          for (const clause of clauses) {
            const unbounded = table === 'memory_chunks' && clause === 'USING' && (name.endsWith('_update') || name.endsWith('_delete'));
            it(`with ${name} ${clause} (true)`, { skip: unbounded && target.name === 'pg' && "PGlite only: it would touch other suites' rows on a shared server" }, async () => {
              const def = all.find((d) => d.tablename === table && d.policyname === name);
              assert.ok(def, `${name} is not in the database`);
              const m = openMutations(def).find((x) => x.clause === clause);
              assert.ok(m, `${name} has no ${clause} clause`);
              assertRed(await fuzzMutated(h, m.change, m.restore), m.what);
            });
          }
        }
      }

      // Only on PGlite: with RLS off, the fuzz's statements without WHERE would reach every row
      // of a shared server database, other suites' included. Dropped or tenant-only policies
      // keep them inside the fuzz's own tenants, or out of every row.
      it('with row-level security disabled', { skip: target.name === 'pg' && 'PGlite only: it would touch other suites\' rows on a shared server' }, async () => {
        assertRed(await fuzzMutated(h, 'ALTER TABLE memory_chunks DISABLE ROW LEVEL SECURITY', 'ALTER TABLE memory_chunks ENABLE ROW LEVEL SECURITY'), 'RLS disabled');
      });

      it('and the policies are back afterwards', async () => {
        const now = await policyDefs(h.api.store);
        assert.deepEqual(now.map(createPolicySql).sort(), defs.map(createPolicySql).sort());
        assert.deepEqual(await allPolicyDefs(h.api.store), all);
      });
    });

    describe('goes red when the API stops checking scopes', () => {
      for (const [what, checks] of [
        ['the user check removed (a user token acts for any user_id it names)', { tenant: true, user: false }],
        ['the tenant check removed (a tenant_id of another tenant is not refused)', { tenant: false, user: true }],
      ] as const) {
        it(`with ${what}`, async () => {
          const weak = await startFuzzHarness(target, { scopeChecks: checks });
          try {
            assertRed(await checkIsolation(weak, MUTANT, { endOnFailure: true }), what);
          } finally {
            await weak.close();
          }
        });
      }
    });
  });
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../src/store/index.ts';
import { postgresBinDir, startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';
import { startPgBouncer, upstreamOf, type PgBouncer } from '../../src/fleet/index.ts';
import { counter } from '../helpers/api.ts';
import { pooledTargetAt, serverTargetAt, targets } from '../helpers/targets.ts';
import { startFuzzHarness, type FuzzHarness } from './harness.ts';
import { openMutations, policyDefs as allPolicyDefs, RLS_POLICIES, type PolicyDef as AnyPolicyDef } from './policies.ts';
import { assertIsolation, checkIsolation, fuzzSettings, type FuzzSettings } from './property.ts';

/**
 * `npm run test:regression`: the cross-tenant isolation fuzz (docs/security.md, "The adversarial
 * isolation suite"), then the proof that it notices a broken service: each memory_chunks policy
 * dropped or weakened to tenant-only, every policy of every table under RLS made USING (true) /
 * WITH CHECK (true), RLS disabled, and each API scope check removed must make it fail.
 * RELAY_FUZZ_TARGET=pglite|pg runs one store only (a replay names the store it failed on). On the
 * server store a slice also runs through a PgBouncer in transaction mode (docs/scaling.md).
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

      // Every policy of every table under RLS, opened. An UPDATE or DELETE policy of memory_chunks
      // opened, or RLS disabled, lets the fuzz's statements without WHERE (committed) reach every
      // row of the database: on a server those run below, on a cluster of their own, never on the
      // shared test database with other suites' rows. Dropped or tenant-only policies keep them
      // inside the fuzz's own tenants, or out of every row.
      const unbounded: Array<{ title: string; run: (on: FuzzHarness) => Promise<void> }> = [];
      for (const [table, policies] of Object.entries(RLS_POLICIES)) {
        for (const [name, cmd] of Object.entries(policies)) {
          // USING for what reads existing rows, WITH CHECK for what writes new ones; UPDATE has both.
          const clauses = cmd === 'INSERT' ? (['WITH CHECK'] as const) : cmd === 'UPDATE' ? (['USING', 'WITH CHECK'] as const) : (['USING'] as const);
          for (const clause of clauses) {
            const title = `with ${name} ${clause} (true)`;
            const run = async (on: FuzzHarness) => {
              const def = (await allPolicyDefs(on.api.store)).find((d) => d.tablename === table && d.policyname === name);
              assert.ok(def, `${name} is not in the database`);
              const m = openMutations(def).find((x) => x.clause === clause);
              assert.ok(m, `${name} has no ${clause} clause`);
              assertRed(await fuzzMutated(on, m.change, m.restore), m.what);
            };
            if (table === 'memory_chunks' && clause === 'USING' && (name.endsWith('_update') || name.endsWith('_delete'))) unbounded.push({ title, run });
            else it(title, () => run(h));
          }
        }
      }
      unbounded.push({
        title: 'with row-level security disabled',
        run: async (on) => assertRed(await fuzzMutated(on, 'ALTER TABLE memory_chunks DISABLE ROW LEVEL SECURITY', 'ALTER TABLE memory_chunks ENABLE ROW LEVEL SECURITY'), 'RLS disabled'),
      });
      if (target.name === 'pglite') {
        for (const u of unbounded) it(u.title, () => u.run(h));
      } else {
        const bin = postgresBinDir();
        describe('on a PostgreSQL cluster of its own (what reaches every row)', { skip: !bin && 'no PostgreSQL binaries (initdb, pg_ctl) on this machine' }, () => {
          let cluster: PgCluster | undefined;
          let own: FuzzHarness | undefined;
          before(async () => {
            cluster = await startPgCluster(bin!);
            own = await startFuzzHarness(serverTargetAt(cluster.appUrl, cluster.ownerUrl));
          });
          after(async () => {
            await own?.close();
            cluster?.destroy();
          });
          for (const u of unbounded) it(u.title, () => u.run(own!));
          it('and its policies are back afterwards', async () => {
            assert.deepEqual(await allPolicyDefs(own!.api.store), all);
          });
        });
      }

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

/**
 * RELAY_DB_POOLER=transaction: 10 services at once through one PgBouncer (Debian's 1.18, started
 * here on a free port) with default_pool_size = 2, so 20+ tenants' transactions take turns on two
 * server connections and each transaction lands on whichever is free. A scope left behind on a
 * connection, or read from the wrong one, is a leak the oracle sees.
 */
const appUrl = process.env.RELAY_TEST_DATABASE_URL;
const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;
if (appUrl && ownerUrl && (!only || only === 'pg')) {
  describe('cross-tenant isolation fuzz through PgBouncer in transaction mode (pg)', () => {
    const upstream = new URL(appUrl);
    const user = decodeURIComponent(upstream.username);
    let bouncer: PgBouncer;
    const harnesses: FuzzHarness[] = [];
    before(async () => {
      bouncer = await startPgBouncer({
        ...upstreamOf(upstream),
        poolMode: 'transaction',
        defaultPoolSize: 2,
        // The client's password, passed on to PostgreSQL as it is (none when it trusts 127.0.0.1).
        users: [{ name: user, password: decodeURIComponent(upstream.password) || 'fuzz' }],
      });
      const target = pooledTargetAt(bouncer.url(user), ownerUrl, appUrl);
      for (let i = 0; i < 10; i++) harnesses.push(await startFuzzHarness(target));
    });
    after(async () => {
      await Promise.all(harnesses.map((h) => h.close()));
      await bouncer?.daemon.stop();
    });

    it('10 services at once (20+ tenants in flight) on a pool of 2: 0 leaks', async () => {
      // Each scenario's world has 2 or 3 tenants (worldArb), so 10 streams keep at least 20 busy.
      const outs = await Promise.all(harnesses.map((h, i) => checkIsolation(h, { runs: 6, seed: 18_2026 + i, maxOps: 30 }, { endOnFailure: true })));
      for (const [i, out] of outs.entries()) {
        const why = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
        assert.equal(out.failed, false, `stream ${i} (seed ${out.seed}): ${why.slice(0, 2000)}`);
      }
      let violations = 0;
      for (const h of harnesses) violations += await counter(h.api.metrics, 'relay_scope_violations_total');
      assert.equal(violations, 0, 'rows of another scope reached the service');
      console.log(`  ${outs.reduce((n, o) => n + o.numRuns, 0)} scenarios on 10 services through one PgBouncer (default_pool_size = 2): 0 leaks`);
    });
  });
}

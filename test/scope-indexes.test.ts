import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { scopeIndexName, SCOPE_INDEX_PREFIX, type Scope, type Store } from '../src/store/index.ts';
import { vectorIndexDef } from '../src/store/bulk-load.ts';
import { indexedDistance } from '../src/store/search.ts';
import { chunk, ClusteredSpace, scopeOf, testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

// Above every scope the other suites leave behind (the largest has 100 rows).
const MIN_ROWS = 250;

for (const target of targets()) {
  describe(`per-scope HNSW indexes (${target.name})`, () => {
    let store: Store;
    let big: Scope;
    let small: Scope;
    let space: ClusteredSpace;
    const bigRows: Array<{ id: string; embedding: Float32Array }> = [];

    const scopeIndexes = async () => {
      const res = await store.driver.ownerTransaction((sql) =>
        sql.query<{ name: string; def: string }>(
          "SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = 'memory_chunks' AND starts_with(indexname, $1)",
          [SCOPE_INDEX_PREFIX],
        ),
      );
      return new Map(res.rows.map((r) => [r.name, r.def]));
    };

    before(async () => {
      store = await target.open({ search: { exactMax: MIN_ROWS - 1 } });
      space = new ClusteredSpace(store.embeddingDim, 20, 11, 0.05);
      // A quote and a backslash in the tenant id: the predicate must quote them, not break.
      const tenant = `${testTenant('scope-idx')}-o'b\\x`;
      big = scopeOf(tenant, 'agent');
      small = scopeOf(tenant, 'casual');
      const rows = Array.from({ length: 300 }, (_, i) => ({ id: crypto.randomUUID(), embedding: space.near(i % 20) }));
      bigRows.push(...rows);
      await store.withScope(big, (c) => c.insert(rows.map((r) => chunk('big', r.embedding, { id: r.id }))));
      await store.withScope(small, (c) => c.insert(Array.from({ length: 40 }, (_, i) => chunk('small', space.near(i % 20)))));
    });

    after(async () => {
      await store.withScope(big, (c) => c.deleteAll());
      await store.withScope(small, (c) => c.deleteAll());
      await store.ensureScopeIndexes({ minRows: MIN_ROWS, maxShare: 1, concurrently: false });
      await store.close();
    });

    it('builds one for a large scope only, with the scope as predicate, and is idempotent', async () => {
      // The scope is most of this small table: by default that is left to the table-wide index.
      const none = await store.ensureScopeIndexes({ minRows: MIN_ROWS, maxShare: 300 / 1e9 });
      assert.deepEqual(none.created, []);
      const first = await store.ensureScopeIndexes({ minRows: MIN_ROWS, maxShare: 1 });
      const name = scopeIndexName(big.tenantId, big.userHash);
      assert.deepEqual(first.created, [name]);
      const defs = await scopeIndexes();
      assert.ok(defs.has(name));
      assert.ok(!defs.has(scopeIndexName(small.tenantId, small.userHash)));
      assert.match(defs.get(name)!, /USING hnsw/);
      assert.ok(defs.get(name)!.includes(big.userHash.toString('hex')), 'predicate names the user hash');
      assert.ok(!name.includes(big.tenantId.slice(0, 8)), 'the name does not reveal the tenant');

      const again = await store.ensureScopeIndexes({ minRows: MIN_ROWS, maxShare: 1 });
      assert.deepEqual({ created: again.created, dropped: again.dropped }, { created: [], dropped: [] });
      assert.ok(again.kept >= 1);
    });

    it('is what the planner uses for that scope, and search returns 10 with recall ≥ 0.9', async () => {
      const name = scopeIndexName(big.tenantId, big.userHash);
      const q = space.near(3);
      // The plan of the search's HNSW branch for a scope: sorting the whole scope is priced out (search settings).
      const planFor = (scope: Scope) =>
        store.withScopeSql(scope, async (sql) => {
          await sql.exec('SET LOCAL enable_sort = off');
          const res = await sql.query<Record<string, string>>(
            `EXPLAIN SELECT id FROM memory_chunks WHERE tenant_id = $1 AND user_hash = $2 ORDER BY ${indexedDistance(q.length)} LIMIT 10`,
            [scope.tenantId, scope.userHash, `[${Array.from(q).join(',')}]`],
          );
          return res.rows.map((r) => Object.values(r)[0]).join('\n');
        });
      assert.match(await planFor(big), new RegExp(`Index Scan using ${name}`));
      // The scope's index is the table-wide one restricted to it: the same half-precision expression
      // and the same build options (ef_construction 128 since migration 0008).
      const defs = await scopeIndexes();
      const built = /USING hnsw \(\(\(embedding\)::halfvec\(\d+\)\) halfvec_cosine_ops\) WITH \(m='16', ef_construction='128'\)/;
      assert.match(defs.get(name) ?? '', built);
      assert.match((await store.driver.ownerTransaction(vectorIndexDef)) ?? '', built);
      // A scope without an index of its own is served by the table-wide one (migration 0007's).
      const shared = await planFor(small);
      assert.match(shared, /Index Scan using memory_chunks_embedding_hnsw_idx/);

      const got = await store.withScope(big, (c) => c.search(q, 10));
      assert.equal(got.strategy, 'hnsw');
      const dist = (v: Float32Array) => {
        let dot = 0, na = 0, nb = 0;
        for (let i = 0; i < v.length; i++) { dot += v[i]! * q[i]!; na += v[i]! * v[i]!; nb += q[i]! * q[i]!; }
        return 1 - dot / Math.sqrt(na * nb);
      };
      const truth = [...bigRows].sort((a, b) => dist(a.embedding) - dist(b.embedding)).slice(0, 10).map((r) => r.id);
      assert.equal(got.hits.length, 10);
      const overlap = got.hits.filter((h) => truth.includes(h.id)).length;
      assert.ok(overlap >= 9, `recall@10 ${overlap}/10`);
      // Another scope of the same tenant never sees the big scope's rows through it.
      const theirs = await store.withScope(small, (c) => c.search(q, 10));
      assert.ok(theirs.hits.every((h) => !bigRows.some((r) => r.id === h.id)));
      assert.equal(theirs.hits.length, 10);
    });

    if (target.name === 'pg') {
      it('refuses a second run while one holds the lock', async () => {
        await store.driver.ownerSession(async (sql) => {
          await sql.query("SELECT pg_advisory_lock(hashtext('relay.index-scopes'))");
          try {
            await assert.rejects(store.ensureScopeIndexes({ minRows: MIN_ROWS, maxShare: 1 }), /holds the lock/);
          } finally {
            await sql.query("SELECT pg_advisory_unlock(hashtext('relay.index-scopes'))");
          }
        });
      });
    }

    it('drops the index once the scope has shrunk', async () => {
      const name = scopeIndexName(big.tenantId, big.userHash);
      await store.withScope(big, (c) => c.deleteAll());
      const report = await store.ensureScopeIndexes({ minRows: MIN_ROWS, maxShare: 1 });
      assert.ok(report.dropped.includes(name));
      assert.ok(!(await scopeIndexes()).has(name));
    });
  });
}

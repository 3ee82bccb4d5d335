import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_SEARCH_TUNING, ScopedChunks, toBinaryVector, toSqlVector, type SqlClient, type Store } from '../src/store/index.ts';
import { chunk, scopeOf, testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

/** The same connection without `binaryParams`: what the store sends where buffers are not binary. */
const textOnly = (sql: SqlClient): SqlClient => ({ query: (text, params, opts) => sql.query(text, params, opts), exec: (text) => sql.exec(text) });

/** Components a decimal round trip gets wrong if anything does: tiny, huge, negative, denormal, zero. */
function tricky(dim: number, seed: number): Float32Array {
  const v = Float32Array.from({ length: dim }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.07);
  v[0] = 6.0e4; // near half precision's largest (the HNSW indexes read vectors as halfvec)
  v[1] = -1.0e-40;
  v[2] = 0;
  v[3] = -0.1;
  v[4] = 1.17549435e-38;
  return v;
}

// A query vector is a statement parameter: pgvector's binary form on the server driver (a Buffer
// travels in binary there), its text form on PGlite. Either way the server must read the same
// float4s, and a search must answer the same rows at the same distances.
for (const target of targets()) {
  describe(`query vectors as parameters (${target.name})`, () => {
    let store: Store;
    const tenant = testTenant('vector-params');
    const scope = scopeOf(tenant, 'u1');
    before(async () => {
      store = await target.open();
    });
    after(async () => {
      await store?.withScope(scope, (c) => c.deleteAll());
      await store?.close();
    });

    it('the server driver sends buffers in binary, PGlite does not; the binary form reads back as the text form does', async () => {
      await store.withScopeSql(scope, async (sql) => {
        assert.equal(sql.binaryParams === true, target.name === 'pg');
        const v = tricky(16, 1);
        const asText = await sql.query<{ v: string; h: string }>('SELECT $1::vector::text AS v, $1::vector::halfvec(16)::text AS h', [toSqlVector(v, 16)]);
        assert.equal(asText.rows[0]!.v.split(',').length, 16);
        if (!sql.binaryParams) return;
        const asBinary = await sql.query<{ v: string; h: string }>('SELECT $1::vector::text AS v, $1::vector::halfvec(16)::text AS h', [toBinaryVector(v, 16)]);
        assert.deepEqual(asBinary.rows[0], asText.rows[0]);
      });
    });

    it('a search answers the same ids at the same distances, the vector in binary or as text, plain or keyed', async () => {
      const dim = store.embeddingDim;
      // 60 rows: the exact branch. Rows without a vector key; a keyed query (primary under key 1)
      // finds the scope mixed and settles it with the exact search, the raw vector in its CASE.
      const rows = Array.from({ length: 60 }, (_, i) => chunk(`row ${i}`, Float32Array.from({ length: dim }, (_, j) => Math.sin(j * 0.37 + i * 1.91))));
      await store.withScope(scope, (c) => c.insert(rows));
      const query = tricky(dim, 0.5);
      const keyed = { primary: { key: 1, vector: tricky(dim, 9) }, others: [{ key: null, vector: query }] };
      await store.withScopeSql(scope, async (sql) => {
        const sent = new ScopedChunks(sql, scope, dim, DEFAULT_SEARCH_TUNING);
        const asText = new ScopedChunks(textOnly(sql), scope, dim, DEFAULT_SEARCH_TUNING);
        for (const q of [query, keyed]) {
          const a = await sent.search(q, 10);
          const b = await asText.search(q, 10);
          assert.equal(a.hits.length, 10);
          assert.deepEqual(a.hits.map((h) => [h.id, h.distance]), b.hits.map((h) => [h.id, h.distance]));
          assert.equal(a.strategy, b.strategy);
        }
        // The keyed query compared the rows with the raw vector: the plain query's answer.
        const plain = await sent.search(query, 10);
        const viaKeyed = await sent.search(keyed, 10);
        assert.deepEqual(viaKeyed.hits.map((h) => h.id), plain.hits.map((h) => h.id));
      });
    });
  });
}

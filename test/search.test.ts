import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Store, withVectorIndexRebuilt, type Scope } from '../src/store/index.ts';
import { chunk, ClusteredSpace, scopeOf, testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';
import { rng } from '../src/bench/index.ts';

const OTHERS = 50_000;
const OWN = 15;

function cosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return 1 - dot / Math.sqrt(na * nb);
}

for (const target of targets()) {
  describe(`filtered vector search (${target.name})`, () => {
    let store: Store;
    let space: ClusteredSpace;
    let me: Scope;
    let small: Scope;
    const mine: Array<{ id: string; embedding: Float32Array }> = [];
    const others: Scope[] = [];

    before(async () => {
      store = await target.open();
      space = new ClusteredSpace(store.embeddingDim, 50, 7, 0.05);
      const tenant = testTenant('search');
      me = scopeOf(tenant, 'me');
      small = scopeOf(tenant, 'five');
      for (let u = 0; u < 500; u++) others.push(scopeOf(testTenant('search-other'), `u${u}`));
      // Everyone writes about the same topics (cluster 3 included), interleaved in bursts.
      const rand = rng(11);
      const bursts: Array<{ scope: Scope; n: number }> = [];
      for (const s of others) for (let left = OTHERS / others.length; left > 0; left -= 20) bursts.push({ scope: s, n: Math.min(20, left) });
      for (let i = 0; i < OWN; i += 3) bursts.push({ scope: me, n: Math.min(3, OWN - i) });
      bursts.push({ scope: small, n: 5 });
      for (let i = bursts.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [bursts[i], bursts[j]] = [bursts[j]!, bursts[i]!];
      }
      await withVectorIndexRebuilt(store.driver, async () => {
        for (const b of bursts) {
          const rows = Array.from({ length: b.n }, () => chunk('x', space.near(b.scope === me ? 3 : Math.floor(rand() * 50))));
          await store.withScope(b.scope, (c) => c.insert(rows));
          if (b.scope === me) rows.forEach((r) => mine.push({ id: r.id, embedding: r.embedding as Float32Array }));
        }
      });
    });

    after(async () => {
      if (store) {
        for (const s of [me, small, ...others]) await store.withScope(s, (c) => c.deleteAll());
        await store.close();
      }
    });

    it(`returns exactly the top 10 of a user with ${OWN} chunks among ${OTHERS} others, in order`, async () => {
      const query = space.near(3);
      const expected = mine
        .map((m) => ({ id: m.id, d: cosineDistance(query, m.embedding) }))
        .sort((a, b) => a.d - b.d)
        .slice(0, 10);
      const { hits, strategy } = await store.withScope(me, (c) => c.search(query, 10));
      assert.equal(strategy, 'exact');
      assert.deepEqual(hits.map((h) => h.id), expected.map((e) => e.id));
      hits.forEach((h, i) => assert.ok(Math.abs(h.distance - expected[i]!.d) < 1e-4, `distance ${i}`));
    });

    it('returns min(k, rows) when large-scope search is forced: HNSW then exact fallback', async () => {
      const forced = new Store(store.driver, { embeddingDim: store.embeddingDim, search: { exactMax: 0 } });
      const query = space.near(3);
      const ten = await forced.withScope(me, (c) => c.search(query, 10));
      assert.equal(ten.hits.length, 10);
      assert.ok(ten.hits.every((h) => mine.some((m) => m.id === h.id)));
      const five = await forced.withScope(small, (c) => c.search(query, 10));
      assert.equal(five.hits.length, 5);
      assert.equal(five.strategy, 'hnsw_then_exact');
      const all = await forced.withScope(me, (c) => c.search(query, 50));
      assert.equal(all.hits.length, OWN);
    });

    it('returns every row when k exceeds the scope, and nothing for an empty scope', async () => {
      const query = space.near(3);
      assert.equal((await store.withScope(me, (c) => c.search(query, 100))).hits.length, OWN);
      assert.equal((await store.withScope(scopeOf(testTenant('empty'), 'nobody'), (c) => c.search(query, 10))).hits.length, 0);
    });

    it('rejects a query vector of the wrong dimension or with NaN', async () => {
      await assert.rejects(store.withScope(me, (c) => c.search(new Float32Array(store.embeddingDim + 1), 10)), RangeError);
      const nan = space.near(3);
      nan[0] = Number.NaN;
      await assert.rejects(store.withScope(me, (c) => c.search(nan, 10)), RangeError);
      await assert.rejects(store.withScope(me, (c) => c.search(space.near(3), 0)), RangeError);
    });
  });
}

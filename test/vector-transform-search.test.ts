/**
 * Issue 22, equivalence: vectors at rest under the keyed transform search exactly as raw ones.
 * The same writes (the isolation fuzz's generated texts and metadata, some expired) go to two
 * tenants, one through a memory with the transform on and one with it off; every query, with
 * and without a metadata filter, must give the same rows in the same order with the same
 * distances (1e-6), and both must match the exact order computed here from the model's vectors.
 * Then the same after `keys rotate` (new rows under version 2), after raw rows of an earlier
 * `RELAY_VECTOR_TRANSFORM=off` release, after a reseal cut short, and after a full one.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Keyring, LocalKeyProvider } from '../src/crypto/index.ts';
import { createHashEmbedder, type Embedder } from '../src/embed/index.ts';
import { ownerKeyring, resealTenant, SealedMemory, shredTenant, type MemoryInput } from '../src/memory/index.ts';
import { compileFilter, parseFilter, SqlKeyRepository, type Predicate, type Store } from '../src/store/index.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';
import { hostileString, META_KEYS, META_VALUES } from './regression/hostile.ts';

const USER = 'equivalence-user';
const K = [1, 3, 10, 60];

interface Item {
  text: string;
  meta: Record<string, string>;
  expired: boolean;
}

/** The fuzz suite's generators, sampled with a fixed seed: the same data on every run. */
function generate(n: number, seed: number): Item[] {
  const arb = fc.record({
    text: hostileString(24).filter((s) => s.trim().length > 0),
    key: fc.constantFrom(...META_KEYS.slice(0, 3)),
    value: fc.constantFrom(...META_VALUES.slice(0, 3)),
    expired: fc.integer({ min: 0, max: 9 }).map((n) => n < 3),
  });
  return fc.sample(arb, { seed, numRuns: n }).map((r, i) => ({ text: `${r.text} #${i % 7}`, meta: { [r.key]: r.value }, expired: r.expired }));
}

const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return 1 - dot / Math.sqrt(na * nb);
};

/**
 * Asserts two answers are the same rows in the same order: the same distances position by
 * position (within `eps`), and each row at a position where they differ is a tie — its own
 * distance to the query (`distanceOf`) equals that position's.
 */
function assertSameOrder(
  got: Array<{ index: number; distance: number }>,
  want: Array<{ index: number; distance: number }>,
  eps: number,
  what: string,
  distanceOf: (index: number) => number,
): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} rows, expected ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    assert.ok(Math.abs(got[i]!.distance - want[i]!.distance) <= eps, `${what}: distance #${i} ${got[i]!.distance} vs ${want[i]!.distance}`);
    if (got[i]!.index !== want[i]!.index) {
      const tie = Math.abs(distanceOf(got[i]!.index) - want[i]!.distance) <= 1e-5;
      assert.ok(tie, `${what}: row #${i} is ${got[i]!.index}, expected ${want[i]!.index} (distance ${want[i]!.distance})`);
    }
  }
  assert.equal(new Set(got.map((g) => g.index)).size, got.length, `${what}: a row twice`);
}

for (const target of targets()) {
  describe(`vector transform: search is unchanged (${target.name})`, () => {
    let store: Store;
    let embedder: Embedder;
    let on: SealedMemory;
    let off: SealedMemory;
    let provider: LocalKeyProvider;
    const tenants: string[] = [];
    /** Per tenant: chunk id → item index; the item's model vector and liveness. */
    const ids = new Map<string, Map<string, number>>();
    const items: Item[] = [];
    const vectors: Float32Array[] = [];
    const tOn = testTenant('vt-on');
    const tOff = testTenant('vt-off');

    async function write(memory: SealedMemory, tenant: string, from: number, batch: Item[]): Promise<void> {
      const vs = await embedder.embed(batch.map((b) => b.text));
      const inputs: MemoryInput[] = batch.map((b, i) => ({
        text: b.text,
        embedding: vs[i]!,
        embedderId: embedder.id,
        metadata: b.meta,
        // expired rows are written with a past expiry: no search may return them
        expiresAt: b.expired ? new Date(Date.now() - 60_000) : new Date(Date.now() + 3_600_000),
      }));
      const written = await memory.write(tenant, USER, inputs);
      const map = ids.get(tenant) ?? new Map<string, number>();
      written.forEach((id, i) => map.set(id, from + i));
      ids.set(tenant, map);
    }

    /** Writes the same items to both tenants; `onMemory` writes the "on" tenant's copy (a release with the transform off, say). */
    async function writeBoth(batch: Item[], onMemory = on): Promise<void> {
      const from = items.length;
      const vs = await embedder.embed(batch.map((b) => b.text));
      items.push(...batch);
      vectors.push(...vs);
      await write(onMemory, tOn, from, batch);
      await write(off, tOff, from, batch);
    }

    const queries = () => {
      const texts = [...generate(4, 99).map((i) => i.text), items[0]!.text, items[items.length - 1]!.text, 'nothing like it'];
      const filters: Array<{ spec: Record<string, string> | null }> = [{ spec: null }, ...META_KEYS.slice(0, 2).map((k) => ({ spec: { [k]: META_VALUES[0] } }))];
      return texts.flatMap((text) => filters.flatMap((f) => K.map((k) => ({ text, k, filter: f.spec }))));
    };

    /** Every query on both tenants, compared with each other and with the exact order of the model's vectors. */
    async function assertEquivalent(stage: string): Promise<{ strategies: Set<string> }> {
      const strategies = new Set<string>();
      for (const q of queries()) {
        const [qv] = await embedder.embed([q.text]);
        const predicate: Predicate | undefined = q.filter ? (first) => compileFilter(parseFilter(q.filter), first) : undefined;
        const answer = async (memory: SealedMemory, tenant: string) => {
          const res = await memory.search(tenant, USER, qv!, q.k, { embedderId: embedder.id, filter: predicate });
          strategies.add(res.strategy);
          assert.equal(res.skipped.length, 0);
          return res.hits.map((h) => ({ index: ids.get(tenant)!.get(h.id)!, distance: h.distance, text: h.text }));
        };
        const gotOn = await answer(on, tOn);
        const gotOff = await answer(off, tOff);
        for (const h of gotOn) assert.equal(h.text, items[h.index]!.text, 'a hit opens to its own text');
        const live = items
          .map((item, index) => ({ item, index }))
          .filter(({ item }) => !item.expired && (q.filter === null || Object.entries(q.filter).every(([k, v]) => item.meta[k] === v)));
        const exact = live
          .map(({ index }) => ({ index, distance: cosine(qv!, vectors[index]!) }))
          .sort((a, b) => a.distance - b.distance || a.index - b.index)
          .slice(0, q.k);
        const what = `${stage}: "${q.text}" k=${q.k} filter=${JSON.stringify(q.filter)}`;
        assert.equal(gotOn.length, Math.min(q.k, live.length), `${what}: min(k, matches)`);
        const distanceOf = (index: number) => cosine(qv!, vectors[index]!);
        assertSameOrder(gotOn, gotOff, 1e-6, `${what} (on vs off)`, distanceOf);
        assertSameOrder(gotOn, exact, 1e-5, `${what} (on vs the model's exact order)`, distanceOf);
      }
      return { strategies };
    }

    const stored = async (tenant: string) =>
      (
        await store.driver.ownerTransaction((sql) =>
          sql.query<{ key_id: string; vector_key: number | null }>('SELECT key_id, vector_key FROM memory_chunks WHERE tenant_id = $1', [tenant]),
        )
      ).rows;

    before(async () => {
      store = await target.open();
      embedder = await createHashEmbedder(store.embeddingDim);
      provider = new LocalKeyProvider(randomBytes(32));
      const keyring = new Keyring({ provider, repository: new SqlKeyRepository(store.driver) });
      on = new SealedMemory(store, keyring, { vectorTransform: true });
      off = new SealedMemory(store, keyring, { vectorTransform: false });
      tenants.push(tOn, tOff);
    });

    after(async () => {
      for (const t of tenants) await shredTenant(store.driver, null, t);
      await store.close();
    });

    it('the same rows in the same order, with filters and expiry; the stored vectors differ', async () => {
      await writeBoth(generate(40, 1));
      const rows = await stored(tOn);
      assert.ok(rows.every((r) => r.vector_key === 1 && r.key_id === 'dk:1'), 'on: every vector under version 1');
      assert.ok((await stored(tOff)).every((r) => r.vector_key === null), 'off: every vector in the model space');
      await assertEquivalent('version 1');
    });

    it('after keys rotate: old rows under version 1, new under 2, one answer', async () => {
      await on.keyring.rotate(tOn);
      await off.keyring.rotate(tOff);
      await writeBoth(generate(15, 2));
      const keys = (await stored(tOn)).map((r) => r.vector_key);
      assert.ok(keys.includes(1) && keys.includes(2), 'the scope holds both versions');
      await assertEquivalent('rotated');
    });

    it('with raw rows of a release that ran with the transform off', async () => {
      await writeBoth(generate(10, 3), off);
      assert.ok((await stored(tOn)).some((r) => r.vector_key === null));
      await assertEquivalent('three spaces');
    });

    it('after a reseal cut short, and after a full one: every vector under the newest key', async () => {
      const owner = ownerKeyring(store.driver, provider);
      await assert.rejects(
        resealTenant(store.driver, owner, tOn, {
          batchSize: 7,
          onProgress: (p) => {
            if (p.done > 0) throw new Error('cut short');
          },
        }),
        /cut short/,
      );
      const midway = await stored(tOn);
      assert.ok(midway.some((r) => r.vector_key === 2) && midway.some((r) => r.vector_key !== 2), 'part done');
      await assertEquivalent('partial reseal');
      const report = await resealTenant(store.driver, owner, tOn, { batchSize: 7 });
      assert.equal(report.skipped, 0);
      assert.ok((await stored(tOn)).every((r) => r.vector_key === 2 && r.key_id === 'dk:2'));
      assert.equal((await resealTenant(store.driver, owner, tOn)).done, 0, 'nothing left to do');
      await assertEquivalent('resealed');
      // …and with the transform off, reseal brings every vector back to the model's space.
      await resealTenant(store.driver, owner, tOn, { vectorTransform: false });
      assert.ok((await stored(tOn)).every((r) => r.vector_key === null));
      await assertEquivalent('resealed to the model space');
    });
  });

  describe(`vector transform: large scopes (${target.name})`, () => {
    let store: Store;
    let memory: SealedMemory;
    let embedder: Embedder;
    const tenant = testTenant('vt-large');
    const vectors = new Map<string, Float32Array>();

    before(async () => {
      // Every scope over 8 rows is "large": the HNSW branch, unless its vectors are in more than one space.
      store = await target.open({ search: { exactMax: 8 } });
      embedder = await createHashEmbedder(store.embeddingDim);
      memory = new SealedMemory(store, new Keyring({ provider: new LocalKeyProvider(randomBytes(32)), repository: new SqlKeyRepository(store.driver) }));
    });

    after(async () => {
      await shredTenant(store.driver, null, tenant);
      await store.close();
    });

    async function put(n: number, tag: string): Promise<void> {
      const texts = Array.from({ length: n }, (_, i) => `${tag} memory ${i} about ${['tea', 'cello', 'Lisbon', 'dogs'][i % 4]} ${randomUUID().slice(0, 4)}`);
      const vs = await embedder.embed(texts);
      const written = await memory.write(tenant, USER, texts.map((text, i) => ({ text, embedding: vs[i]!, embedderId: embedder.id })));
      written.forEach((id, i) => vectors.set(id, vs[i]!));
    }

    it('one space: the index answers, min(k, rows); two spaces: the exact search answers, in the exact order', async () => {
      await put(30, 'first');
      const [q] = await embedder.embed(['memory about tea']);
      const one = await memory.search(tenant, USER, q!, 5);
      assert.equal(one.strategy, 'hnsw');
      assert.equal(one.hits.length, 5);

      await memory.keyring.rotate(tenant);
      await put(10, 'second');
      const mixed = await memory.search(tenant, USER, q!, 12);
      assert.equal(mixed.strategy, 'exact', 'a scope in two spaces is searched exactly');
      const exact = [...vectors.entries()].map(([id, v]) => ({ id, d: cosine(q!, v) })).sort((a, b) => a.d - b.d);
      // The same distances in the same order, within float4's rounding (toFixed would flip on a digit boundary).
      assert.equal(mixed.hits.length, 12);
      mixed.hits.forEach((h, i) => assert.ok(Math.abs(h.distance - exact[i]!.d) < 1e-6, `[${i}] ${h.distance} against ${exact[i]!.d}`));
      assert.ok(mixed.hits.some((h) => h.text.startsWith('second')) && mixed.hits.some((h) => h.text.startsWith('first')), 'rows of both versions found');
    });
  });
}

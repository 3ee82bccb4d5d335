import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { ListPosition, Scope, Store } from '../src/store/index.ts';
import { axis, chunk, openFixture, scopeOf, testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

for (const target of targets()) {
  describe(`memory chunks (${target.name})`, () => {
    let store: Store;
    let scope: Scope;
    before(async () => {
      store = await target.open();
      scope = scopeOf(testTenant('chunks'), 'alice');
    });
    after(async () => {
      await store?.withScope(scope, (c) => c.deleteAll());
      await store?.close();
    });

    it('stores a batch in one statement and reads each chunk back', async () => {
      const dim = store.embeddingDim;
      const rows = [chunk('first', axis(dim, 1), { metadata: { topic: 'a', n: 1 } }), chunk('second', axis(dim, 2))];
      const ids = await store.withScope(scope, (c) => c.insert(rows));
      assert.deepEqual(ids, rows.map((r) => r.id));
      const got = await store.withScope(scope, (c) => c.get(rows[0]!.id));
      assert.ok(got);
      assert.equal(openFixture(got.id, got.ciphertext), 'first');
      assert.deepEqual(got.metadata, { topic: 'a', n: 1 });
      assert.equal(got.tenantId, scope.tenantId);
      assert.ok(got.userHash.equals(scope.userHash));
      assert.equal(got.version, 1);
      assert.equal(got.expiresAt, null);
    });

    it('writes nothing when one chunk of a batch is bad', async () => {
      const dim = store.embeddingDim;
      const before = (await store.withScope(scope, (c) => c.list(1000))).chunks.length;
      await assert.rejects(store.withScope(scope, (c) => c.insert([chunk('ok', axis(dim, 3)), chunk('bad', new Float32Array(dim - 1))])), RangeError);
      await assert.rejects(store.withScope(scope, (c) => c.insert([chunk('ok', axis(dim, 3)), { ...chunk('bad id', axis(dim, 4)), id: 'not-a-uuid' }])), RangeError);
      const dup = chunk('dup', axis(dim, 5));
      await assert.rejects(store.withScope(scope, (c) => c.insert([dup, { ...dup }])));
      assert.equal((await store.withScope(scope, (c) => c.list(1000))).chunks.length, before);
    });

    it('lists newest first, page by page, without gaps or repeats', async () => {
      const dim = store.embeddingDim;
      const pager = scopeOf(scope.tenantId, 'pager');
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) ids.push(...(await store.withScope(pager, (c) => c.insert([chunk(`p${i}`, axis(dim, i))]))));
      const seen: string[] = [];
      let before: ListPosition | undefined;
      for (;;) {
        const page = await store.withScope(pager, (c) => c.list(3, before));
        seen.push(...page.chunks.map((c) => c.id));
        if (!page.next) break;
        before = page.next;
      }
      assert.deepEqual(seen, [...ids].reverse());
      await store.withScope(pager, (c) => c.deleteAll());
    });

    it('pages through rows written in one transaction (same created_at, microseconds apart from none)', async () => {
      const dim = store.embeddingDim;
      const batch = scopeOf(scope.tenantId, 'batch-pager');
      // now() is the transaction's start: all seven rows share created_at to the microsecond.
      await store.withScope(batch, (c) => c.insert(Array.from({ length: 7 }, (_, i) => chunk(`b${i}`, axis(dim, i)))));
      const seen: string[] = [];
      let before: ListPosition | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = await store.withScope(batch, (c) => c.list(2, before));
        seen.push(...page.chunks.map((c) => c.id));
        if (!page.next) break;
        before = page.next;
      }
      assert.equal(seen.length, 7);
      assert.equal(new Set(seen).size, 7);
      await store.withScope(batch, (c) => c.deleteAll());
    });

    it('updates with a version guard and refuses a stale version', async () => {
      const dim = store.embeddingDim;
      const [id] = await store.withScope(scope, (c) => c.insert([chunk('v1', axis(dim, 6))]));
      const v2 = await store.withScope(scope, (c) => c.update(id!, { metadata: { edited: true }, ifVersion: 1 }));
      assert.ok(v2 && v2 !== 'version_mismatch');
      assert.equal(v2.version, 2);
      assert.deepEqual(v2.metadata, { edited: true });
      assert.equal(await store.withScope(scope, (c) => c.update(id!, { metadata: { lost: true }, ifVersion: 1 })), 'version_mismatch');
      assert.deepEqual((await store.withScope(scope, (c) => c.get(id!)))?.metadata, { edited: true });
      assert.equal(await store.withScope(scope, (c) => c.update(randomUUID(), { metadata: {} })), null);
      assert.equal(await store.withScope(scope, (c) => c.update('1; DROP TABLE memory_chunks', { metadata: {} })), null);
    });

    it('never returns expired chunks, but erasure removes them too', async () => {
      const dim = store.embeddingDim;
      const eraser = scopeOf(scope.tenantId, 'eraser');
      const past = new Date(Date.now() - 60_000);
      const [live, dead] = await store.withScope(eraser, (c) =>
        c.insert([chunk('live', axis(dim, 8)), chunk('dead', axis(dim, 8, 0.01), { expiresAt: past })]),
      );
      assert.equal(await store.withScope(eraser, (c) => c.get(dead!)), null);
      const listed = await store.withScope(eraser, (c) => c.list(10));
      assert.deepEqual(listed.chunks.map((c) => c.id), [live]);
      const found = await store.withScope(eraser, (c) => c.search(axis(dim, 8), 10));
      assert.deepEqual(found.hits.map((h) => h.id), [live]);
      assert.equal(await store.withScope(eraser, (c) => c.deleteAll()), 2);
      assert.equal((await store.withScope(eraser, (c) => c.list(10))).chunks.length, 0);
    });

    it('deletes one chunk and reports a missing one', async () => {
      const dim = store.embeddingDim;
      const [id] = await store.withScope(scope, (c) => c.insert([chunk('gone', axis(dim, 9))]));
      assert.equal(await store.withScope(scope, (c) => c.delete(id!)), true);
      assert.equal(await store.withScope(scope, (c) => c.delete(id!)), false);
      assert.equal(await store.withScope(scope, (c) => c.delete('not-a-uuid')), false);
    });

    it('refuses a scope without tenant or with a malformed user hash before any SQL runs', async () => {
      await assert.rejects(store.withScope({ tenantId: '', userHash: scope.userHash }, (c) => c.list(1)), { code: 'invalid_scope' });
      await assert.rejects(store.withScope({ tenantId: 'x'.repeat(129), userHash: scope.userHash }, (c) => c.list(1)), { code: 'invalid_scope' });
      await assert.rejects(store.withScope({ tenantId: 't', userHash: Buffer.alloc(3) }, (c) => c.list(1)), { code: 'invalid_scope' });
    });
  });
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SealedMemory } from '../src/memory/index.ts';
import { call, counter, sseQuery, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, unknown>;
const json = (v: unknown) => v as Json;

for (const target of targets()) {
  describe(`memory API end to end (${target.name})`, () => {
    let api: TestApi;
    const A = testTenant('api-a');
    const B = testTenant('api-b');
    let alice: string, bob: string, serviceA: string, mallory: string, serviceB: string;

    before(async () => {
      api = await startTestApi(target);
      [alice, bob, serviceA, mallory, serviceB] = await Promise.all([
        api.token(A, 'alice'),
        api.token(A, 'bob'),
        api.token(A),
        api.token(B, 'mallory'),
        api.token(B),
      ]);
    });
    after(async () => {
      await api?.close();
    });

    const url = (path: string) => `${api.url}${path}`;
    const rows = async (tenant: string) =>
      (await api.store.driver.ownerTransaction((sql) => sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1', [tenant]))).rows[0]!.n;
    const write = async (token: string, body: Json, headers: Record<string, string> = {}) => {
      const res = await call(url('/api/v1/memory'), 'POST', token, body, headers);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return (json(res.body).ids as string[]);
    };

    it('writes, then streams the memory back over SSE and answers the same in JSON', async () => {
      const [id] = await write(alice, { text: 'Alice keeps her spare house keys under the blue flower pot.', metadata: { topic: 'home' } });
      await write(alice, { chunks: ['Alice likes green tea in the morning.', 'Alice drives a red bicycle to work.'] });
      const events = await sseQuery(api.url, alice, { query: 'where are the spare house keys?', top_k: 3 });
      const results = events.filter((e) => e.event === 'result');
      const done = events.at(-1)!;
      assert.equal(done.event, 'done');
      assert.equal(results.length, 3);
      const first = JSON.parse(results[0]!.data) as Json;
      assert.equal(results[0]!.id, id);
      assert.equal(first.id, id);
      assert.equal(first.text, 'Alice keeps her spare house keys under the blue flower pot.');
      assert.deepEqual(first.metadata, { topic: 'home' });
      assert.equal(typeof first.score, 'number');
      assert.match(String(first.created_at), /^\d{4}-\d{2}-\d{2}T/);
      const summary = JSON.parse(done.data) as Json;
      assert.equal(summary.count, 3);
      assert.equal(summary.skipped, 0);
      assert.equal(typeof summary.ttfv_ms, 'number');
      assert.deepEqual(Object.keys(summary.timings as Json).sort(), ['embed_ms', 'open_ms', 'rerank_ms', 'search_ms']);

      const plain = await call(url('/api/v1/memory/query'), 'POST', alice, { query: 'where are the spare house keys?', top_k: 3 });
      assert.equal(plain.status, 200);
      assert.match(plain.headers.get('content-type') ?? '', /application\/json/);
      const body = json(plain.body);
      assert.deepEqual((body.results as Json[]).map((r) => r.id), results.map((r) => r.id));
      assert.equal(body.count, 3);
      assert.ok(await counter(api.metrics, 'relay_sse_streams_total', { outcome: 'success' }) >= 1);
    });

    it('splits long text into sentence chunks, lists them newest first, page by page', async () => {
      const sentences = Array.from({ length: 12 }, (_, i) => `Bob noted fact number ${i} about the garden shed and its tools.`);
      const ids = await write(bob, { text: sentences.join(' ') });
      assert.ok(ids.length > 1, 'several chunks');
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let pages = 0; pages < 20; pages++) {
        const res = await call(url(`/api/v1/memory?limit=2${cursor ? `&cursor=${cursor}` : ''}`), 'GET', bob);
        assert.equal(res.status, 200);
        const page = json(res.body);
        seen.push(...(page.items as Json[]).map((i) => String(i.id)));
        cursor = page.next_cursor as string | null;
        if (!cursor) break;
      }
      assert.deepEqual([...seen].sort(), [...ids].sort());
      const text = (await Promise.all(ids.map(async (id) => json((await call(url(`/api/v1/memory/${id}`), 'GET', bob)).body).text as string))).join(' ');
      for (const s of sentences) assert.ok(text.includes(s), s);
    });

    it('never shows one user or tenant another one’s memory, on any endpoint', async () => {
      const [secret] = await write(alice, { text: 'Alice’s bank PIN hint is the year of the comet.' });
      const crossBefore = await counter(api.metrics, 'relay_cross_tenant_attempts_total');
      const outsiders: Array<[string, string, number]> = [
        // [who, token, what naming alice gets]
        ['bob (same tenant, user token)', bob, 403],
        ['mallory (other tenant)', mallory, 403],
      ];
      for (const [who, token, status] of outsiders) {
        // Naming alice is refused outright.
        for (const [method, path, body] of [
          ['POST', '/api/v1/memory/query', { query: 'bank PIN', user_id: 'alice' }],
          ['POST', '/api/v1/memory', { text: 'planted', user_id: 'alice' }],
          ['GET', `/api/v1/memory/${secret}?user_id=alice`, undefined],
          ['PATCH', `/api/v1/memory/${secret}`, { text: 'overwritten', user_id: 'alice' }],
          ['DELETE', `/api/v1/memory/${secret}?user_id=alice`, undefined],
          ['GET', '/api/v1/memory?user_id=alice', undefined],
          ['DELETE', '/api/v1/users/alice/memory', undefined],
        ] as const) {
          const res = await call(url(path), method, token, body);
          assert.equal(res.status, status, `${who} ${method} ${path}`);
          assert.equal(json(json(res.body).error).code, 'forbidden_scope', `${who} ${method} ${path}`);
        }
        // Acting as themselves with alice's chunk id finds nothing.
        for (const [method, path, body] of [
          ['GET', `/api/v1/memory/${secret}`, undefined],
          ['PATCH', `/api/v1/memory/${secret}`, { text: 'overwritten' }],
          ['DELETE', `/api/v1/memory/${secret}`, undefined],
        ] as const) {
          const res = await call(url(path), method, token, body);
          assert.equal(res.status, 404, `${who} own-scope ${method}`);
        }
        const q = await call(url('/api/v1/memory/query'), 'POST', token, { query: 'Alice bank PIN hint comet', top_k: 100 });
        assert.equal(q.status, 200);
        assert.ok(!(json(q.body).results as Json[]).some((r) => r.id === secret || String(r.text).includes('PIN')), who);
        const events = await sseQuery(api.url, token, { query: 'Alice bank PIN hint comet', top_k: 100 });
        assert.ok(!events.some((e) => e.id === secret || e.data.includes('PIN')), `${who} over SSE`);
        const list = await call(url('/api/v1/memory?limit=100'), 'GET', token);
        assert.ok(!(json(list.body).items as Json[]).some((r) => r.id === secret), who);
      }
      // The other tenant's service token may name any user — of its own tenant only.
      const svc = await call(url('/api/v1/memory/query'), 'POST', serviceB, { query: 'Alice bank PIN hint comet', user_id: 'alice', top_k: 100 });
      assert.equal(svc.status, 200);
      assert.equal((json(svc.body).results as Json[]).length, 0);
      const svcGet = await call(url(`/api/v1/memory/${secret}?user_id=alice`), 'GET', serviceB);
      assert.equal(svcGet.status, 404);
      const svcErase = await call(url('/api/v1/users/alice/memory'), 'DELETE', serviceB);
      assert.deepEqual(svcErase.body, { deleted: 0 });
      // Naming another tenant in the body is refused and counted.
      const named = await call(url('/api/v1/memory/query'), 'POST', serviceB, { query: 'x', user_id: 'alice', tenant_id: A });
      assert.equal(named.status, 403);
      // A forged token (right claims, wrong key) gets nothing.
      const forged = await call(url('/api/v1/memory/query'), 'POST', await api.forged(A, 'alice'), { query: 'bank PIN' });
      assert.equal(forged.status, 401);
      assert.equal(json(json(forged.body).error).code, 'unauthorized');
      // alice's own service and alice herself still see it, unchanged.
      const own = await call(url(`/api/v1/memory/${secret}?user_id=alice`), 'GET', serviceA);
      assert.equal(json(own.body).text, 'Alice’s bank PIN hint is the year of the comet.');
      assert.equal(json(own.body).version, 1);
      const crossAfter = await counter(api.metrics, 'relay_cross_tenant_attempts_total');
      assert.equal(crossAfter - crossBefore, 2 * 7 + 1);
    });

    it('an Idempotency-Key retry returns the first ids and writes nothing twice, also when copies race', async () => {
      const tenantRows = await rows(A);
      const body = { text: 'Carol prefers window seats on long flights.', user_id: 'carol' };
      const first = await call(url('/api/v1/memory'), 'POST', serviceA, body, { 'idempotency-key': 'write-carol-1' });
      assert.equal(first.status, 201);
      assert.equal(first.headers.get('idempotent-replayed'), 'false');
      const again = await call(url('/api/v1/memory'), 'POST', serviceA, body, { 'idempotency-key': 'write-carol-1' });
      assert.equal(again.status, 201);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, first.body);
      assert.equal(await rows(A), tenantRows + 1);
      const other = await call(url('/api/v1/memory'), 'POST', serviceA, { ...body, text: 'Something else.' }, { 'idempotency-key': 'write-carol-1' });
      assert.equal(other.status, 422);
      assert.equal(json(json(other.body).error).code, 'idempotency_key_reused');
      assert.equal(await rows(A), tenantRows + 1);

      const race = { text: 'Carol is allergic to peanuts.', user_id: 'carol' };
      const copies = await Promise.all(Array.from({ length: 6 }, () => call(url('/api/v1/memory'), 'POST', serviceA, race, { 'idempotency-key': 'race-1' })));
      for (const c of copies) assert.equal(c.status, 201);
      const idSets = new Set(copies.map((c) => JSON.stringify(c.body)));
      assert.equal(idSets.size, 1, 'every copy answers the same ids');
      assert.equal(await rows(A), tenantRows + 2);
      // The same key in another user's scope is another key.
      const dave = await call(url('/api/v1/memory'), 'POST', serviceA, { ...race, user_id: 'dave' }, { 'idempotency-key': 'race-1' });
      assert.equal(dave.headers.get('idempotent-replayed'), 'false');
    });

    it('PATCH re-embeds and re-seals new text; If-Match makes concurrent edits safe', async () => {
      const [id] = await write(alice, { text: 'Alice’s favourite colour is orange.', metadata: { v: 1 } });
      const got = await call(url(`/api/v1/memory/${id}`), 'GET', alice);
      assert.equal(got.headers.get('etag'), '"1"');
      const patched = await call(url(`/api/v1/memory/${id}`), 'PATCH', alice, { text: 'Alice’s favourite colour is violet.' }, { 'if-match': '"1"' });
      assert.equal(patched.status, 200);
      assert.equal(json(patched.body).version, 2);
      assert.equal(patched.headers.get('etag'), '"2"');
      const stale = await call(url(`/api/v1/memory/${id}`), 'PATCH', alice, { metadata: { v: 3 } }, { 'if-match': '"1"' });
      assert.equal(stale.status, 412);
      assert.equal(json(json(stale.body).error).code, 'version_mismatch');
      const meta = await call(url(`/api/v1/memory/${id}`), 'PATCH', alice, { metadata: { v: 2 } });
      assert.equal(json(meta.body).version, 3);
      const now = json((await call(url(`/api/v1/memory/${id}`), 'GET', alice)).body);
      assert.equal(now.text, 'Alice’s favourite colour is violet.');
      assert.deepEqual(now.metadata, { v: 2 });
      const q = json((await call(url('/api/v1/memory/query'), 'POST', alice, { query: 'favourite colour violet', top_k: 1 })).body);
      assert.equal((q.results as Json[])[0]!.id, id);
      const bad = await call(url(`/api/v1/memory/${id}`), 'PATCH', alice, { text: 'x' }, { 'if-match': 'W/"abc"' });
      assert.equal(bad.status, 400);
      assert.equal(json(json(bad.body).error).code, 'invalid_header');
    });

    it('DELETE one chunk, and erasure of a user, remove exactly those rows', async () => {
      const [keep] = await write(bob, { text: 'Bob keeps this one.' });
      const [gone] = await write(alice, { text: 'Alice deletes this one.' });
      assert.equal((await call(url(`/api/v1/memory/${gone}`), 'DELETE', alice)).status, 204);
      assert.equal((await call(url(`/api/v1/memory/${gone}`), 'GET', alice)).status, 404);
      assert.equal((await call(url(`/api/v1/memory/${gone}`), 'DELETE', alice)).status, 404);
      const before = await rows(A);
      const mine = (json((await call(url('/api/v1/memory?limit=100'), 'GET', alice)).body).items as Json[]).length;
      const erased = await call(url('/api/v1/users/alice/memory'), 'DELETE', alice);
      assert.equal(erased.status, 200);
      assert.deepEqual(erased.body, { deleted: mine });
      assert.equal(await rows(A), before - mine);
      assert.equal((json((await call(url('/api/v1/memory'), 'GET', alice)).body).items as Json[]).length, 0);
      assert.equal((await call(url(`/api/v1/memory/${keep}`), 'GET', bob)).status, 200);
    });

    it('never returns an expired chunk, and the sweep purges it', async () => {
      const [old] = await write(serviceA, { text: 'Erin’s parking spot is B12 this week.', user_id: 'erin', ttl_s: 3600 });
      const [fresh] = await write(serviceA, { text: 'Erin’s parking spot was B7 last month.', user_id: 'erin' });
      const item = json((await call(url(`/api/v1/memory/${old}?user_id=erin`), 'GET', serviceA)).body);
      assert.ok(Date.parse(String(item.expires_at)) > Date.now());
      await api.store.driver.ownerTransaction((sql) => sql.query("UPDATE memory_chunks SET expires_at = now() - interval '1 second' WHERE id = $1", [old]));
      assert.equal((await call(url(`/api/v1/memory/${old}?user_id=erin`), 'GET', serviceA)).status, 404);
      const q = json((await call(url('/api/v1/memory/query'), 'POST', serviceA, { query: 'Erin parking spot', user_id: 'erin', top_k: 10 })).body);
      assert.deepEqual((q.results as Json[]).map((r) => r.id), [fresh]);
      const list = json((await call(url('/api/v1/memory?user_id=erin'), 'GET', serviceA)).body);
      assert.deepEqual((list.items as Json[]).map((r) => r.id), [fresh]);
      const purged = await api.store.purgeExpired();
      assert.ok(purged.chunks >= 1);
      const left = await api.store.driver.ownerTransaction((sql) => sql.query('SELECT id FROM memory_chunks WHERE id = $1', [old]));
      assert.equal(left.rows.length, 0);
    });

    it('skips and counts a tampered or moved chunk instead of returning it', async () => {
      const [victim, other] = await write(alice, { chunks: ['Alice’s locker code is 4417.', 'Alice’s locker is on floor two.'] });
      const failures = await counter(api.metrics, 'relay_open_failures_total');
      await api.store.driver.ownerTransaction((sql) =>
        sql.query("UPDATE memory_chunks SET ciphertext = set_byte(ciphertext, length(ciphertext) - 1, get_byte(ciphertext, length(ciphertext) - 1) # 1) WHERE id = $1", [victim]),
      );
      const events = await sseQuery(api.url, alice, { query: 'Alice locker code', top_k: 10 });
      assert.ok(!events.some((e) => e.id === victim));
      assert.ok(events.some((e) => e.id === other));
      assert.equal(JSON.parse(events.at(-1)!.data).skipped, 1);
      assert.equal((await call(url(`/api/v1/memory/${victim}`), 'GET', alice)).status, 404);
      assert.ok((await counter(api.metrics, 'relay_open_failures_total')) >= failures + 2);
      // Bob's ciphertext pasted onto alice's row id does not open as alice's either.
      const [bobs] = await write(bob, { text: 'Bob’s secret.' });
      await api.store.driver.ownerTransaction((sql) =>
        sql.query('UPDATE memory_chunks SET ciphertext = (SELECT ciphertext FROM memory_chunks WHERE id = $1) WHERE id = $2', [bobs, other]),
      );
      assert.equal((await call(url(`/api/v1/memory/${other}`), 'GET', alice)).status, 404);
    });

    it('filters on metadata, and only matches rows of the active embedder', async () => {
      await write(serviceA, { user_id: 'frank', chunks: ['Frank visited Lisbon in spring.'], metadata: { trip: 'lisbon', year: 2024 } });
      await write(serviceA, { user_id: 'frank', chunks: ['Frank visited Oslo in winter.'], metadata: { trip: 'oslo', year: 2022 } });
      const only = async (filter: unknown) => {
        const res = await call(url('/api/v1/memory/query'), 'POST', serviceA, { query: 'Frank visited', user_id: 'frank', filter });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return (json(res.body).results as Json[]).map((r) => r.text);
      };
      assert.deepEqual(await only({ trip: 'lisbon' }), ['Frank visited Lisbon in spring.']);
      assert.deepEqual(await only({ year: { $lt: 2023 } }), ['Frank visited Oslo in winter.']);
      assert.equal((await only({ $or: [{ trip: 'oslo' }, { year: { $gte: 2024 } }] })).length, 2);
      assert.deepEqual(await only({ trip: { $in: ['paris'] } }), []);
      // A row embedded by another model is not comparable: invisible to queries, still readable by id.
      const memory = new SealedMemory(api.store, api.keyring);
      const [foreign] = await memory.write(A, 'frank', [{ text: 'Frank visited Lisbon again.', embedding: await api.embedder.embed(['Frank visited Lisbon again.']).then((v) => v[0]!), embedderId: 'other-model/d384' }]);
      const texts = await only(undefined);
      assert.ok(!texts.includes('Frank visited Lisbon again.'));
      assert.equal(json((await call(url(`/api/v1/memory/${foreign}?user_id=frank`), 'GET', serviceA)).body).text, 'Frank visited Lisbon again.');
    });
  });
}

// List cursors (opaque, authenticated per tenant and user) and PATCH of ttl_s, on both stores.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Keyring, LocalKeyProvider } from '../src/crypto/index.ts';
import { decodeCursor, encodeCursor, InvalidCursorError } from '../src/memory/list-cursor.ts';
import { SqlKeyRepository } from '../src/store/index.ts';
import { call, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, unknown>;
const json = (v: unknown) => v as Json;

for (const target of targets()) {
  describe(`list cursors and PATCH ttl_s (${target.name})`, () => {
    let api: TestApi;
    const A = testTenant('cursor-a');
    const B = testTenant('cursor-b');
    let pager: string, bob: string, serviceA: string, pagerB: string, mallory: string, serviceB: string;
    const written: string[] = [];

    before(async () => {
      api = await startTestApi(target);
      [pager, bob, serviceA, pagerB, mallory, serviceB] = await Promise.all([
        api.token(A, 'pager'),
        api.token(A, 'bob'),
        api.token(A),
        api.token(B, 'pager'),
        api.token(B, 'mallory'),
        api.token(B),
      ]);
      // 25 rows in three writes: rows of one write share created_at, so the id breaks the ties.
      for (const n of [10, 10, 5]) {
        const res = await call(`${api.url}/api/v1/memory`, 'POST', pager, { chunks: Array.from({ length: n }, (_, i) => `pager note ${written.length + i}`) });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        written.push(...(json(res.body).ids as string[]));
      }
      for (const token of [bob, pagerB]) {
        const res = await call(`${api.url}/api/v1/memory`, 'POST', token, { chunks: Array.from({ length: 12 }, (_, i) => `other note ${i}`) });
        assert.equal(res.status, 201, JSON.stringify(res.body));
      }
    });
    after(async () => {
      await api?.close();
    });

    const list = (token: string, query: string) => call(`${api.url}/api/v1/memory?${query}`, 'GET', token);
    const firstCursor = async (token: string, query = 'limit=10') => {
      const res = await list(token, query);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const cursor = json(res.body).next_cursor;
      assert.equal(typeof cursor, 'string');
      return cursor as string;
    };
    const refused = async (token: string, cursor: string, extra = '') => {
      const res = await list(token, `limit=10&cursor=${encodeURIComponent(cursor)}${extra}`);
      assert.equal(res.status, 400, `${cursor}: ${JSON.stringify(res.body)}`);
      assert.equal((json(res.body).error as Json).code, 'invalid_cursor');
    };

    it('pages through 25 rows 10 at a time: every row exactly once, newest first, then null', async () => {
      const seen: string[] = [];
      const sizes: number[] = [];
      let cursor: string | null = null;
      for (let pages = 0; pages < 10; pages++) {
        const res = await list(pager, `limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const page = json(res.body);
        const items = page.items as Json[];
        sizes.push(items.length);
        seen.push(...items.map((c) => c.id as string));
        cursor = page.next_cursor as string | null;
        if (!cursor) break;
        assert.match(cursor, /^[A-Za-z0-9_-]+$/, 'opaque, URL-safe');
      }
      assert.deepEqual(sizes, [10, 10, 5]);
      assert.equal(new Set(seen).size, 25);
      assert.deepEqual([...seen].sort(), [...written].sort());
      // A cursor given out once stays good: the same page again.
      const again = await firstCursor(pager);
      const p2a = json((await list(pager, `limit=10&cursor=${again}`)).body).items as Json[];
      const p2b = json((await list(pager, `limit=10&cursor=${again}`)).body).items as Json[];
      assert.deepEqual(p2a.map((c) => c.id), seen.slice(10, 20));
      assert.deepEqual(p2b.map((c) => c.id), seen.slice(10, 20));
    });

    it('the old shape with a month-13 timestamp, truncated, bit-flipped or made up: 400 invalid_cursor', async () => {
      const good = await firstCursor(pager);
      const b64 = (s: string) => Buffer.from(s).toString('base64url');
      await refused(pager, b64(JSON.stringify(['2026-13-45 25:61:61+00', written[0]])));
      await refused(pager, b64(JSON.stringify(['2026-01-01 00:00:00+00', written[0]])));
      await refused(pager, good.slice(0, -1));
      await refused(pager, good.slice(0, 20));
      await refused(pager, `${good}A`);
      const bytes = Buffer.from(good, 'base64url');
      // Every byte: the format, the position and the tag are all covered.
      for (let i = 0; i < bytes.length; i++) {
        const flipped = Buffer.from(bytes);
        flipped[i]! ^= 0x01;
        await refused(pager, flipped.toString('base64url'));
      }
      // The last character's unused bits: another spelling of the same bytes is not ours.
      const last = good.at(-1)!;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const other = alphabet[alphabet.indexOf(last) ^ 1]!;
      await refused(pager, good.slice(0, -1) + other);
      await refused(pager, 'x'.repeat(55));
      await refused(pager, '');
    });

    it("another user's and another tenant's valid cursors are refused, not followed", async () => {
      const bobs = await firstCursor(bob);
      await refused(pager, bobs);
      await refused(serviceA, bobs, '&user_id=pager');
      // Same user id in another tenant: another scope.
      const pagerInB = await firstCursor(pagerB);
      await refused(pager, pagerInB);
      await refused(serviceA, pagerInB, '&user_id=pager');
      // And the owner's own cursor used from the other tenant.
      const mine = await firstCursor(pager);
      await refused(pagerB, mine);
      await refused(serviceB, mine, '&user_id=pager');
      await refused(mallory, mine);
      // A service token naming the user whose cursor it is: accepted (the cursor is the user's, not the token's).
      assert.equal((await list(serviceA, `limit=10&user_id=pager&cursor=${mine}`)).status, 200);
    });

    it('an authentic cursor whose position PostgreSQL cannot take is refused before the database sees it', async () => {
      const scope = { tenantId: A, userHash: await api.keyring.hmacUser(A, 'pager') };
      const id = written[0]!;
      for (const createdAtUs of [300_000_000_000_000_000n, -70_000_000_000_000_000n, 9_223_372_036_854_775_807n]) {
        await refused(pager, await encodeCursor(api.keyring, scope, { createdAtUs, id }));
      }
      // The edges of what is taken: a page (empty or not), never a 500.
      for (const createdAtUs of [-62_135_596_800_000_000n, 253_402_300_799_999_999n]) {
        const res = await list(pager, `limit=10&cursor=${await encodeCursor(api.keyring, scope, { createdAtUs, id })}`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
    });

    it('every replica takes every other one\'s cursors: the tag comes from the key catalog, not the process', async () => {
      const master = randomBytes(32);
      const tenant = testTenant('cursor-replicas');
      const ring = () => new Keyring({ provider: new LocalKeyProvider(master), repository: new SqlKeyRepository(api.store.driver, 'app') });
      const [one, two] = [ring(), ring()];
      const scope = { tenantId: tenant, userHash: await one.hmacUser(tenant, 'u') };
      const pos = { createdAtUs: 1_764_000_000_123_456n, id: '3f0c2b1a-0000-4000-8000-00000000abcd' };
      const cursor = await encodeCursor(one, scope, pos);
      assert.equal(await encodeCursor(two, scope, pos), cursor);
      assert.deepEqual(await decodeCursor(two, scope, cursor), pos);
      const otherUser = { tenantId: tenant, userHash: await two.hmacUser(tenant, 'v') };
      await assert.rejects(decodeCursor(two, otherUser, cursor), InvalidCursorError);
    });

    // ---- PATCH ttl_s ----------------------------------------------------------------------

    const write = async (token: string, body: Json) => {
      const res = await call(`${api.url}/api/v1/memory`, 'POST', token, body);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return (json(res.body).ids as string[])[0]!;
    };
    const stored = async (id: string) =>
      (await api.store.driver.ownerTransaction((sql) => sql.query<{ expires_at: Date | null; version: number; n: number }>(
        'SELECT expires_at, version FROM memory_chunks WHERE id = $1', [id],
      ))).rows[0];
    const patch = (token: string, id: string, body: Json) => call(`${api.url}/api/v1/memory/${id}`, 'PATCH', token, body);

    it('PATCH sets ttl_s (a new expiry from now) and clears it with null; GET agrees', async () => {
      const id = await write(bob, { text: 'Bob parks on level 3.', ttl_s: 60 });
      const t0 = Date.now();
      const set = await patch(bob, id, { ttl_s: 86_400 });
      const t1 = Date.now();
      assert.equal(set.status, 200, JSON.stringify(set.body));
      const expires = Date.parse(json(set.body).expires_at as string);
      assert.ok(expires >= t0 + 86_400_000 - 1000 && expires <= t1 + 86_400_000 + 1000, `expires_at ${json(set.body).expires_at}`);
      assert.equal(json(set.body).version, 2);
      assert.equal(json((await call(`${api.url}/api/v1/memory/${id}`, 'GET', bob)).body).expires_at, json(set.body).expires_at);

      const cleared = await patch(bob, id, { ttl_s: null });
      assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
      assert.equal(json(cleared.body).expires_at, null);
      assert.equal((await stored(id))!.expires_at, null);
      const got = json((await call(`${api.url}/api/v1/memory/${id}`, 'GET', bob)).body);
      assert.equal(got.expires_at, null);
      assert.equal(got.text, 'Bob parks on level 3.');

      // With text and metadata in the same PATCH.
      const both = await patch(bob, id, { metadata: { level: 3 }, ttl_s: 120 });
      assert.equal(both.status, 200);
      assert.deepEqual(json(both.body).metadata, { level: 3 });
      assert.notEqual(json(both.body).expires_at, null);
    });

    it('PATCH ttl_s is validated like the write\'s; a bad one changes nothing', async () => {
      const id = await write(bob, { text: 'Bob\'s locker is 42.', ttl_s: 3600 });
      const before = await stored(id);
      for (const ttl_s of [0, -1, 1.5, '60', 315_360_001, true, {}]) {
        const res = await patch(bob, id, { ttl_s });
        assert.equal(res.status, 400, `${JSON.stringify(ttl_s)}: ${JSON.stringify(res.body)}`);
        assert.equal((json(res.body).error as Json).code, 'validation_failed');
        assert.match((json(res.body).error as Json).message as string, /ttl_s/);
      }
      const nothing = await patch(bob, id, {});
      assert.equal(nothing.status, 400);
      assert.deepEqual(await stored(id), before);
    });

    it('an expired chunk stays gone: PATCH ttl_s cannot bring it back', async () => {
      const id = await write(bob, { text: 'Bob\'s old wifi password.', ttl_s: 3600 });
      await api.store.driver.ownerTransaction((sql) => sql.query("UPDATE memory_chunks SET expires_at = now() - interval '1 minute' WHERE id = $1", [id]));
      const before = await stored(id);
      for (const ttl_s of [null, 86_400]) {
        const res = await patch(bob, id, { ttl_s });
        assert.equal(res.status, 404, JSON.stringify(res.body));
        assert.equal((json(res.body).error as Json).code, 'not_found');
      }
      assert.deepEqual(await stored(id), before);
      assert.equal((await call(`${api.url}/api/v1/memory/${id}`, 'GET', bob)).status, 404);
    });

    it("PATCH ttl_s cannot touch another user's or tenant's chunk", async () => {
      const id = await write(bob, { text: 'Bob\'s bike lock code.', ttl_s: 3600 });
      const before = await stored(id);
      for (const [token, body, status, code] of [
        [pager, { ttl_s: null }, 404, 'not_found'],
        [serviceA, { ttl_s: null, user_id: 'pager' }, 404, 'not_found'],
        [pager, { ttl_s: null, user_id: 'bob' }, 403, 'forbidden_scope'],
        [mallory, { ttl_s: null }, 404, 'not_found'],
        [serviceB, { ttl_s: null, user_id: 'bob' }, 404, 'not_found'],
        [mallory, { ttl_s: null, tenant_id: A }, 403, 'forbidden_scope'],
      ] as const) {
        const res = await patch(token, id, body);
        assert.equal(res.status, status, JSON.stringify(res.body));
        assert.equal((json(res.body).error as Json).code, code);
      }
      assert.deepEqual(await stored(id), before);
    });
  });
}

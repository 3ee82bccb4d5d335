// GET /api/v1/users/:user_id/memory/export: NDJSON of every live chunk of a user, paged, on both stores.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RelayClient, RelayError, RelayNetworkError } from '../src/client/index.ts';
import type { Store } from '../src/store/index.ts';
import { call, counter, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, unknown>;
const json = (v: unknown) => v as Json;
/** Small pages, so that 250 rows take 36 of them. */
const PAGE = 7;

for (const target of targets()) {
  describe(`per-user export (${target.name})`, () => {
    let api: TestApi;
    const A = testTenant('export-a');
    const B = testTenant('export-b');
    let alice: string, bob: string, serviceA: string, mallory: string, serviceB: string;
    const live: string[] = [];
    const expired: string[] = [];
    let tampered = '';
    /** Scoped transactions the memory layer opened; and, when set, the one to fail. */
    let transactions = 0;
    let failAt = 0;
    const counting = (real: Store): Store =>
      new Proxy(real, {
        get(t, p) {
          const v = Reflect.get(t, p, t) as unknown;
          if (p !== 'withScope') return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
          return (...args: unknown[]) => {
            if (++transactions === failAt) return Promise.reject(new Error('the store went away'));
            return (v as (...a: unknown[]) => unknown).apply(t, args);
          };
        },
      });

    before(async () => {
      api = await startTestApi(target, { exportPageSize: PAGE, memoryStore: counting });
      [alice, bob, serviceA, mallory, serviceB] = await Promise.all([api.token(A, 'alice'), api.token(A, 'bob'), api.token(A), api.token(B, 'mallory'), api.token(B)]);
      const write = async (token: string, body: Json) => {
        const res = await call(`${api.url}/api/v1/memory`, 'POST', token, body);
        assert.equal(res.status, 201, JSON.stringify(res.body));
        return json(res.body).ids as string[];
      };
      // 250 live rows in five writes (rows of one write share created_at: the id orders them).
      for (let w = 0; w < 5; w++) {
        live.push(...(await write(alice, { chunks: Array.from({ length: 50 }, (_, i) => `alice note ${w * 50 + i}`), metadata: { batch: w } })));
      }
      live.push(...(await write(alice, { text: 'Alice keeps a spare key under the mat.', ttl_s: 86_400 })));
      expired.push(...(await write(alice, { chunks: ['alice expired one', 'alice expired two', 'alice expired three'], ttl_s: 60 })));
      tampered = (await write(alice, { text: 'alice tampered row' }))[0]!;
      await api.store.driver.ownerTransaction(async (sql) => {
        await sql.query("UPDATE memory_chunks SET expires_at = now() - interval '1 minute' WHERE id = ANY($1::uuid[])", [expired]);
        // One byte of the sealed text changed: it no longer opens.
        await sql.query("UPDATE memory_chunks SET ciphertext = overlay(ciphertext placing decode(lpad(to_hex(get_byte(ciphertext, 40) # 1), 2, '0'), 'hex') from 41 for 1) WHERE id = $1", [tampered]);
      });
      await write(bob, { chunks: ['bob note one', 'bob note two'] });
      await write(mallory, { text: 'mallory note' });
      // Tenant B has an "alice" too: never in tenant A's export, nor the other way round.
      await write(serviceB, { user_id: 'alice', text: 'alice of tenant B' });
    });
    after(async () => {
      await api?.close();
    });

    const exportOf = async (token: string | null, user: string, query = '') => {
      const res = await fetch(`${api.url}/api/v1/users/${encodeURIComponent(user)}/memory/export${query}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      const text = await res.text();
      return { res, text, lines: res.status === 200 ? text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Json) : [] };
    };

    it('streams every live chunk of the user once, as GET by id shows it, over many small pages; expired and tampered rows left out', async () => {
      const tamperedBefore = await counter(api.metrics, 'relay_open_failures_total', { reason: 'wrong_context_or_tampered' });
      const started = transactions;
      const { res, text, lines } = await exportOf(alice, 'alice');
      // 252 rows in the scope (the tampered one too), 7 a page, each page its own transaction.
      assert.equal(transactions - started, Math.ceil(252 / PAGE));
      assert.equal(res.status, 200, text);
      assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.ok(text.endsWith('\n'), 'every line ends with a newline');
      const ids = lines.map((l) => l.id as string);
      assert.equal(ids.length, 251);
      assert.equal(new Set(ids).size, 251, 'each row once');
      assert.deepEqual([...ids].sort(), [...live].sort());
      for (const gone of [...expired, tampered]) assert.ok(!ids.includes(gone), `${gone} is not exported`);
      // Newest first, as the list.
      const times = lines.map((l) => Date.parse(l.created_at as string));
      assert.ok(times.every((t, i) => i === 0 || times[i - 1]! >= t));
      // Each line is what GET by id answers.
      for (const line of [lines[0]!, lines[100]!, lines.at(-1)!]) {
        const got = await call(`${api.url}/api/v1/memory/${line.id as string}`, 'GET', alice);
        assert.deepEqual(line, got.body);
      }
      assert.ok(lines.some((l) => l.text === 'Alice keeps a spare key under the mat.' && l.expires_at !== null));
      assert.ok(!text.includes('alice of tenant B') && !text.includes('bob note') && !text.includes('alice expired'));
      assert.equal(await counter(api.metrics, 'relay_open_failures_total', { reason: 'wrong_context_or_tampered' }), tamperedBefore + 1, 'the tampered row was counted');
    });

    it('a service token names the user; a user with nothing answers an empty 200', async () => {
      const named = await exportOf(serviceA, 'alice');
      assert.equal(named.res.status, 200);
      assert.equal(named.lines.length, 251);
      const empty = await exportOf(serviceA, 'nobody-here');
      assert.equal(empty.res.status, 200);
      assert.equal(empty.text, '');
      const ownB = await exportOf(serviceB, 'alice');
      assert.deepEqual(ownB.lines.map((l) => l.text), ['alice of tenant B']);
    });

    it("refuses another user's or tenant's export (403 forbidden_scope, counted) and answers nothing without a token", async () => {
      for (const [token, user, query] of [
        [bob, 'alice', ''],
        [mallory, 'alice', ''],
        [mallory, 'mallory', `?tenant_id=${encodeURIComponent(A)}`],
        [serviceB, 'alice', `?tenant_id=${encodeURIComponent(A)}`],
      ] as const) {
        const attempts = await counter(api.metrics, 'relay_cross_tenant_attempts_total');
        const { res, text } = await exportOf(token, user, query);
        assert.equal(res.status, 403, text);
        assert.equal((json(JSON.parse(text)).error as Json).code, 'forbidden_scope');
        assert.ok(!text.includes('alice note'));
        assert.equal(await counter(api.metrics, 'relay_cross_tenant_attempts_total'), attempts + 1);
      }
      const anonymous = await exportOf(null, 'alice');
      assert.equal(anonymous.res.status, 401);
      assert.ok(!anonymous.text.includes('alice note'));
      const forged = await exportOf(await api.forged(A, 'alice'), 'alice');
      assert.equal(forged.res.status, 401);
    });

    it('the typed client yields the same records one by one, and its errors are typed', async () => {
      const client = new RelayClient({ baseUrl: api.url, token: serviceA, retries: 0 });
      const seen: string[] = [];
      for await (const chunk of client.exportMemories('alice')) {
        assert.equal(typeof chunk.text, 'string');
        seen.push(chunk.id);
      }
      assert.deepEqual(seen.sort(), [...live].sort());
      // Stopping early is fine (the rest is not read).
      let taken = 0;
      for await (const chunk of client.exportMemories('alice')) if (chunk.id && ++taken === 3) break;
      assert.equal(taken, 3);
      // A page that fails after the first: the answer breaks off, and the client says so.
      failAt = transactions + 4;
      let received = 0;
      await assert.rejects(
        (async () => {
          for await (const chunk of client.exportMemories('alice')) if (chunk.id) received++;
        })(),
        RelayNetworkError,
      );
      assert.ok(received < 251, `${received} records, then the error`);
      failAt = 0;
      const user = new RelayClient({ baseUrl: api.url, token: bob, retries: 0 });
      await assert.rejects(
        (async () => {
          for await (const chunk of user.exportMemories('alice')) assert.fail(`nothing may be yielded (${chunk.id})`);
        })(),
        (err: unknown) => err instanceof RelayError && err.code === 'forbidden_scope' && err.status === 403,
      );
    });
  });
}

// The last check before a row is served: its tenant and user must be the request's. Under RLS a
// client cannot plant such a row, so the check is shown two ways: on forged rows, and through the
// service a test builds as the fuzz does (startTestApi), playing a release with a scope bug — its
// statements run under another user's (or tenant's) scope, which RLS then honours. Every read path
// (JSON and SSE query, get, list, export) must serve none of those rows, count each in
// relay_scope_violations_total (the canary's zero-tolerance signal) and log it without its text.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { logOptions } from '../src/api/index.ts';
import { scopeMismatch } from '../src/memory/scope-guard.ts';
import type { Scope, Store } from '../src/store/index.ts';
import { call, counter, sseQuery, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

describe('scopeMismatch on forged rows', () => {
  const scope: Scope = { tenantId: 't1', userHash: Buffer.alloc(32, 1) };
  it('passes the scope\'s own row and names what differs in any other', () => {
    assert.equal(scopeMismatch(scope, { tenantId: 't1', userHash: Buffer.alloc(32, 1) }), null);
    assert.equal(scopeMismatch(scope, { tenantId: 't2', userHash: Buffer.alloc(32, 1) }), 'tenant');
    assert.equal(scopeMismatch(scope, { tenantId: 't1', userHash: Buffer.alloc(32, 2) }), 'user');
    assert.equal(scopeMismatch(scope, { tenantId: 't1', userHash: Buffer.alloc(31, 1) }), 'user');
    assert.equal(scopeMismatch(scope, { tenantId: 'T1', userHash: Buffer.alloc(32, 1) }), 'tenant');
    assert.equal(scopeMismatch(scope, { tenantId: 't1', userHash: 'x' as unknown as Buffer }), 'user');
  });
});

for (const target of targets()) {
  describe(`a release that reads under the wrong scope serves none of those rows (${target.name})`, () => {
    let api: TestApi;
    const lines: string[] = [];
    const A = testTenant('scopev-a');
    const B = testTenant('scopev-b');
    const secretText = 'Alice hides the boat key inside the red thermos.';
    /** Requests for these scopes run under alice's: the release's bug. */
    const misrouted: Scope[] = [];
    let aliceScope: Scope;
    let alice: string, bob: string, dave: string;
    let aliceId = '';

    before(async () => {
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(...chunk.toString().split('\n').filter(Boolean));
          done();
        },
      });
      const wrong = (real: Store): Store =>
        new Proxy(real, {
          get(t, prop) {
            if (prop === 'withScope') {
              return (scope: Scope, ...rest: unknown[]) => {
                const bug = misrouted.some((m) => m.tenantId === scope.tenantId && m.userHash.equals(scope.userHash));
                return (t.withScope as (...a: unknown[]) => unknown).call(t, bug ? aliceScope : scope, ...rest);
              };
            }
            const v: unknown = Reflect.get(t, prop, t);
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
          },
        });
      api = await startTestApi(target, { logger: pino(logOptions('info'), sink), memoryStore: wrong });
      [alice, bob, dave] = await Promise.all([api.token(A, 'alice'), api.token(A, 'bob'), api.token(B, 'dave')]);
      aliceScope = { tenantId: A, userHash: await api.keyring.hmacUser(A, 'alice') };
      const res = await call(`${api.url}/api/v1/memory`, 'POST', alice, { text: secretText, metadata: { place: 'boat' } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      aliceId = (res.body as { ids: string[] }).ids[0]!;
      misrouted.push({ tenantId: A, userHash: await api.keyring.hmacUser(A, 'bob') }, { tenantId: B, userHash: await api.keyring.hmacUser(B, 'dave') });
    });
    after(async () => {
      await api?.close();
    });

    const violations = () => counter(api.metrics, 'relay_scope_violations_total');

    for (const [who, token] of [
      ['another user of the tenant (user mismatch)', () => bob],
      ['a user of another tenant (tenant mismatch)', () => dave],
    ] as const) {
      it(`${who}: query (JSON and SSE), get, list and export serve nothing of alice's, and each row is counted`, async () => {
        const before = await violations();
        const openFailures = await counter(api.metrics, 'relay_open_failures_total');

        const q = await call(`${api.url}/api/v1/memory/query`, 'POST', token(), { query: 'where is the boat key?', top_k: 5 }, { accept: 'application/json' });
        assert.equal(q.status, 200, JSON.stringify(q.body));
        assert.deepEqual((q.body as { results: unknown[] }).results, []);
        assert.equal(await violations(), before + 1, 'the JSON query counted the row');

        const events = await sseQuery(api.url, token(), { query: 'where is the boat key?', top_k: 5 });
        assert.deepEqual(events.filter((e) => e.event === 'result'), []);
        assert.equal(events.at(-1)!.event, 'done');
        assert.equal(await violations(), before + 2, 'the SSE query counted the row');

        const got = await call(`${api.url}/api/v1/memory/${aliceId}`, 'GET', token());
        assert.equal(got.status, 404, JSON.stringify(got.body));
        assert.equal(await violations(), before + 3, 'get counted the row');

        const list = await call(`${api.url}/api/v1/memory`, 'GET', token());
        assert.equal(list.status, 200, JSON.stringify(list.body));
        assert.deepEqual((list.body as { items: unknown[] }).items, []);
        assert.equal(await violations(), before + 4, 'list counted the row');

        let expected = before + 4;
        const sub = who.startsWith('another user') ? 'bob' : 'dave';
        const exp = await fetch(`${api.url}/api/v1/users/${sub}/memory/export`, { headers: { authorization: `Bearer ${token()}` } });
        const body = await exp.text();
        if (exp.status !== 404) {
          // The export route (GET /api/v1/users/:user_id/memory/export) must serve none of alice's rows either.
          assert.equal(exp.status, 200, body);
          assert.ok(!body.includes(secretText) && !body.includes(aliceId), 'the export served alice\'s row');
          expected++;
          assert.equal(await violations(), expected, 'export counted the row');
        }

        // Dropped before it was opened: no open failure, and nothing of the row in the log.
        assert.equal(await counter(api.metrics, 'relay_open_failures_total'), openFailures);
        const log = lines.filter((l) => l.includes('scope violation'));
        assert.ok(log.length >= expected - before, `${log.length} scope violation lines`);
        assert.ok(log.every((l) => (JSON.parse(l) as { chunkId?: string }).chunkId === aliceId));
        assert.ok(!lines.some((l) => l.includes('boat key') || l.includes('thermos')), 'no memory text in the log');
      });
    }

    it('alice herself still gets her row (the check passes the scope\'s own rows)', async () => {
      const before = await violations();
      const q = await call(`${api.url}/api/v1/memory/query`, 'POST', alice, { query: 'where is the boat key?', top_k: 5 }, { accept: 'application/json' });
      assert.equal((q.body as { results: Array<{ text: string }> }).results[0]?.text, secretText);
      assert.equal((await call(`${api.url}/api/v1/memory/${aliceId}`, 'GET', alice)).status, 200);
      assert.equal(await violations(), before);
    });
  });
}

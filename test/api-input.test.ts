import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { call, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, unknown>;

interface Case {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Use no token, or this one instead of the tenant's service token. */
  token?: 'none' | 'user' | string;
  status: number;
  code: string;
}

const big = (n: number) => 'x'.repeat(n);

for (const target of targets()) {
  describe(`memory API refuses bad input with a clear error and writes nothing (${target.name})`, () => {
    let api: TestApi;
    const T = testTenant('input');
    let service: string;
    let user: string;
    let existing: string;

    before(async () => {
      api = await startTestApi(target, { limits: { bodyLimitBytes: 256 * 1024 } });
      service = await api.token(T);
      user = await api.token(T, 'ursula');
      const res = await call(`${api.url}/api/v1/memory`, 'POST', user, { text: 'Ursula has one chunk here.' });
      assert.equal(res.status, 201);
      existing = ((res.body as Json).ids as string[])[0]!;
    });
    after(async () => {
      await api?.close();
    });

    const snapshot = async () =>
      (
        await api.store.driver.ownerTransaction((sql) =>
          sql.query<{ n: number; v: number; k: number }>(
            `SELECT count(*)::int AS n, coalesce(sum(version), 0)::int AS v,
                    (SELECT count(*)::int FROM idempotency_keys WHERE tenant_id = $1) AS k
               FROM memory_chunks WHERE tenant_id = $1`,
            [T],
          ),
        )
      ).rows[0]!;

    const q = (extra: Json) => ({ query: 'what does ursula have?', user_id: 'ursula', ...extra });
    const w = (extra: Json) => ({ text: 'A new chunk.', user_id: 'ursula', ...extra });
    const cases: Case[] = [
      { name: 'invalid JSON', method: 'POST', path: '/api/v1/memory', body: '{"text": "a",', status: 400, code: 'invalid_json' },
      { name: 'empty JSON body', method: 'POST', path: '/api/v1/memory', body: '', headers: { 'content-type': 'application/json' }, status: 400, code: 'invalid_json' },
      { name: 'JSON array body', method: 'POST', path: '/api/v1/memory', body: [1, 2], status: 400, code: 'validation_failed' },
      { name: 'text as a number', method: 'POST', path: '/api/v1/memory', body: w({ text: 42 }), status: 400, code: 'validation_failed' },
      { name: 'unknown field', method: 'POST', path: '/api/v1/memory', body: w({ colour: 'red' }), status: 400, code: 'validation_failed' },
      { name: 'both text and chunks', method: 'POST', path: '/api/v1/memory', body: w({ chunks: ['b'] }), status: 400, code: 'validation_failed' },
      { name: 'neither text nor chunks', method: 'POST', path: '/api/v1/memory', body: { user_id: 'ursula' }, status: 400, code: 'validation_failed' },
      { name: 'blank text', method: 'POST', path: '/api/v1/memory', body: w({ text: '   \n ' }), status: 400, code: 'validation_failed' },
      { name: 'empty chunk in chunks', method: 'POST', path: '/api/v1/memory', body: { user_id: 'ursula', chunks: ['ok', ''] }, status: 400, code: 'validation_failed' },
      { name: 'metadata not an object', method: 'POST', path: '/api/v1/memory', body: w({ metadata: [1] }), status: 400, code: 'validation_failed' },
      { name: 'metadata with NUL', method: 'POST', path: '/api/v1/memory', body: w({ metadata: { k: 'a\u0000b' } }), status: 400, code: 'validation_failed' },
      { name: 'metadata with a lone surrogate', method: 'POST', path: '/api/v1/memory', body: '{"text":"a","user_id":"ursula","metadata":{"k":"\\ud800"}}', status: 400, code: 'validation_failed' },
      { name: 'metadata too large', method: 'POST', path: '/api/v1/memory', body: w({ metadata: { k: big(20_000) } }), status: 400, code: 'validation_failed' },
      { name: 'ttl_s 0', method: 'POST', path: '/api/v1/memory', body: w({ ttl_s: 0 }), status: 400, code: 'validation_failed' },
      { name: 'ttl_s fractional', method: 'POST', path: '/api/v1/memory', body: w({ ttl_s: 1.5 }), status: 400, code: 'validation_failed' },
      { name: 'user_id of 10 KB', method: 'POST', path: '/api/v1/memory', body: w({ user_id: big(10_240) }), status: 400, code: 'validation_failed' },
      { name: 'user_id with a control character', method: 'POST', path: '/api/v1/memory', body: w({ user_id: 'ur\u0007sula' }), status: 400, code: 'validation_failed' },
      { name: 'user_id with a newline', method: 'POST', path: '/api/v1/memory', body: w({ user_id: 'ursula\n' }), status: 400, code: 'validation_failed' },
      { name: 'service token without user_id', method: 'POST', path: '/api/v1/memory', body: { text: 'a' }, status: 400, code: 'validation_failed' },
      { name: 'bad Idempotency-Key', method: 'POST', path: '/api/v1/memory', body: w({}), headers: { 'idempotency-key': 'has space' }, status: 400, code: 'invalid_header' },
      { name: 'oversize body', method: 'POST', path: '/api/v1/memory', body: w({ text: big(300 * 1024) }), status: 413, code: 'payload_too_large' },
      { name: 'form-encoded body', method: 'POST', path: '/api/v1/memory', body: 'text=a', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, code: 'unsupported_media_type' },
      { name: 'JSON sent as text/plain', method: 'POST', path: '/api/v1/memory', body: JSON.stringify(w({})), headers: { 'content-type': 'text/plain' }, status: 415, code: 'unsupported_media_type' },
      { name: 'query sent as text/plain', method: 'POST', path: '/api/v1/memory/query', body: JSON.stringify(q({})), headers: { 'content-type': 'text/plain;charset=utf-8' }, status: 415, code: 'unsupported_media_type' },
      { name: 'PATCH sent as text/plain', method: 'PATCH', path: '/api/v1/memory/{id}', body: '{"user_id":"ursula","text":"x"}', headers: { 'content-type': 'text/plain' }, status: 415, code: 'unsupported_media_type' },
      { name: 'JSON in Latin-1', method: 'POST', path: '/api/v1/memory', body: JSON.stringify(w({})), headers: { 'content-type': 'application/json; charset=iso-8859-1' }, status: 415, code: 'unsupported_media_type' },
      { name: 'a merge-patch body', method: 'PATCH', path: '/api/v1/memory/{id}', body: '{"user_id":"ursula","text":"x"}', headers: { 'content-type': 'application/merge-patch+json' }, status: 415, code: 'unsupported_media_type' },
      { name: 'metadata nested 10,000 deep', method: 'POST', path: '/api/v1/memory', body: `{"text":"a","user_id":"ursula","metadata":{"k":${'{"k":'.repeat(10_000)}1${'}'.repeat(10_000)}}}`, status: 400, code: 'validation_failed' },
      { name: 'metadata nested 100,000 deep', method: 'POST', path: '/api/v1/memory', body: `{"text":"a","user_id":"ursula","metadata":{"k":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`, status: 400, code: 'validation_failed' },
      { name: 'PATCH metadata nested 10,000 deep', method: 'PATCH', path: '/api/v1/memory/{id}', body: `{"user_id":"ursula","metadata":{"k":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`, status: 400, code: 'validation_failed' },
      { name: 'filter nested 100,000 deep', method: 'POST', path: '/api/v1/memory/query', body: `{"query":"a","user_id":"ursula","filter":{"k":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`, status: 400, code: 'invalid_filter' },
      { name: 'a body nested 100,000 deep', method: 'POST', path: '/api/v1/memory', body: `${'['.repeat(100_000)}${']'.repeat(100_000)}`, status: 400, code: 'validation_failed' },
      { name: 'metadata with a __proto__ key', method: 'POST', path: '/api/v1/memory', body: '{"text":"a","user_id":"ursula","metadata":{"__proto__":{"polluted":true}}}', status: 400, code: 'validation_failed' },
      { name: 'metadata with an escaped __proto__ key', method: 'POST', path: '/api/v1/memory', body: '{"text":"a","user_id":"ursula","metadata":{"a":[{"\\u005f_proto__":1}]}}', status: 400, code: 'validation_failed' },
      { name: 'a JSON null body', method: 'POST', path: '/api/v1/memory', body: 'null', status: 400, code: 'validation_failed' },
      { name: 'no token', method: 'POST', path: '/api/v1/memory', body: w({}), token: 'none', status: 401, code: 'unauthorized' },
      { name: 'garbage token', method: 'POST', path: '/api/v1/memory', body: w({}), token: 'not.a.jwt', status: 401, code: 'unauthorized' },
      { name: 'empty query', method: 'POST', path: '/api/v1/memory/query', body: q({ query: '' }), status: 400, code: 'validation_failed' },
      { name: '100 KB query', method: 'POST', path: '/api/v1/memory/query', body: q({ query: big(100 * 1024) }), status: 400, code: 'validation_failed' },
      { name: 'top_k 0', method: 'POST', path: '/api/v1/memory/query', body: q({ top_k: 0 }), status: 400, code: 'validation_failed' },
      { name: 'top_k 1000', method: 'POST', path: '/api/v1/memory/query', body: q({ top_k: 1000 }), status: 400, code: 'validation_failed' },
      { name: 'top_k as a string', method: 'POST', path: '/api/v1/memory/query', body: q({ top_k: '5' }), status: 400, code: 'validation_failed' },
      { name: 'unknown rerank mode', method: 'POST', path: '/api/v1/memory/query', body: q({ rerank: 'maybe' }), status: 400, code: 'validation_failed' },
      { name: 'filter with an unknown operator', method: 'POST', path: '/api/v1/memory/query', body: q({ filter: { k: { $regex: '.*' } } }), status: 400, code: 'invalid_filter' },
      { name: 'filter not an object', method: 'POST', path: '/api/v1/memory/query', body: q({ filter: 'k = 1' }), status: 400, code: 'invalid_filter' },
      { name: 'filter with NUL in a value', method: 'POST', path: '/api/v1/memory/query', body: q({ filter: { k: 'a\u0000' } }), status: 400, code: 'invalid_filter' },
      { name: 'unacceptable Accept', method: 'POST', path: '/api/v1/memory/query', body: q({}), headers: { accept: 'text/html' }, status: 406, code: 'not_acceptable' },
      { name: 'Accept refusing both', method: 'POST', path: '/api/v1/memory/query', body: q({}), headers: { accept: 'text/event-stream;q=0, application/json;q=0, */*' }, status: 406, code: 'not_acceptable' },
      { name: 'list with limit=abc', method: 'GET', path: '/api/v1/memory?user_id=ursula&limit=abc', status: 400, code: 'validation_failed' },
      { name: 'a path with bad percent-encoding', method: 'DELETE', path: '/api/v1/users/%zz/memory', status: 400, code: 'bad_request' },
      { name: 'PATCH with nothing to change', method: 'PATCH', path: '/api/v1/memory/{id}', body: { user_id: 'ursula' }, status: 400, code: 'validation_failed' },
      { name: 'PATCH with unknown field', method: 'PATCH', path: '/api/v1/memory/{id}', body: { user_id: 'ursula', version: 9 }, status: 400, code: 'validation_failed' },
      { name: 'PATCH a forged id', method: 'PATCH', path: '/api/v1/memory/../../etc', body: { user_id: 'ursula', text: 'x' }, status: 404, code: 'not_found' },
      { name: 'PATCH a non-UUID id', method: 'PATCH', path: '/api/v1/memory/1%20OR%201=1', body: { user_id: 'ursula', text: 'x' }, status: 404, code: 'not_found' },
      { name: 'DELETE a non-UUID id', method: 'DELETE', path: '/api/v1/memory/abc?user_id=ursula', status: 404, code: 'not_found' },
      { name: 'list with limit 0', method: 'GET', path: '/api/v1/memory?user_id=ursula&limit=0', status: 400, code: 'validation_failed' },
      { name: 'list with a forged cursor', method: 'GET', path: '/api/v1/memory?user_id=ursula&cursor=eyJhIjoxfQ', status: 400, code: 'invalid_cursor' },
      { name: 'list with an unknown parameter', method: 'GET', path: '/api/v1/memory?user_id=ursula&sort=asc', status: 400, code: 'validation_failed' },
      { name: 'erasure of an over-long user id', method: 'DELETE', path: `/api/v1/users/${big(300)}/memory`, status: 400, code: 'validation_failed' },
      { name: 'erasure of another user with a user token', method: 'DELETE', path: '/api/v1/users/someone/memory', token: 'user', status: 403, code: 'forbidden_scope' },
      { name: 'unknown route', method: 'GET', path: '/api/v1/memories', status: 404, code: 'not_found' },
    ];

    for (const c of cases) {
      it(`${c.name} → ${c.status} ${c.code}`, async () => {
        const before = await snapshot();
        const token = c.token === 'none' ? null : c.token === 'user' ? user : (c.token ?? service);
        const res = await call(`${api.url}${c.path.replace('{id}', existing)}`, c.method, token, c.body, c.headers);
        assert.equal(res.status, c.status, JSON.stringify(res.body));
        const error = (res.body as { error?: { code?: string; message?: string } }).error;
        assert.equal(error?.code, c.code);
        assert.ok(error?.message && error.message.length <= 600, 'a short message');
        assert.deepEqual(await snapshot(), before, 'nothing written');
      });
    }

    it("validation messages name the field and what it takes, in the API's words (one per field, at most three)", async () => {
      const before = await snapshot();
      const said: [string, string, unknown, string][] = [
        ['POST', '/api/v1/memory', 'null', 'the body must be a JSON object, not null'],
        ['POST', '/api/v1/memory', [1], 'the body must be a JSON object, not an array'],
        ['GET', '/api/v1/memory?user_id=ursula&limit=abc', undefined, 'limit: must be an integer from 1 to 100'],
        ['GET', '/api/v1/memory?user_id=ursula&limit=1.5', undefined, 'limit: must be an integer from 1 to 100'],
        ['POST', '/api/v1/memory/query', q({ top_k: '5', rerank: 'maybe' }), 'top_k: must be an integer from 1 to 100; rerank: must be one of "auto", "on", "off"'],
        ['POST', '/api/v1/memory', w({ text: 42 }), 'text: must be a string, not a number'],
        ['POST', '/api/v1/memory', { user_id: 'ursula', chunks: ['ok', ' '] }, 'chunks[1]: must not be empty or blank'],
        ['POST', '/api/v1/memory', w({ colour: 'red' }), 'unknown field "colour" (allowed: user_id, tenant_id, text, chunks, metadata, ttl_s)'],
        ['POST', '/api/v1/memory', w({ metadata: { a: { b: 'x\u0000' } } }), 'metadata.a.b: strings must be well-formed Unicode without NUL'],
        ['POST', '/api/v1/memory', w({ metadata: { 'a b': [1, 'x\u0000'] } }), 'metadata["a b"][1]: strings must be well-formed Unicode without NUL'],
        ['POST', '/api/v1/memory', w({ metadata: { '': 1 } }), 'metadata: keys must be 1 to 128 characters'],
        ['POST', '/api/v1/memory', w({ metadata: { k: [[[[[[[[[1]]]]]]]]] } }), 'metadata: nested deeper than 8 levels'],
        ['POST', '/api/v1/memory', `{"text":"a","user_id":"ursula","metadata":{"k":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`, 'metadata: nested deeper than 8 levels'],
        ['POST', '/api/v1/memory', '{"text":"a","user_id":"ursula","metadata":{"__proto__":{"polluted":true}}}', 'metadata: the key "__proto__" is not allowed'],
        ['POST', '/api/v1/memory', w({ user_id: '', text: 5, ttl_s: 0, chunks: {} }), 'user_id: must not be empty; text: must be a string, not a number; chunks: must be an array, not an object'],
      ];
      for (const [method, path, body, message] of said) {
        const res = await call(`${api.url}${path}`, method, service, body);
        assert.equal(res.status, 400, path);
        assert.deepEqual(res.body, { error: { code: 'validation_failed', message } });
      }
      assert.deepEqual(await snapshot(), before, 'nothing written');
    });

    it('Accept: text/* streams, application/* answers in one body, q-values choose', async () => {
      const cases: [string, string][] = [
        ['text/*', 'text/event-stream'],
        ['application/*', 'application/json'],
        ['*/*', 'application/json'],
        ['text/event-stream;q=0.2, application/json;q=0.8', 'application/json'],
        ['text/event-stream;q=0, */*', 'application/json'],
      ];
      for (const [accept, type] of cases) {
        const res = await fetch(`${api.url}/api/v1/memory/query`, {
          method: 'POST',
          headers: { authorization: `Bearer ${user}`, 'content-type': 'application/json', accept },
          body: JSON.stringify({ query: 'what does ursula have?' }),
        });
        assert.equal(res.status, 200, accept);
        assert.match(res.headers.get('content-type') ?? '', new RegExp(`^${type.replace('/', '\\/')}`), accept);
        const text = await res.text();
        if (type === 'text/event-stream') assert.match(text, /event: done/);
        else assert.equal((JSON.parse(text) as { count: number }).count, 1);
      }
    });

    it('a path that is not valid percent-encoded UTF-8 answers in the API shape, with the request id', async () => {
      for (const path of ['/api/v1/users/%zz/memory', '/api/v1/memory/%ED%A0%80', '/api/v1/users/%C0%AF/memory']) {
        const res = await call(`${api.url}${path}`, 'DELETE', service, undefined, { 'x-request-id': 'bad-path-1' });
        assert.equal(res.status, 400, path);
        assert.equal((res.body as { error: { code: string } }).error.code, 'bad_request');
        assert.equal(res.headers.get('x-request-id'), 'bad-path-1');
      }
    });

    it('a route that takes no body ignores one, whatever its type', async () => {
      const res = await call(`${api.url}/api/v1/memory`, 'POST', user, { text: 'Ursula owns a red kite.' });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const id = (res.body as { ids: string[] }).ids[0]!;
      for (const [type, body] of [['text/plain', 'hello'], ['application/json', '{"broken":'], ['application/xml', '<a/>']] as const) {
        const got = await call(`${api.url}/api/v1/memory/${id}?user_id=ursula`, 'GET', service, undefined, { 'content-type': type });
        assert.equal(got.status, 200, type);
        assert.equal((await call(`${api.url}/api/v1/users/nobody/memory`, 'DELETE', service, body, { 'content-type': type })).status, 200, type);
      }
      assert.equal((await call(`${api.url}/api/v1/memory/${id}?user_id=ursula`, 'DELETE', service, '{"broken":', { 'content-type': 'text/plain' })).status, 204);
    });

    it('constructor and prototype are plain metadata keys: stored and read back as data, nothing polluted', async () => {
      const res = await call(`${api.url}/api/v1/memory`, 'POST', service, '{"text":"Ursula builds things.","user_id":"ursula","metadata":{"constructor":{"prototype":{"polluted":true}}}}');
      assert.equal(res.status, 201);
      const id = (res.body as { ids: string[] }).ids[0]!;
      const got = await call(`${api.url}/api/v1/memory/${id}?user_id=ursula`, 'GET', service);
      assert.deepEqual((got.body as { metadata: unknown }).metadata, { constructor: { prototype: { polluted: true } } });
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.equal((await call(`${api.url}/api/v1/memory/${id}?user_id=ursula`, 'DELETE', service)).status, 204);
    });

    it('an expired token, one without exp, and one with alg none are 401', async () => {
      const secretless = [
        // alg none: header {"alg":"none"}, claims of this tenant, no signature.
        `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ tid: T, sub: 'ursula', exp: 9e9 })).toString('base64url')}.`,
      ];
      const expired = await new SignJWT({ tid: T, sub: 'ursula' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(Date.now() / 1000) - 3600).sign(new TextEncoder().encode('x'.repeat(40)));
      for (const token of [...secretless, expired]) {
        const res = await call(`${api.url}/api/v1/memory?user_id=ursula`, 'GET', token);
        assert.equal(res.status, 401);
        assert.equal((res.body as { error: { code: string } }).error.code, 'unauthorized');
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
      }
    });

    it('no input a client can send gets a 500 (random bodies on every endpoint)', async () => {
      const before = await snapshot();
      const junk: unknown[] = [null, 0, -1, 1e308, true, 'x', [], {}, { query: null }, { query: {} }, { text: [] }, { chunks: {} }, { metadata: 'm' },
        { query: 'a', filter: { $and: [] } }, { query: 'a', filter: { $or: [{}] } }, { query: 'a', filter: { k: { $in: [] } } }, { query: 'a', filter: { k: { $gt: {} } } },
        { query: 'a', top_k: 1e308 }, { query: 'a', top_k: -0 }, { '__proto__': { polluted: true } }, { constructor: { prototype: { x: 1 } } },
        { query: '\ud800' }, { text: '\u0000' }, { user_id: '' }, { user_id: 'a'.repeat(257) }, { ttl_s: 1e20, text: 'a' }];
      for (const [method, path] of [['POST', '/api/v1/memory'], ['POST', '/api/v1/memory/query'], ['PATCH', `/api/v1/memory/${existing}`]] as const) {
        for (const body of junk) {
          for (const token of [service, user]) {
            const res = await call(`${api.url}${path}`, method, token, JSON.stringify(body));
            assert.ok(res.status >= 400 && res.status < 500, `${method} ${path} ${JSON.stringify(body)} → ${res.status}`);
          }
        }
      }
      assert.deepEqual(await snapshot(), before);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });

    it('too many requests from one tenant get 429, other tenants are unaffected', async () => {
      const limited = await startTestApi(target, { limits: { rateLimitPerMin: 3 } });
      try {
        const L = testTenant('limited');
        const mine = await limited.token(L, 'ursula');
        const theirs = await limited.token(testTenant('other'), 'olga');
        const statuses: number[] = [];
        for (let i = 0; i < 5; i++) statuses.push((await call(`${limited.url}/api/v1/memory?limit=1`, 'GET', mine)).status);
        assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
        const refused = await call(`${limited.url}/api/v1/memory`, 'POST', mine, { text: 'should not land' });
        assert.equal(refused.status, 429);
        assert.equal((refused.body as { error: { code: string } }).error.code, 'rate_limited');
        assert.ok(Number(refused.headers.get('retry-after')) > 0);
        assert.equal((await call(`${limited.url}/api/v1/memory?limit=1`, 'GET', theirs)).status, 200);
        // Health and metrics are not rate-limited.
        assert.equal((await call(`${limited.url}/healthz`, 'GET', null)).status, 200);
        const landed = await limited.store.driver.ownerTransaction((sql) => sql.query('SELECT 1 FROM memory_chunks WHERE tenant_id = $1', [L]));
        assert.equal(landed.rows.length, 0);
      } finally {
        await limited.close();
      }
    });
  });
}

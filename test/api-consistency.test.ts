// Relay-Consistency tokens on both stores without a standby: every write answers one, every read
// takes one back, and a token this API did not give out to the tenant is refused before the read.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RelayClient } from '../src/client/index.ts';
import { ConsistencyTracker } from '../src/client/consistency.ts';
import { decodeConsistencyToken, encodeConsistencyToken } from '../src/memory/consistency-token.ts';
import { call, counter, startTestApi, type Answer, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, unknown>;
const json = (v: unknown) => v as Json;
const TOKEN = /^[A-Za-z0-9_-]{34}$/;

for (const target of targets()) {
  describe(`Relay-Consistency tokens (${target.name})`, () => {
    let api: TestApi;
    const A = testTenant('consistency-a');
    const B = testTenant('consistency-b');
    let alice: string, aliceB: string;

    before(async () => {
      api = await startTestApi(target);
      [alice, aliceB] = await Promise.all([api.token(A, 'alice'), api.token(B, 'alice')]);
    });
    after(async () => {
      await api?.close();
    });

    const tokenOf = (res: Answer) => {
      const token = res.headers.get('relay-consistency');
      assert.ok(token && TOKEN.test(token), `no consistency token on ${res.status}: ${token}`);
      return token;
    };
    const write = async (token: string, text: string) => {
      const res = await call(`${api.url}/api/v1/memory`, 'POST', token, { text });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return { id: (json(res.body).ids as string[])[0]!, token: tokenOf(res) };
    };
    const reads = (token: string, id: string) => [
      () => call(`${api.url}/api/v1/memory/${id}`, 'GET', token),
      () => call(`${api.url}/api/v1/memory?limit=5`, 'GET', token),
      () => call(`${api.url}/api/v1/memory/query`, 'POST', token, { query: 'kestrel', top_k: 3 }),
      () => call(`${api.url}/api/v1/memory/query`, 'POST', token, { query: 'kestrel', top_k: 3 }, { accept: 'text/event-stream' }),
    ];

    it('every write, patch, delete and erasure answers a token past the one before', async () => {
      const first = await write(alice, 'a kestrel hovers over the field');
      const patched = await call(`${api.url}/api/v1/memory/${first.id}`, 'PATCH', alice, { text: 'a kestrel hovers, then dives' });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      const second = await write(alice, 'the kestrel nests in the tower');
      const deleted = await call(`${api.url}/api/v1/memory/${second.id}`, 'DELETE', alice);
      assert.equal(deleted.status, 204);
      const service = await api.token(A);
      const bobs = await call(`${api.url}/api/v1/memory`, 'POST', service, { user_id: 'bob', text: 'bob saw a kestrel' });
      assert.equal(bobs.status, 201, JSON.stringify(bobs.body));
      const erased = await call(`${api.url}/api/v1/users/bob/memory`, 'DELETE', service);
      assert.equal(erased.status, 200, JSON.stringify(erased.body));
      assert.equal(json(erased.body).deleted, 1);
      const tokens = [first.token, tokenOf(patched), second.token, tokenOf(deleted), tokenOf(bobs), tokenOf(erased)];
      const positions = await Promise.all(tokens.map((t) => decodeConsistencyToken(api.keyring, A, t)));
      for (let i = 1; i < positions.length; i++) assert.ok(positions[i]! > positions[i - 1]!, `position ${i} did not move: ${positions.join(', ')}`);
      // A refused write answers none.
      const refused = await call(`${api.url}/api/v1/memory`, 'POST', alice, { text: '   ' });
      assert.equal(refused.status, 400);
      assert.equal(refused.headers.get('relay-consistency'), null);
    });

    it('get, list and query (JSON and SSE) take the token back and see the write', async () => {
      const { id, token } = await write(alice, 'kestrel feathers are barred');
      const before = await counter(api.metrics, 'relay_read_route_total', { target: 'primary', reason: 'no_standby' });
      for (const read of reads(alice, id)) {
        const res = await read();
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      const withToken = await call(`${api.url}/api/v1/memory/${id}`, 'GET', alice, undefined, { 'relay-consistency': token });
      assert.equal(withToken.status, 200, JSON.stringify(withToken.body));
      assert.equal(json(withToken.body).text, 'kestrel feathers are barred');
      const listed = await call(`${api.url}/api/v1/memory?limit=50`, 'GET', alice, undefined, { 'relay-consistency': token });
      assert.ok((json(listed.body).items as Json[]).some((item) => item.id === id));
      const queried = await call(`${api.url}/api/v1/memory/query`, 'POST', alice, { query: 'kestrel feathers barred', top_k: 50 }, { 'relay-consistency': token });
      assert.ok((json(queried.body).results as Json[]).some((r) => r.id === id));
      // Without a standby, every read runs on the primary and says so.
      assert.equal(await counter(api.metrics, 'relay_read_route_total', { target: 'primary', reason: 'no_standby' }), before + 7);
    });

    it('a forged, edited, truncated or other tenant\'s token is 400 invalid_consistency_token on every read', async () => {
      const { id, token } = await write(alice, 'kestrels eat voles');
      const position = await decodeConsistencyToken(api.keyring, A, token);
      const bytes = Buffer.from(token, 'base64url');
      const flipped = Buffer.from(bytes);
      flipped[20] = flipped[20]! ^ 1;
      // A far-future position under a tag made for another: the tag no longer matches.
      const future = Buffer.from(bytes);
      future.writeBigUInt64BE(position + (1n << 40n), 1);
      const otherTenant = await encodeConsistencyToken(api.keyring, B, position);
      const lastChar = token.at(-1)!;
      // The same 25 bytes spelled with other unused low bits in the last character.
      const respelled = token.slice(0, -1) + String.fromCharCode(lastChar.charCodeAt(0) ^ 1);
      const bad = [
        flipped.toString('base64url'),
        future.toString('base64url'),
        otherTenant,
        token.slice(0, -2),
        `${token}A`,
        respelled,
        'not a token',
        Buffer.alloc(25).toString('base64url'),
        '',
      ];
      for (const forged of bad) {
        const answers = await Promise.all([
          call(`${api.url}/api/v1/memory/${id}`, 'GET', alice, undefined, { 'relay-consistency': forged }),
          call(`${api.url}/api/v1/memory?limit=5`, 'GET', alice, undefined, { 'relay-consistency': forged }),
          call(`${api.url}/api/v1/memory/query`, 'POST', alice, { query: 'voles', top_k: 3 }, { 'relay-consistency': forged }),
          call(`${api.url}/api/v1/memory/query`, 'POST', alice, { query: 'voles', top_k: 3 }, { 'relay-consistency': forged, accept: 'text/event-stream' }),
        ]);
        for (const res of answers) {
          assert.equal(res.status, 400, `${JSON.stringify(forged)}: ${JSON.stringify(res.body)}`);
          assert.equal((json(res.body).error as Json).code, 'invalid_consistency_token');
        }
      }
      // Tenant B's own token works for B and not for A.
      const mine = await write(aliceB, 'a kestrel in tenant b');
      const forB = await call(`${api.url}/api/v1/memory/${mine.id}`, 'GET', aliceB, undefined, { 'relay-consistency': mine.token });
      assert.equal(forB.status, 200);
      const forA = await call(`${api.url}/api/v1/memory/${id}`, 'GET', alice, undefined, { 'relay-consistency': mine.token });
      assert.equal(forA.status, 400);
    });

    it('a read never writes, wherever it runs: the store runs it read-only', async () => {
      const scope = { tenantId: A, userHash: await api.keyring.hmacUser(A, 'alice') };
      const before = await api.store.withScope(scope, (c) => c.list(1000));
      await assert.rejects(
        api.store.withScope(
          scope,
          (c) => c.insert([{ id: randomUUID(), ciphertext: Buffer.alloc(40), keyId: 'dk:1', embedding: new Float32Array(api.store.embeddingDim).fill(0.1), embedderId: 'x' }]),
          { read: {} },
        ),
        (err: Error & { code?: string }) => err.code === '25006',
      );
      assert.equal((await api.store.withScope(scope, (c) => c.list(1000))).chunks.length, before.chunks.length);
    });

    it('the typed client keeps the newest token and sends it on its reads', async () => {
      const seen: Array<string | null> = [];
      const client = new RelayClient({
        baseUrl: api.url,
        token: alice,
        fetch: async (input, init) => {
          const headers = new Headers(init?.headers);
          if (init?.method === 'GET' || String(input).endsWith('/query')) seen.push(headers.get('relay-consistency'));
          return fetch(input, init);
        },
      });
      assert.equal(client.consistencyToken, undefined);
      const { ids } = await client.add({ text: 'kestrel, typed' });
      const afterWrite = client.consistencyToken;
      assert.ok(afterWrite && TOKEN.test(afterWrite));
      const hits = await client.queryAll({ query: 'kestrel typed', top_k: 50 });
      assert.ok(hits.results.some((r) => r.id === ids[0]));
      await client.get(ids[0]!);
      assert.deepEqual(seen, [afterWrite, afterWrite]);
      // Another process's token, passed in, is sent from the first read; an older token answered
      // late (two writes in flight) does not replace a newer one.
      const other = new RelayClient({ baseUrl: api.url, token: alice, consistencyToken: afterWrite });
      await other.add({ text: 'a newer kestrel' });
      const newer = other.consistencyToken!;
      assert.ok((await decodeConsistencyToken(api.keyring, A, newer)) > (await decodeConsistencyToken(api.keyring, A, afterWrite)));
      const tracker = new ConsistencyTracker(newer);
      tracker.observe(afterWrite);
      assert.equal(tracker.latest, newer);
      tracker.observe('opaque-to-this-client');
      assert.equal(tracker.latest, 'opaque-to-this-client');
    });
  });
}

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
// Through the package's own export, as an application imports it (dist/client, built by `prepare`).
import { RelayClient, RelayError, type QueryHit } from 'relay-memory/client';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

const stores: Array<'pglite' | 'pg'> = process.env.RELAY_TEST_DATABASE_URL ? ['pglite', 'pg'] : ['pglite'];

async function rejectsWith(p: Promise<unknown>, expected: { code: string; status?: number }): Promise<RelayError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RelayError, `expected a RelayError, got ${String(err)}`);
    assert.equal(err.code, expected.code, err.message);
    if (expected.status !== undefined) assert.equal(err.status, expected.status);
    return err;
  }
  assert.fail(`expected ${expected.code}, but it succeeded`);
}

async function collect<T = QueryHit>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of stream) out.push(x);
  return out;
}

async function eventually(probe: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`never happened: ${what}`);
}

/**
 * An OpenAI-compatible embeddings API for the server under test: instant vectors, except for
 * texts starting with HOLD, which it holds until the server gives up on the request.
 */
async function holdingEmbedder(dim: number): Promise<{ url: string; held: number; released: number; close(): Promise<void> }> {
  const state = { held: 0, released: 0 };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8').on('data', (d: string) => (raw += d));
    req.on('end', () => {
      const input = (JSON.parse(raw) as { input: string[] }).input;
      if (input[0]?.startsWith('HOLD')) {
        state.held++;
        res.once('close', () => state.released++);
        return;
      }
      const data = input.map((text, index) => ({ index, embedding: Array.from({ length: dim }, (_, i) => 1 + ((text.charCodeAt(i % text.length) * (i + 1)) % 7)) }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    get held() {
      return state.held;
    },
    get released() {
      return state.released;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

for (const store of stores) {
  describe(`relay-memory/client against relay serve (${store})`, () => {
    let relay: RelayProcess;
    const tenant = `client-${randomUUID()}`;
    let service: RelayClient;
    let alice: RelayClient;

    before(async () => {
      relay = await startRelayProcess(store);
      service = new RelayClient({ baseUrl: relay.url, token: await relay.token(tenant) });
      alice = new RelayClient({ baseUrl: relay.url, token: await relay.token(tenant, 'alice') });
    });
    after(() => relay?.stop());

    it('adds, gets, updates with If-Match, and deletes a chunk', async () => {
      const added = await alice.add({ chunks: ['Alice keeps her spare keys under the blue pot.'], metadata: { topic: 'home' } });
      assert.equal(added.ids.length, 1);
      assert.equal(added.replayed, false);
      const id = added.ids[0]!;
      const chunk = await alice.get(id);
      assert.equal(chunk.id, id);
      assert.equal(chunk.text, 'Alice keeps her spare keys under the blue pot.');
      assert.deepEqual(chunk.metadata, { topic: 'home' });
      assert.equal(chunk.expires_at, null);

      const updated = await alice.update(id, { metadata: { topic: 'house' } }, { ifVersion: chunk.version });
      assert.equal(updated.version, chunk.version + 1);
      assert.deepEqual((await alice.get(id)).metadata, { topic: 'house' });
      const stale = await rejectsWith(alice.update(id, { metadata: { topic: 'flat' } }, { ifVersion: chunk.version }), { code: 'version_mismatch', status: 412 });
      assert.equal(stale.attempts, 1);

      await alice.delete(id);
      await rejectsWith(alice.get(id), { code: 'not_found', status: 404 });
      // Not retried, so a second delete of the same id is plainly not found.
      await rejectsWith(alice.delete(id), { code: 'not_found', status: 404 });
    });

    it('makes a write with an Idempotency-Key safe to repeat', async () => {
      const key = randomUUID();
      const input = { user_id: 'ida', chunks: ['one thing', 'another thing'] };
      const first = await service.add(input, { idempotencyKey: key });
      const again = await service.add(input, { idempotencyKey: key });
      assert.deepEqual(again.ids, first.ids);
      assert.equal(first.replayed, false);
      assert.equal(again.replayed, true);
      await rejectsWith(service.add({ ...input, chunks: ['something else'] }, { idempotencyKey: key }), { code: 'idempotency_key_reused', status: 422 });
    });

    it('lists a user a page at a time through the server cursor', async () => {
      const { ids } = await service.add({ user_id: 'pager', chunks: ['p1', 'p2', 'p3', 'p4', 'p5'] });
      const pages = [];
      for await (const page of service.list({ user_id: 'pager', limit: 2 })) pages.push(page);
      assert.deepEqual(pages.map((p) => p.items.length), [2, 2, 1]);
      assert.equal(pages.at(-1)!.next_cursor, null);
      assert.deepEqual(pages.flatMap((p) => p.items.map((c) => c.id)).sort(), [...ids].sort());
      // Resuming from a cursor continues where that page ended.
      const rest = [];
      for await (const page of service.list({ user_id: 'pager', limit: 2, cursor: pages[0]!.next_cursor! })) rest.push(...page.items.map((c) => c.id));
      assert.deepEqual(rest, pages.slice(1).flatMap((p) => p.items.map((c) => c.id)));
      await rejectsWith(collect(service.list({ user_id: 'pager', cursor: 'not-a-cursor' })), { code: 'invalid_cursor', status: 400 });
    });

    it('streams query results, then the done summary; queryAll returns the same list', async () => {
      await service.add({ user_id: 'quinn', chunks: ['Quinn parks the red bike in the shed.', 'Quinn likes green tea.', 'The shed key hangs by the door.'] });
      const stream = service.query({ user_id: 'quinn', query: 'where is the bike?', top_k: 3 });
      const hits = await collect(stream);
      const done = await stream.done;
      assert.equal(hits.length, 3);
      assert.equal(done.count, 3);
      assert.equal(done.skipped, 0);
      assert.equal(typeof done.ttfv_ms, 'number');
      assert.equal(typeof done.timings.search_ms, 'number');
      for (const h of hits) assert.equal(typeof h.score, 'number');

      const all = await service.queryAll({ user_id: 'quinn', query: 'where is the bike?', top_k: 3 });
      assert.equal(all.count, 3);
      assert.deepEqual(all.results.map((r) => r.id), hits.map((h) => h.id));

      const none = service.query({ user_id: 'nobody-here', query: 'anything' });
      assert.deepEqual(await collect(none), []);
      assert.equal((await none.done).count, 0);
      assert.throws(() => none[Symbol.asyncIterator](), /only once/);
    });

    it('leaving a stream early closes it: done rejects with stream_closed', async () => {
      await service.add({ user_id: 'brenda', chunks: ['b one', 'b two', 'b three'] });
      const stream = service.query({ user_id: 'brenda', query: 'b', top_k: 3 });
      for await (const hit of stream) {
        assert.ok(hit.id);
        break;
      }
      await rejectsWith(stream.done, { code: 'stream_closed' });
    });

    it('erases a user: every chunk, and the count', async () => {
      await service.add({ user_id: 'erin', chunks: ['e1', 'e2', 'e3'] });
      assert.deepEqual(await service.eraseUser('erin'), { deleted: 3 });
      const pages = [];
      for await (const page of service.list({ user_id: 'erin' })) pages.push(page);
      assert.deepEqual(pages.map((p) => p.items.length), [0]);
      assert.deepEqual(await service.eraseUser('erin'), { deleted: 0 });
    });

    it('errors carry the server code, status and request id (the one the server logged)', async () => {
      const requestId = `client-test-${randomUUID()}`;
      const err = await rejectsWith(collect(alice.query({ query: '   ' }, { requestId })), { code: 'validation_failed', status: 400 });
      assert.equal(err.requestId, requestId);
      assert.equal(err.attempts, 1);
      const line = new RegExp(`"reqId":"${requestId}"`);
      assert.match(await relay.logged(line), line);

      const generated = await rejectsWith(alice.get('not-a-uuid'), { code: 'not_found', status: 404 });
      assert.match(generated.requestId ?? '', /^[0-9a-f-]{36}$/);

      const forged = new RelayClient({ baseUrl: relay.url, token: 'not.a.token' });
      await rejectsWith(forged.queryAll({ query: 'x' }), { code: 'unauthorized', status: 401 });
      await rejectsWith(service.add({ user_id: 'x', chunks: [] } as never), { code: 'validation_failed', status: 400 });
      // A service token must name the user.
      await rejectsWith(service.get(randomUUID()), { code: 'validation_failed', status: 400 });
    });

    it('another tenant gets typed errors or nothing, never the data', async () => {
      const { ids } = await service.add({ user_id: 'alice', chunks: ['Alice has a secret garden behind the house.'] });
      const id = ids[0]!;
      const other = new RelayClient({ baseUrl: relay.url, token: await relay.token(`other-${randomUUID()}`) });
      const otherAlice = new RelayClient({ baseUrl: relay.url, token: await relay.token(`other-${randomUUID()}`, 'alice') });
      await rejectsWith(other.get(id, { user_id: 'alice' }), { code: 'not_found', status: 404 });
      await rejectsWith(otherAlice.get(id), { code: 'not_found', status: 404 });
      await rejectsWith(other.delete(id, { user_id: 'alice' }), { code: 'not_found', status: 404 });
      await rejectsWith(other.update(id, { user_id: 'alice', text: 'overwritten' }), { code: 'not_found', status: 404 });
      assert.deepEqual(await collect(other.query({ user_id: 'alice', query: 'secret garden' })), []);
      assert.equal((await other.queryAll({ user_id: 'alice', query: 'secret garden' })).count, 0);
      const pages = [];
      for await (const page of other.list({ user_id: 'alice' })) pages.push(...page.items);
      assert.deepEqual(pages, []);
      assert.deepEqual(await other.eraseUser('alice'), { deleted: 0 });
      // Naming the tenant outright, or another user with a user token: 403.
      await rejectsWith(collect(other.query({ user_id: 'alice', tenant_id: tenant, query: 'secret' })), { code: 'forbidden_scope', status: 403 });
      await rejectsWith(alice.get(id, { user_id: 'bob' }), { code: 'forbidden_scope', status: 403 });
      // Still there for its owner.
      assert.equal((await alice.get(id)).text, 'Alice has a secret garden behind the house.');
    });

    it('an aborted call rejects with the signal reason and sends nothing more', async () => {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(alice.get(randomUUID(), { signal: ac.signal }), { name: 'AbortError' });
      await assert.rejects(collect(alice.query({ query: 'x' }, { signal: ac.signal })), { name: 'AbortError' });
      const reason = new Error('changed my mind');
      const later = new AbortController();
      const pending = service.add({ user_id: 'a', chunks: ['x'] }, { signal: later.signal });
      later.abort(reason);
      await assert.rejects(pending, (err) => err === reason || (err as Error).name === 'AbortError');
    });

    describe('abort of a query in flight', () => {
      let slow: RelayProcess;
      let embeddings: Awaited<ReturnType<typeof holdingEmbedder>>;

      before(async () => {
        embeddings = await holdingEmbedder(384);
        slow = await startRelayProcess(store, {
          RELAY_EMBEDDER: 'openai',
          RELAY_OPENAI_BASE_URL: embeddings.url,
          RELAY_OPENAI_API_KEY: 'test-key',
          RELAY_EMBED_TIMEOUT_MS: '60000',
          RELAY_SSE_HEARTBEAT_MS: '100',
        });
      });
      after(async () => {
        await slow?.stop();
        await embeddings?.close();
      });

      it('stops the stream, and the server sees the client leave and cancels the work', async () => {
        const client = new RelayClient({ baseUrl: slow.url, token: await slow.token(tenant, 'alice') });
        const ac = new AbortController();
        const stream = client.query({ query: 'HOLD where are my keys?' }, { signal: ac.signal });
        const iterating = collect(stream);
        await eventually(async () => embeddings.held === 1, 'the server asked for the query embedding');
        // Let a heartbeat open the stream, so the abort lands mid-stream.
        await new Promise((r) => setTimeout(r, 250));
        ac.abort();
        // The server holds the embedding until it is cancelled, so the stream has no end of its own:
        // only the abort can end this iteration.
        await assert.rejects(iterating, { name: 'AbortError' });
        await assert.rejects(stream.done, { name: 'AbortError' });
        await eventually(async () => embeddings.released === 1, 'the server cancelled its embeddings call');
        await eventually(async () => (await slow.metric('relay_sse_streams_total', { outcome: 'client_abort' })) === 1, 'a client_abort stream outcome');
      });
    });
  });
}

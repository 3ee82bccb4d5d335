import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { RelayClient, RelayError, RelayNetworkError, RelayStreamError, SERVER_ERROR_STATUS, type QueryHit } from 'relay-memory/client';
import { ERROR_CATALOG } from '../src/api/error-catalog.ts';

/**
 * Transport behaviour (retries, backoff, stream framing, drops) against small local HTTP servers
 * that misbehave on cue: the real service never fails like this on demand. Everything else is
 * tested against the real service (client.test.ts).
 */

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => unknown;

const servers: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function double(handler: Handler): Promise<{ url: string; seen: Seen[]; closed: number }> {
  const seen: Seen[] = [];
  const state = { closed: 0 };
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      res.once('close', () => {
        if (!res.writableFinished) state.closed++;
      });
      void handler(req, res, seen.length);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push({
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    get closed() {
      return state.closed;
    },
  };
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': 'srv-req', ...headers }).end(JSON.stringify(body));
const apiError = (res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}) => json(res, status, { error: { code, message: `${code}!` } }, headers);
const sseHead = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'x-request-id': 'srv-stream' });
const hit = (i: number) => ({ id: `id-${i}`, text: `text ${i}`, score: 1 - i / 10, metadata: {}, created_at: '2026-01-01T00:00:00.000Z' });
const resultEvent = (i: number) => `event: result\nid: id-${i}\ndata: ${JSON.stringify(hit(i))}\n\n`;
const doneEvent = (count: number) => `event: done\ndata: ${JSON.stringify({ count, skipped: 0, reranked: 0, ttfv_ms: 1.5, timings: { embed_ms: 0, search_ms: 1, open_ms: 0, rerank_ms: 0 } })}\n\n`;
const CHUNK = { id: '6f1c0d51-8c59-4d8e-9a55-5f0d3c1f2a10', text: 't', metadata: {}, version: 1, created_at: 'x', updated_at: 'x', expires_at: null };

const client = (url: string, opts: Partial<ConstructorParameters<typeof RelayClient>[0]> = {}) =>
  new RelayClient({ baseUrl: url, token: 'tok', baseDelayMs: 5, maxDelayMs: 2000, ...opts });

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

async function collect(stream: AsyncIterable<QueryHit>, onHit?: (h: QueryHit) => void): Promise<QueryHit[]> {
  const out: QueryHit[] = [];
  for await (const h of stream) {
    out.push(h);
    onHit?.(h);
  }
  return out;
}

describe('client error codes', () => {
  it("are the server's catalog, each with its status", () => {
    assert.deepEqual(SERVER_ERROR_STATUS, Object.fromEntries(Object.entries(ERROR_CATALOG).map(([code, doc]) => [code, doc.status])));
  });
});

describe('client retries', () => {
  it('retries a read on 503/502/504 with the same request id, then succeeds', async () => {
    const statuses = [503, 502, 504];
    const srv = await double((_req, res, n) => (n <= 3 ? apiError(res, statuses[n - 1]!, 'store_unavailable') : json(res, 200, CHUNK)));
    const got = await client(srv.url, { retries: 3 }).get(CHUNK.id, { user_id: 'u' });
    assert.equal(got.id, CHUNK.id);
    assert.equal(srv.seen.length, 4);
    assert.equal(new Set(srv.seen.map((s) => s.headers['x-request-id'])).size, 1);
    assert.equal(srv.seen[0]!.headers.authorization, 'Bearer tok');
    assert.equal(srv.seen[0]!.url, `/api/v1/memory/${CHUNK.id}?user_id=u`);
  });

  it('gives up after `retries` and reports the last error with its attempts', async () => {
    const srv = await double((_req, res) => apiError(res, 503, 'store_unavailable'));
    const err = await caught(client(srv.url, { retries: 2 }).get(CHUNK.id));
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'store_unavailable');
    assert.equal(err.status, 503);
    assert.equal(err.requestId, 'srv-req');
    assert.equal(err.attempts, 3);
    assert.equal(srv.seen.length, 3);
  });

  it('honours Retry-After on 429, and gives up on one longer than maxDelayMs', async () => {
    const srv = await double((_req, res, n) => (n === 1 ? apiError(res, 429, 'rate_limited', { 'retry-after': '1' }) : json(res, 200, CHUNK)));
    const t0 = performance.now();
    await client(srv.url).get(CHUNK.id);
    assert.ok(performance.now() - t0 >= 950, 'waited the second the server asked for');
    assert.equal(srv.seen.length, 2);

    const long = await double((_req, res) => apiError(res, 429, 'rate_limited', { 'retry-after': '60' }));
    const err = await caught(client(long.url, { maxDelayMs: 5000 }).get(CHUNK.id));
    assert.ok(err instanceof RelayError);
    assert.equal(err.retryAfterMs, 60_000);
    assert.equal(long.seen.length, 1);
  });

  it('never retries other 4xx, or embedder_failed', async () => {
    for (const [status, code] of [
      [400, 'validation_failed'],
      [401, 'unauthorized'],
      [403, 'forbidden_scope'],
      [404, 'not_found'],
      [409, 'conflict'],
      [502, 'embedder_failed'],
    ] as const) {
      const srv = await double((_req, res) => apiError(res, status, code));
      const err = await caught(client(srv.url).queryAll({ query: 'q' }));
      assert.ok(err instanceof RelayError);
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.equal(err.message, `${code}!`);
      assert.equal(srv.seen.length, 1, `${status} ${code} was retried`);
    }
  });

  it('retries a write only when it carries an Idempotency-Key (the same key every time)', async () => {
    const bare = await double((_req, res) => apiError(res, 503, 'store_unavailable'));
    await caught(client(bare.url).add({ chunks: ['x'] }));
    assert.equal(bare.seen.length, 1);

    const keyed = await double((_req, res, n) => (n < 3 ? apiError(res, 503, 'store_unavailable') : json(res, 201, { ids: ['a'] }, { 'idempotent-replayed': 'false' })));
    const out = await client(keyed.url).add({ chunks: ['x'] }, { idempotencyKey: 'k-1' });
    assert.deepEqual(out, { ids: ['a'], replayed: false });
    assert.deepEqual(keyed.seen.map((s) => s.headers['idempotency-key']), ['k-1', 'k-1', 'k-1']);
    assert.deepEqual(JSON.parse(keyed.seen[2]!.body), { chunks: ['x'] });

    const patch = await double((_req, res) => apiError(res, 503, 'store_unavailable'));
    await caught(client(patch.url).update(CHUNK.id, { text: 'y' }, { ifVersion: 3 }));
    assert.equal(patch.seen.length, 1);
    assert.equal(patch.seen[0]!.headers['if-match'], '"3"');
  });

  it('network failures are RelayNetworkError, retried for reads', async () => {
    const srv = await double((req, res, n) => (n < 3 ? req.socket.destroy() : json(res, 200, CHUNK)));
    assert.equal((await client(srv.url).get(CHUNK.id)).id, CHUNK.id);
    assert.equal(srv.seen.length, 3);

    const dead = await double((req) => req.socket.destroy());
    const err = await caught(client(dead.url, { retries: 1 }).get(CHUNK.id, { requestId: 'mine' }));
    assert.ok(err instanceof RelayNetworkError);
    assert.equal(err.code, 'network_error');
    assert.equal(err.status, undefined);
    assert.equal(err.requestId, 'mine');
    assert.equal(err.attempts, 2);

    const refused = await caught(client('http://127.0.0.1:1', { retries: 0 }).get(CHUNK.id));
    assert.ok(refused instanceof RelayNetworkError);
  });

  it('an answer that is not the API (a proxy page) is bad_response; 502 from a gateway is retried', async () => {
    const srv = await double((_req, res, n) => (n === 1 ? res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad Gateway</h1>') : res.writeHead(200).end('<html>')));
    const err = await caught(client(srv.url).get(CHUNK.id));
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'bad_response');
    assert.equal(err.status, 200);
    assert.equal(srv.seen.length, 2);
  });

  it('a retried delete that finds the chunk gone resolves (the first attempt may have deleted it)', async () => {
    const srv = await double((req, res, n) => (n === 1 ? req.socket.destroy() : apiError(res, 404, 'not_found')));
    await client(srv.url).delete(CHUNK.id);
    assert.equal(srv.seen.length, 2);
    assert.equal(srv.seen[0]!.method, 'DELETE');
  });

  it('asks a token function for every attempt', async () => {
    let calls = 0;
    const srv = await double((_req, res, n) => (n === 1 ? apiError(res, 503, 'store_unavailable') : json(res, 200, { deleted: 2 })));
    const out = await client(srv.url, { token: async () => `t${++calls}` }).eraseUser('a b');
    assert.deepEqual(out, { deleted: 2 });
    assert.deepEqual(srv.seen.map((s) => s.headers.authorization), ['Bearer t1', 'Bearer t2']);
    assert.equal(srv.seen[0]!.url, '/api/v1/users/a%20b/memory');
  });

  it('an abort during backoff stops the retries at once', async () => {
    // A 30 s backoff: ending well before it (and with one request seen) is the abort's doing,
    // with room for any load.
    const srv = await double((_req, res) => apiError(res, 503, 'store_unavailable', { 'retry-after': '30' }));
    const ac = new AbortController();
    const t0 = performance.now();
    const pending = client(srv.url, { maxDelayMs: 60_000 }).get(CHUNK.id, { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(pending, { name: 'AbortError' });
    assert.ok(performance.now() - t0 < 10_000);
    assert.equal(srv.seen.length, 1);
  });

  it('keeps a base URL path prefix', async () => {
    const srv = await double((_req, res) => json(res, 200, { items: [], next_cursor: null, skipped: 0 }));
    for await (const page of client(`${srv.url}/relay/`).list({ limit: 5 })) assert.deepEqual(page.items, []);
    assert.equal(srv.seen[0]!.url, '/relay/api/v1/memory?limit=5');
  });
});

describe('client query stream', () => {
  it('yields each result as it arrives, before the stream has ended', async () => {
    let gotFirst!: () => void;
    const firstSeen = new Promise<void>((r) => (gotFirst = r));
    let restSent = false;
    const srv = await double(async (_req, res) => {
      sseHead(res);
      res.write(resultEvent(0));
      // The rest waits until the client has handed the first result to the caller (or 2 s, so
      // that a client that holds results back fails the assertion below instead of hanging).
      await Promise.race([firstSeen, new Promise((r) => setTimeout(r, 2000))]);
      restSent = true;
      res.write(resultEvent(1));
      res.end(doneEvent(2));
    });
    const stream = client(srv.url).query({ query: 'q' });
    let restSentBeforeFirst: boolean | undefined;
    const hits = await collect(stream, (h) => {
      if (h.id !== 'id-0') return;
      restSentBeforeFirst = restSent;
      gotFirst();
    });
    assert.equal(restSentBeforeFirst, false, 'the first result came only after the stream ended');
    assert.deepEqual(hits.map((h) => h.id), ['id-0', 'id-1']);
    assert.deepEqual(await stream.done, { count: 2, skipped: 0, reranked: 0, ttfv_ms: 1.5, timings: { embed_ms: 0, search_ms: 1, open_ms: 0, rerank_ms: 0 } });
    assert.equal(srv.seen[0]!.headers.accept, 'text/event-stream');
    assert.deepEqual(JSON.parse(srv.seen[0]!.body), { query: 'q' });
  });

  it('a connection dropped mid-stream is an error after the results so far, never a short list, and not retried', async () => {
    const srv = await double((_req, res) => {
      sseHead(res);
      res.write(resultEvent(0) + resultEvent(1));
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const stream = client(srv.url).query({ query: 'q' });
    const hits: QueryHit[] = [];
    const err = await caught(collect(stream, (h) => hits.push(h)));
    assert.ok(err instanceof RelayStreamError, String(err));
    assert.equal(err.code, 'stream_incomplete');
    assert.equal(err.received, 2);
    assert.equal(err.requestId, stream.requestId);
    assert.deepEqual(hits.map((h) => h.id), ['id-0', 'id-1']);
    assert.equal(await caught(stream.done), err);
    assert.equal(srv.seen.length, 1);
  });

  it('a stream that ends cleanly without done is stream_incomplete too (a half-sent done included)', async () => {
    const srv = await double((_req, res) => {
      sseHead(res);
      res.end(resultEvent(0) + 'event: done\ndata: {"count":1');
    });
    const err = await caught(collect(client(srv.url, { retries: 0 }).query({ query: 'q' })));
    assert.ok(err instanceof RelayStreamError);
    assert.equal(err.code, 'stream_incomplete');
    assert.equal(err.received, 1);
  });

  it('retries a stream that broke before its first result', async () => {
    const srv = await double((_req, res, n) => {
      sseHead(res);
      if (n === 1) {
        res.write(': heartbeat\n\n');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      res.end(resultEvent(0) + doneEvent(1));
    });
    const stream = client(srv.url).query({ query: 'q' });
    assert.deepEqual((await collect(stream)).map((h) => h.id), ['id-0']);
    assert.equal((await stream.done).count, 1);
    assert.equal(srv.seen.length, 2);
  });

  it('an error event is a RelayStreamError with the server code and its status', async () => {
    const srv = await double((_req, res) => {
      sseHead(res);
      res.end(resultEvent(0) + 'event: error\ndata: {"code":"store_unavailable","message":"the memory store is unavailable"}\n\n');
    });
    const hits: QueryHit[] = [];
    const err = await caught(collect(client(srv.url).query({ query: 'q' }), (h) => hits.push(h)));
    assert.ok(err instanceof RelayStreamError);
    assert.equal(err.code, 'store_unavailable');
    assert.equal(err.status, 503);
    assert.equal(err.message, 'the memory store is unavailable');
    assert.equal(err.received, 1);
    assert.equal(hits.length, 1);
    assert.equal(srv.seen.length, 1, 'never retried after a result was yielded');
  });

  it('an HTTP error before the stream opens is a plain RelayError, retried when retryable', async () => {
    const srv = await double((_req, res, n) => {
      if (n === 1) return apiError(res, 503, 'embedder_unavailable', { 'retry-after': '0' });
      if (n === 2) return apiError(res, 400, 'validation_failed');
      return undefined;
    });
    const err = await caught(collect(client(srv.url).query({ query: 'q' })));
    assert.ok(err instanceof RelayError && !(err instanceof RelayStreamError));
    assert.equal(err.code, 'validation_failed');
    assert.equal(err.attempts, 2);
  });

  it('a 200 that is not an event stream is bad_response', async () => {
    const srv = await double((_req, res) => json(res, 200, { results: [] }));
    const err = await caught(collect(client(srv.url).query({ query: 'q' })));
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'bad_response');
  });

  it('aborting mid-stream closes the connection (the server sees it) and rejects with the reason', async () => {
    const srv = await double((_req, res) => {
      sseHead(res);
      res.write(resultEvent(0));
      // …and never more: only the client can end this.
    });
    const ac = new AbortController();
    const stream = client(srv.url).query({ query: 'q' }, { signal: ac.signal });
    const err = await caught(collect(stream, () => ac.abort(new Error('stop'))));
    assert.equal((err as Error).message, 'stop');
    for (let i = 0; i < 100 && srv.closed === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(srv.closed, 1);
  });

  it('breaking out of the loop closes the connection too', async () => {
    const srv = await double((_req, res) => {
      sseHead(res);
      res.write(resultEvent(0) + resultEvent(1));
    });
    const stream = client(srv.url).query({ query: 'q' });
    for await (const h of stream) {
      assert.equal(h.id, 'id-0');
      break;
    }
    for (let i = 0; i < 100 && srv.closed === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(srv.closed, 1);
    const err = await caught(stream.done);
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'stream_closed');
  });
});

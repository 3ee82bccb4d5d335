import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createHttpReranker, RerankError, type HttpRerankerOptions, type RerankCandidate } from '../../src/rerank/index.ts';

const KEY = 'rk-test-5e1d9b3c7a2f4e6081d3c5b7a9f2e4c6';
const SECRET_TEXT = 'my locker code is 4417';
const QUERY = 'what is the locker code';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

type Reply = { status: number; body?: unknown; delayMs?: number; after?: Promise<unknown> } | 'hang';

const CANDIDATES: RerankCandidate[] = [
  { id: 'c0', text: 'the gym opens at six', score: 0.5 },
  { id: 'c1', text: SECRET_TEXT, score: 0.4 },
  { id: 'c2', text: 'lockers are in the basement', score: 0.3 },
];

/** What a relevance model might say: the secret first, then the basement, then the gym. */
const RELEVANCE = [0.1, 0.9, 0.6];

describe('http reranker (local HTTP server speaking TEI and Cohere)', () => {
  let server: Server;
  let base: string;
  let seen: Seen[];
  let script: Array<(s: Seen) => Reply>;
  let closed: number;

  before(async () => {
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      req.on('end', () => {
        const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: JSON.parse(raw) as Record<string, unknown> };
        seen.push(s);
        res.on('close', () => {
          if (!res.writableEnded) closed++;
        });
        const reply = (script.shift() ?? defaultReply)(s);
        if (reply === 'hang') return;
        const send = () => {
          if (res.destroyed) return;
          res.writeHead(reply.status, { 'content-type': 'application/json' });
          res.end(typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body ?? {}));
        };
        if (reply.after) void reply.after.then(send);
        else if (reply.delayMs) setTimeout(send, reply.delayMs);
        else send();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    seen = [];
    script = [];
    closed = 0;
  });

  /** A correct answer in the request's own format, shuffled as real servers sort by score. */
  function defaultReply(s: Seen): Reply {
    const texts = (s.url.startsWith('/v1/') ? s.body.documents : s.body.texts) as string[];
    const score = (t: string) => RELEVANCE[CANDIDATES.findIndex((c) => c.text === t)] ?? 0.5;
    const items = texts.map((t, index) => ({ index, score: score(t) })).sort((a, b) => b.score - a.score);
    if (s.url.startsWith('/v1/')) return { status: 200, body: { id: 'x', results: items.map((i) => ({ index: i.index, relevance_score: i.score })), meta: {} } };
    return { status: 200, body: items };
  }

  const make = (extra: Partial<HttpRerankerOptions> = {}) => createHttpReranker({ url: base, apiKey: KEY, format: 'tei', timeoutMs: 2000, ...extra });

  async function failure(p: Promise<unknown>): Promise<RerankError> {
    const err = await p.then(
      () => assert.fail('expected a rejection'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RerankError, `not a RerankError: ${String(err)}`);
    assert.ok(!err.message.includes(KEY) && !err.message.includes(KEY.slice(3, 15)), 'the API key is in the message');
    assert.ok(!err.message.includes(SECRET_TEXT) && !err.message.includes(QUERY), 'the input is in the message');
    return err;
  }

  it('TEI: posts {query, texts, raw_scores, return_text, truncate} to /rerank and maps indices back to ids', async () => {
    const r = make();
    const out = await r.rerank(QUERY, CANDIDATES);
    assert.deepEqual(out, [
      { id: 'c1', score: 0.9 },
      { id: 'c2', score: 0.6 },
      { id: 'c0', score: 0.1 },
    ]);
    assert.equal(seen.length, 1);
    const s = seen[0]!;
    assert.equal(s.method, 'POST');
    assert.equal(s.url, '/rerank');
    assert.deepEqual(s.body, { query: QUERY, texts: CANDIDATES.map((c) => c.text), raw_scores: false, return_text: false, truncate: true });
    assert.equal(s.headers.authorization, `Bearer ${KEY}`);
    assert.equal(s.headers['content-type'], 'application/json');
    assert.equal(r.provider, 'http');
  });

  it('sends no Authorization header without a key', async () => {
    await make({ apiKey: undefined }).rerank(QUERY, CANDIDATES);
    assert.equal(seen[0]!.headers.authorization, undefined);
  });

  it('Cohere: posts {model, query, documents, top_n} to /v1/rerank and reads results[].relevance_score', async () => {
    const r = make({ format: 'cohere', model: 'rerank-english-v3.0', url: `${base}/` });
    const out = await r.rerank(QUERY, CANDIDATES);
    assert.deepEqual(
      out.map((s) => s.id),
      ['c1', 'c2', 'c0'],
    );
    assert.equal(seen[0]!.url, '/v1/rerank');
    assert.deepEqual(seen[0]!.body, { model: 'rerank-english-v3.0', query: QUERY, documents: CANDIDATES.map((c) => c.text), top_n: 3 });
    assert.equal(seen[0]!.headers.authorization, `Bearer ${KEY}`);
    assert.equal(r.id, 'http/cohere/rerank-english-v3.0');
  });

  it('Cohere without a model leaves the field out', async () => {
    await make({ format: 'cohere' }).rerank(QUERY, CANDIDATES);
    assert.equal('model' in seen[0]!.body, false);
  });

  it('passes probabilities through and squashes logits with a sigmoid, keeping their order', async () => {
    script.push(() => ({ status: 200, body: [{ index: 0, score: 0 }, { index: 1, score: 1 }, { index: 2, score: 0.25 }] }));
    const probs = await make().rerank(QUERY, CANDIDATES);
    assert.deepEqual(probs, [
      { id: 'c1', score: 1 },
      { id: 'c2', score: 0.25 },
      { id: 'c0', score: 0 },
    ]);
    script.push(() => ({ status: 200, body: [{ index: 0, score: -3.2 }, { index: 1, score: 7.5 }, { index: 2, score: 0.4 }] }));
    const logits = await make().rerank(QUERY, CANDIDATES);
    assert.deepEqual(
      logits.map((s) => s.id),
      ['c1', 'c2', 'c0'],
    );
    assert.ok(Math.abs(logits[0]!.score - 1 / (1 + Math.exp(-7.5))) < 1e-12);
    for (const s of logits) assert.ok(s.score > 0 && s.score < 1);
  });

  it('splits into batches of batchSize sent concurrently, and merges them', async () => {
    const many = Array.from({ length: 5 }, (_, i) => ({ id: `m${i}`, text: `text ${i}`, score: 0 }));
    // Each batch is answered only once all three have arrived (or after 2 s): sequential batches would see one at a time.
    let arrived = 0;
    let allArrived!: () => void;
    const barrier = new Promise<void>((resolve) => (allArrived = resolve));
    const giveUp = setTimeout(allArrived, 2000);
    let inFlightAtRelease = 0;
    void barrier.then(() => (inFlightAtRelease = arrived));
    for (let b = 0; b < 3; b++) {
      script.push((s) => {
        if (++arrived === 3) allArrived();
        return { status: 200, body: (s.body.texts as string[]).map((t, index) => ({ index, score: Number(t.slice(5)) / 10 })), after: barrier };
      });
    }
    const out = await make({ batchSize: 2 }).rerank(QUERY, many);
    clearTimeout(giveUp);
    assert.equal(inFlightAtRelease, 3, 'batches were sent one after another');
    assert.deepEqual(
      seen.map((s) => (s.body.texts as string[]).length).sort(),
      [1, 2, 2],
    );
    assert.deepEqual(
      out.map((s) => s.id),
      ['m4', 'm3', 'm2', 'm1', 'm0'],
    );
  });

  it('times out a slow service: rerank_unavailable, and the connection is dropped', async () => {
    script.push(() => 'hang');
    const started = performance.now();
    const err = await failure(make({ timeoutMs: 80 }).rerank(QUERY, CANDIDATES));
    assert.equal(err.code, 'rerank_unavailable');
    // The message names the timer that fired; the service hangs for ever, so returning is the
    // timeout's doing. The bound only rules out a far longer wait, under any load.
    assert.match(err.message, /timed out after 80 ms/);
    assert.ok(performance.now() - started < 5_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, 1);
  });

  it('a 500 is rerank_unavailable with the status, and the body is not quoted', async () => {
    script.push(() => ({ status: 500, body: { error: `model crashed on "${SECRET_TEXT}"` } }));
    const err = await failure(make().rerank(QUERY, CANDIDATES));
    assert.equal(err.code, 'rerank_unavailable');
    assert.equal(err.statusCode, 500);
    assert.equal(seen.length, 1, 'no retries');
  });

  it('a 422 (too many texts) is rerank_unavailable too: the ranking did not happen', async () => {
    script.push(() => ({ status: 422, body: { error: 'batch size 3 > maximum allowed batch size 2', error_type: 'Validation' } }));
    const err = await failure(make().rerank(QUERY, CANDIDATES));
    assert.equal(err.statusCode, 422);
  });

  it('garbage JSON is rerank_bad_response', async () => {
    script.push(() => ({ status: 200, body: '<html>502 bad gateway</html>' }));
    const err = await failure(make().rerank(QUERY, CANDIDATES));
    assert.equal(err.code, 'rerank_bad_response');
    assert.match(err.message, /not JSON/);
  });

  const malformed: Array<[string, unknown, 'tei' | 'cohere', RegExp]> = [
    ['a missing index', [{ index: 0, score: 0.1 }, { index: 1, score: 0.2 }], 'tei', /2 scores for 3 texts/],
    ['a duplicate index', [{ index: 0, score: 0.1 }, { index: 1, score: 0.2 }, { index: 1, score: 0.3 }], 'tei', /repeated index/],
    ['an index out of range', [{ index: 0, score: 0.1 }, { index: 1, score: 0.2 }, { index: 3, score: 0.3 }], 'tei', /out of range/],
    ['a string index', [{ index: '0', score: 0.1 }, { index: 1, score: 0.2 }, { index: 2, score: 0.3 }], 'tei', /out of range/],
    ['a null score', [{ index: 0, score: null }, { index: 1, score: 0.2 }, { index: 2, score: 0.3 }], 'tei', /finite number/],
    ['an object instead of an array', { results: [] }, 'tei', /not an array/],
    ['no results array', [{ index: 0, relevance_score: 1 }], 'cohere', /no results array/],
    ['a missing Cohere index', { results: [{ index: 0, relevance_score: 0.5 }, { index: 2, relevance_score: 0.5 }, { index: 0, relevance_score: 0.5 }] }, 'cohere', /repeated index/],
  ];
  for (const [what, body, format, message] of malformed) {
    it(`${format}: ${what} is rerank_bad_response`, async () => {
      script.push(() => ({ status: 200, body }));
      const err = await failure(make({ format }).rerank(QUERY, CANDIDATES));
      assert.equal(err.code, 'rerank_bad_response');
      assert.match(err.message, message);
    });
  }

  it("the caller's abort rejects with its reason at once and drops the connection", async () => {
    script.push(() => 'hang');
    const ac = new AbortController();
    const reason = new Error('client went away');
    setTimeout(() => ac.abort(reason), 30);
    const started = performance.now();
    // The caller's own reason (not a timeout's) proves the abort ended it; the service hangs for ever.
    await assert.rejects(make().rerank(QUERY, CANDIDATES, { signal: ac.signal }), (e) => e === reason);
    assert.ok(performance.now() - started < 5_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, 1);
  });

  it('one failed batch cancels its siblings', async () => {
    script.push(() => ({ status: 503, body: {} }));
    script.push(() => 'hang');
    const many = Array.from({ length: 4 }, (_, i) => ({ id: `m${i}`, text: `t${i}`, score: 0 }));
    const err = await failure(make({ batchSize: 2 }).rerank(QUERY, many));
    assert.equal(err.statusCode, 503);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(closed, 1, 'the hanging sibling was not cancelled');
  });

  it('a refused connection is rerank_unavailable', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const err = await failure(make({ url: `http://127.0.0.1:${port}` }).rerank(QUERY, CANDIDATES));
    assert.equal(err.code, 'rerank_unavailable');
    assert.match(err.message, /failed/);
  });

  it('uses the fetch it is given, and sends nothing for no candidates', async () => {
    const urls: string[] = [];
    const counting: typeof fetch = (input, init) => {
      urls.push(String(input));
      return fetch(input, init);
    };
    const r = make({ fetch: counting });
    assert.deepEqual(await r.rerank(QUERY, []), []);
    assert.equal(urls.length, 0);
    await r.rerank(QUERY, CANDIDATES);
    assert.deepEqual(urls, [`${base}/rerank`]);
  });
});

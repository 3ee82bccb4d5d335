import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createEmbedder, createOpenAIEmbedder, EmbedderError, type OpenAIEmbedderOptions, type RetryInfo } from '../../src/embed/index.ts';
import { parseRetryAfter } from '../../src/embed/openai.ts';
import { loadConfig } from '../../src/config/index.ts';

const KEY = 'sk-test-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4';
const SECRET_TEXT = 'my bank pin is 9931';
const D = 8;

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: { model: string; input: string[]; dimensions: number; encoding_format: string };
}

type Reply = { status: number; headers?: Record<string, string>; body?: unknown } | 'hang';

/** The vector the fake server returns for a text: one axis chosen by the text, scaled by 3 so normalisation shows. */
function axisOf(text: string): number[] {
  const v = new Array<number>(D).fill(0);
  v[[...text].reduce((s, c) => s + c.codePointAt(0)!, 0) % D] = 3;
  return v;
}

function ok(input: string[], shuffle = true): Reply {
  const data = input.map((t, index) => ({ object: 'embedding', index, embedding: axisOf(t) }));
  return { status: 200, body: { object: 'list', model: 'm', data: shuffle ? data.reverse() : data, usage: { prompt_tokens: 1, total_tokens: 1 } } };
}

describe('openai-compatible embedder (local HTTP server)', () => {
  let server: Server;
  let baseUrl: string;
  let seen: Seen[];
  let script: Array<(s: Seen) => Reply>;

  before(async () => {
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      req.on('end', () => {
        const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: JSON.parse(raw) as Seen['body'] };
        seen.push(s);
        const reply = (script.shift() ?? ((x: Seen) => ok(x.body.input)))(s);
        if (reply === 'hang') return;
        res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
        res.end(typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body ?? {}));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    seen = [];
    script = [];
  });

  const make = (extra: Partial<OpenAIEmbedderOptions> = {}) =>
    createOpenAIEmbedder({ baseUrl, apiKey: KEY, model: 'text-embedding-3-small', dimensions: D, batchSize: 16, timeoutMs: 5000, retries: 3, backoffBaseMs: 1, ...extra });

  async function failure(p: Promise<unknown>): Promise<EmbedderError> {
    const err = await p.then(
      () => assert.fail('expected a rejection'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof EmbedderError, `not an EmbedderError: ${String(err)}`);
    assert.ok(!err.message.includes(KEY) && !err.message.includes(KEY.slice(3, 15)), 'the API key is in the message');
    assert.ok(!err.message.includes(SECRET_TEXT), 'the input text is in the message');
    return err;
  }

  it('speaks the wire format: URL, headers, body; returns normalised vectors in input order', async () => {
    const e = make();
    assert.equal(e.id, 'openai/text-embedding-3-small/d8');
    const out = await e.embed(['alpha', 'beta', 'gamma']);
    assert.equal(seen.length, 1);
    const [req] = seen;
    assert.equal(req!.method, 'POST');
    assert.equal(req!.url, '/v1/embeddings');
    assert.equal(req!.headers.authorization, `Bearer ${KEY}`);
    assert.match(req!.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(req!.body, { model: 'text-embedding-3-small', input: ['alpha', 'beta', 'gamma'], dimensions: D, encoding_format: 'float' });
    assert.equal(out.length, 3);
    ['alpha', 'beta', 'gamma'].forEach((t, i) => {
      assert.ok(out[i] instanceof Float32Array);
      assert.deepEqual(Array.from(out[i]!), axisOf(t).map((x) => x / 3));
    });
  });

  it('sends no Authorization header without a key, and is what createEmbedder makes from the config', async () => {
    const cfg = loadConfig({ RELAY_EMBEDDER: 'openai', RELAY_OPENAI_BASE_URL: `${baseUrl}/`, RELAY_OPENAI_MODEL: 'local-model', RELAY_EMBED_DIM: String(D) });
    const e = await createEmbedder(cfg.embed);
    assert.equal(e.id, 'openai/local-model/d8');
    await e.embed(['x']);
    assert.equal(seen[0]!.url, '/v1/embeddings');
    assert.equal(seen[0]!.headers.authorization, undefined);
  });

  it('sends batches of batchSize, in order', async () => {
    const texts = ['a', 'bb', 'ccc', 'dddd', 'eeeee'];
    const out = await make({ batchSize: 2 }).embed(texts);
    assert.deepEqual(seen.map((s) => s.body.input), [['a', 'bb'], ['ccc', 'dddd'], ['eeeee']]);
    assert.deepEqual(out.map((v) => Array.from(v)), texts.map((t) => axisOf(t).map((x) => x / 3)));
    assert.deepEqual(await make().embed([]), []);
    assert.equal(seen.length, 3);
  });

  it('retries after a 429 and a 500, then succeeds', async () => {
    const retries: RetryInfo[] = [];
    script = [() => ({ status: 429, body: { error: { message: 'slow down', type: 'rate_limit_error' } } }), () => ({ status: 500, body: 'oops' })];
    const out = await make({ onRetry: (r) => retries.push(r) }).embed(['hello']);
    assert.equal(out.length, 1);
    assert.equal(seen.length, 3);
    assert.deepEqual(retries.map((r) => [r.attempt, r.reason]), [[1, 'http_429'], [2, 'http_500']]);
    assert.ok(retries.every((r) => r.delayMs >= 0 && r.delayMs <= 2), 'full-jitter backoff under the base of 1 ms, doubled');
  });

  it('waits as long as Retry-After says, up to its cap', async () => {
    const retries: RetryInfo[] = [];
    script = [() => ({ status: 429, headers: { 'retry-after': '1' } })];
    await make({ onRetry: (r) => retries.push(r) }).embed(['hello']);
    assert.deepEqual(retries.map((r) => r.delayMs), [1000]);

    retries.length = 0;
    script = [() => ({ status: 503, headers: { 'retry-after': '3600' } })];
    await make({ onRetry: (r) => retries.push(r), retryAfterMaxMs: 20 }).embed(['hello']);
    assert.deepEqual(retries.map((r) => r.delayMs), [20]);

    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')), 30_000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(null), undefined);
  });

  it('gives up with embedder_unavailable (retryable) when the service stays down', async () => {
    script = Array.from({ length: 3 }, () => () => ({ status: 503, body: { error: { message: `overloaded, key ${KEY}, input ${SECRET_TEXT}`, code: 'server_overloaded' } } }));
    const err = await failure(make({ retries: 2 }).embed([SECRET_TEXT]));
    assert.equal(err.code, 'embedder_unavailable');
    assert.equal(err.retryable, true);
    assert.equal(err.statusCode, 503);
    assert.match(err.message, /503 \(server_overloaded\).*3 attempts/);
    assert.equal(seen.length, 3);
  });

  it('treats a refused connection as the service being down', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const err = await failure(make({ baseUrl: `http://127.0.0.1:${port}/v1`, retries: 1 }).embed([SECRET_TEXT]));
    assert.equal(err.code, 'embedder_unavailable');
    assert.equal(err.retryable, true);
    assert.equal(err.statusCode, undefined);
    assert.match(err.message, /ECONNREFUSED/);
  });

  it('times out a request that hangs, retries it, then gives up', async () => {
    const retries: RetryInfo[] = [];
    script = [() => 'hang', () => 'hang'];
    const err = await failure(make({ timeoutMs: 100, retries: 1, onRetry: (r) => retries.push(r) }).embed([SECRET_TEXT]));
    assert.equal(err.code, 'embedder_unavailable');
    assert.match(err.message, /timed out after 100 ms/);
    assert.deepEqual(retries.map((r) => r.reason), ['timeout']);
    assert.equal(seen.length, 2);
  });

  it('stops at once when the caller aborts, rejecting with its reason and not retrying', async () => {
    const ctrl = new AbortController();
    const reason = new Error('client went away');
    script = [
      () => {
        ctrl.abort(reason);
        return 'hang';
      },
    ];
    await assert.rejects(make({ timeoutMs: 60_000 }).embed(['hello'], { signal: ctrl.signal }), (err) => err === reason);
    assert.equal(seen.length, 1);

    // Aborted during the backoff wait: no further attempt.
    const ctrl2 = new AbortController();
    script = [() => ({ status: 429, headers: { 'retry-after': '60' } })];
    seen = [];
    await assert.rejects(make({ onRetry: () => ctrl2.abort(reason) }).embed(['hello'], { signal: ctrl2.signal }), (err) => err === reason);
    assert.equal(seen.length, 1);

    await assert.rejects(make().embed(['hello'], { signal: AbortSignal.abort(reason) }), (err) => err === reason);
    assert.equal(seen.length, 1);
  });

  it('does not retry a 4xx: embedder_failed, and the message carries neither the key nor the text', async () => {
    script = [() => ({ status: 401, body: { error: { message: `Incorrect API key provided: ${KEY} for "${SECRET_TEXT}"`, code: 'invalid_api_key' } } })];
    const err = await failure(make().embed([SECRET_TEXT]));
    assert.equal(err.code, 'embedder_failed');
    assert.equal(err.retryable, false);
    assert.equal(err.statusCode, 401);
    assert.match(err.message, /401 \(invalid_api_key\)/);
    assert.equal(seen.length, 1);
  });

  it('rejects a response of the wrong shape with embedder_failed', async () => {
    const bad: Array<[string, (s: Seen) => Reply, RegExp]> = [
      ['too few', () => ({ status: 200, body: { data: [{ index: 0, embedding: axisOf('a') }] } }), /1 embeddings for 2 inputs/],
      ['wrong length', (s) => ({ status: 200, body: { data: s.body.input.map((_, index) => ({ index, embedding: [1, 2, 3] })) } }), /3 dimensions, expected 8/],
      ['repeated index', (s) => ({ status: 200, body: { data: s.body.input.map(() => ({ index: 0, embedding: axisOf('a') })) } }), /repeated index/],
      ['not numbers', (s) => ({ status: 200, body: { data: s.body.input.map((_, index) => ({ index, embedding: 'AAAA' })) } }), /not an array of numbers/],
      ['zero vector', (s) => ({ status: 200, body: { data: s.body.input.map((_, index) => ({ index, embedding: new Array(D).fill(0) })) } }), /zero/],
      ['no data', () => ({ status: 200, body: { object: 'list' } }), /no data array/],
      ['not json', () => ({ status: 200, body: '<html>proxy</html>' }), /not JSON/],
    ];
    for (const [name, reply, message] of bad) {
      script = [reply];
      const err = await failure(make().embed([SECRET_TEXT, 'second']));
      assert.equal(err.code, 'embedder_failed', name);
      assert.equal(err.retryable, false, name);
      assert.match(err.message, message, name);
    }
  });
});

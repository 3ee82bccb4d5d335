import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EmbedderError, type Embedder } from '../src/embed/index.ts';
import { call, counter, sseQuery, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

/**
 * Holds back embedding of texts that start with a marker until the test says so, and records
 * what happened: the tests decide when work is "in flight" instead of sleeping.
 */
class Gate {
  entered = 0;
  aborted = 0;
  private waiters: Array<{ release: () => void; fail: (err: unknown) => void }> = [];
  private enteredWaiters: Array<{ n: number; resolve: () => void }> = [];
  fail: Error | null = null;

  wrap(inner: Embedder): Embedder {
    return {
      id: inner.id,
      dimensions: inner.dimensions,
      embed: async (texts, opts) => {
        if (texts[0]?.startsWith('HOLD')) await this.hold(opts?.signal);
        if (texts[0]?.startsWith('FAIL')) throw new EmbedderError('embedder_unavailable', 'upstream down', { retryable: true });
        return inner.embed(texts, opts);
      },
    };
  }

  private hold(signal?: AbortSignal): Promise<void> {
    this.entered++;
    for (const w of this.enteredWaiters.filter((w) => this.entered >= w.n)) w.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.aborted++;
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push({
        release: () => {
          signal?.removeEventListener('abort', onAbort);
          if (this.fail) reject(this.fail);
          else resolve();
        },
        fail: reject,
      });
    });
  }

  /** Resolves once `n` embeddings in total are being held. */
  until(n: number): Promise<void> {
    if (this.entered >= n) return Promise.resolve();
    return new Promise((resolve) => this.enteredWaiters.push({ n, resolve }));
  }

  release(): void {
    for (const w of this.waiters.splice(0)) w.release();
  }
}

/** Polls `probe` until it is true (bounded): for effects that land after a response ends. */
async function eventually(probe: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`never happened: ${what}`);
}

/** Reads an SSE response's raw text as it arrives; `onText` sees everything read so far. */
async function readRaw(res: Response, onText?: (text: string) => void): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    onText?.(text);
  }
  return text;
}

/** A query over SSE with plain fetch (to read the raw bytes, or to abort). */
function rawQuery(url: string, token: string, query: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/api/v1/memory/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query, top_k: 5 }),
    signal,
  });
}

for (const target of targets()) {
  describe(`SSE streams: framing, heartbeat, failures, disconnects, load, shutdown (${target.name})`, () => {
    let api: TestApi;
    const gate = new Gate();
    const T = testTenant('stream');
    let token: string;

    before(async () => {
      api = await startTestApi(target, { embedder: (inner) => gate.wrap(inner), limits: { heartbeatMs: 50 } });
      token = await api.token(T, 'sam');
      const texts = Array.from({ length: 30 }, (_, i) => `Sam wrote note ${i}: line one\nline two of note ${i}.`);
      const res = await call(`${api.url}/api/v1/memory`, 'POST', token, { chunks: texts });
      assert.equal(res.status, 201);
    });
    after(async () => {
      gate.release();
      await api?.close();
    });

    const stream = (query: string, signal?: AbortSignal) => rawQuery(api.url, token, query, signal);

    it('frames each result with event and id, splits multi-line data, and sends the SSE headers', async () => {
      const res = await stream('Sam note line two');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
      assert.equal(res.headers.get('cache-control'), 'no-cache');
      assert.equal(res.headers.get('x-accel-buffering'), 'no');
      assert.ok(res.headers.get('x-request-id'));
      const text = await readRaw(res);
      const frames = text.split('\n\n').filter((f) => f.length > 0 && !f.startsWith(':'));
      assert.equal(frames.length, 6);
      for (const frame of frames.slice(0, 5)) {
        const lines = frame.split('\n');
        assert.equal(lines[0], 'event: result');
        assert.match(lines[1]!, /^id: [0-9a-f-]{36}$/);
        assert.ok(lines.slice(2).every((l) => l.startsWith('data: ')));
        // JSON never carries a raw newline, so each result is one data line.
        const data = JSON.parse(lines.slice(2).map((l) => l.slice(6)).join('\n')) as { id: string; text: string };
        assert.equal(`id: ${data.id}`, lines[1]);
        assert.match(data.text, /line one\nline two/);
      }
      assert.match(frames[5]!, /^event: done\ndata: \{"count":5,/);
    });

    it('sends a heartbeat comment while the answer is not ready', async () => {
      const res = await stream('HOLD heartbeat');
      let released = false;
      const text = await readRaw(res, (t) => {
        if (!released && t.includes(': heartbeat\n\n')) {
          released = true;
          gate.release();
        }
      });
      assert.ok(text.startsWith(': heartbeat\n\n'));
      assert.match(text, /event: done\n/);
    });

    it('a failure before anything was sent is a plain HTTP 503; after, an error event ends the stream', async () => {
      const errorsBefore = await counter(api.metrics, 'relay_sse_streams_total', { outcome: 'error' });
      const early = await stream('FAIL now');
      assert.equal(early.status, 503);
      assert.equal(early.headers.get('retry-after'), '5');
      assert.deepEqual(await early.json(), { error: { code: 'embedder_unavailable', message: 'the embedding model is unavailable; retry later' } });

      gate.fail = new EmbedderError('embedder_unavailable', 'upstream down', { retryable: true });
      try {
        const late = await stream('HOLD then fail');
        assert.equal(late.status, 200);
        const text = await readRaw(late, (t) => {
          if (t.includes(': heartbeat')) gate.release();
        });
        assert.match(text, /event: error\ndata: \{"code":"embedder_unavailable","message":"[^"]+"\}\n\n$/);
        assert.doesNotMatch(text, /event: (result|done)/);
      } finally {
        gate.fail = null;
      }
      assert.equal(await counter(api.metrics, 'relay_sse_streams_total', { outcome: 'error' }), errorsBefore + 2);
    });

    it('a client that disconnects mid-stream cancels the work and is counted as client_abort', async () => {
      const aborts = await counter(api.metrics, 'relay_sse_streams_total', { outcome: 'client_abort' });
      const abortedBefore = gate.aborted;
      const entered = gate.entered;
      const ac = new AbortController();
      const res = await stream('HOLD until the client leaves', ac.signal);
      assert.equal(res.status, 200);
      await gate.until(entered + 1);
      ac.abort();
      await eventually(async () => gate.aborted === abortedBefore + 1, 'the embedder call was aborted');
      await eventually(async () => (await counter(api.metrics, 'relay_sse_streams_total', { outcome: 'client_abort' })) === aborts + 1, 'client_abort counted');
    });

    it('50 concurrent streams all end in done (queued on one PGlite connection)', async () => {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => sseQuery(api.url, token, { query: `Sam note ${i % 30} line`, top_k: 3 }, { timeoutMs: 60_000 })));
      for (const events of results) {
        assert.equal(events.at(-1)?.event, 'done');
        assert.equal(events.filter((e) => e.event === 'result').length, 3);
      }
    });
  });

  describe(`graceful shutdown (${target.name})`, () => {
    it('finishes in-flight streams, refuses new work, then closes the store', async () => {
      const gate = new Gate();
      const api = await startTestApi(target, { embedder: (inner) => gate.wrap(inner), shutdownGraceMs: 10_000 });
      const token = await api.token(testTenant('shutdown'), 'sue');
      await call(`${api.url}/api/v1/memory`, 'POST', token, { text: 'Sue keeps notes.' });
      const streams = Array.from({ length: 3 }, () => sseQuery(api.url, token, { query: 'HOLD Sue notes' }, { timeoutMs: 20_000 }));
      await gate.until(3);
      const closed = api.close();
      // The listener is closed: a new connection cannot get in.
      await assert.rejects(fetch(`${api.url}/healthz`));
      gate.release();
      for (const events of await Promise.all(streams)) assert.equal(events.at(-1)?.event, 'done');
      await closed;
      const ready = await api.store.readiness();
      assert.equal(ready.ok, false, 'the store is closed');
    });

    it('cuts streams that outlast the grace period, and still closes', async () => {
      const gate = new Gate();
      const api = await startTestApi(target, { embedder: (inner) => gate.wrap(inner), shutdownGraceMs: 200 });
      const token = await api.token(testTenant('shutdown'), 'stu');
      const stuck = rawQuery(api.url, token, 'HOLD forever').then((res) => readRaw(res)).catch(() => 'connection cut');
      await gate.until(1);
      await api.close();
      const text = await stuck;
      assert.doesNotMatch(text, /event: done/);
      assert.equal((await api.store.readiness()).ok, false);
    });
  });
}

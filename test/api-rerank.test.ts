import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureTestModel } from '../src/rerank/model-gen/index.ts';
import { createOnnxReranker } from '../src/rerank/onnx.ts';
import { trackModel, type RerankProvider } from '../src/rerank/index.ts';
import { call, counter, sseQuery, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, unknown>;

const NOTES = [
  'Rita plays the cello every Thursday evening.',
  'Rita keeps her cello in the hall closet.',
  'Rita bought new cello strings last week.',
  'Rita is learning Portuguese on the train.',
  'Rita waters the basil on the balcony.',
  'Rita runs five kilometres on Sundays.',
];

/** A reranker that misbehaves on demand: throws, or sleeps until aborted. */
function unruly(behaviour: { mode: 'throw' | 'sleep' | 'ok'; aborted: number }): RerankProvider {
  return {
    provider: 'http',
    id: 'test/unruly',
    async rerank(_q, candidates, opts) {
      if (behaviour.mode === 'throw') throw new Error('reranker exploded');
      if (behaviour.mode === 'sleep') {
        await new Promise<void>((_resolve, reject) => {
          opts?.signal?.addEventListener('abort', () => {
            behaviour.aborted++;
            reject(opts.signal?.reason);
          });
        });
      }
      return candidates.map((c, i) => ({ id: c.id, score: 1 - i / candidates.length })).reverse();
    },
  };
}

for (const target of targets()) {
  describe(`reranking in the query path (${target.name})`, () => {
    const behaviour = { mode: 'ok' as 'throw' | 'sleep' | 'ok', aborted: 0 };
    let api: TestApi;
    let token: string;
    before(async () => {
      api = await startTestApi(target, { reranker: unruly(behaviour), rerankOptions: { budgetMs: 150, breaker: { failures: 100, cooldownMs: 1000 } } });
      token = await api.token(testTenant('rerank'), 'rita');
      assert.equal((await call(`${api.url}/api/v1/memory`, 'POST', token, { chunks: NOTES })).status, 201);
    });
    after(async () => {
      await api?.close();
    });

    const done = (events: Array<{ event?: string; data: string }>) => JSON.parse(events.at(-1)!.data) as Json;

    it('reranks the candidates and reports how many it scored', async () => {
      behaviour.mode = 'ok';
      const seconds = await counter(api.metrics, 'relay_rerank_seconds_count', { provider: 'http' });
      const events = await sseQuery(api.url, token, { query: 'cello', top_k: 2 });
      assert.equal(events.at(-1)?.event, 'done');
      // top_k 2 × 4 candidates, all six chunks, scored by the reranker.
      assert.equal(done(events).reranked, 6);
      assert.equal(events.filter((e) => e.event === 'result').length, 2);
      assert.equal(await counter(api.metrics, 'relay_rerank_seconds_count', { provider: 'http' }), seconds + 1);
      const off = done(await sseQuery(api.url, token, { query: 'cello', top_k: 2, rerank: 'off' }));
      assert.equal(off.reranked, 0);
    });

    it('a broken reranker never fails the query: search order, fallback counted', async () => {
      behaviour.mode = 'throw';
      const errors = await counter(api.metrics, 'relay_rerank_fallbacks_total', { reason: 'error' });
      const plain = await call(`${api.url}/api/v1/memory/query`, 'POST', token, { query: 'cello strings', top_k: 3, rerank: 'off' });
      const events = await sseQuery(api.url, token, { query: 'cello strings', top_k: 3 });
      assert.equal(events.at(-1)?.event, 'done');
      assert.equal(done(events).reranked, 0);
      assert.deepEqual(events.filter((e) => e.event === 'result').map((e) => e.id), ((plain.body as Json).results as Json[]).map((r) => r.id));
      assert.equal(await counter(api.metrics, 'relay_rerank_fallbacks_total', { reason: 'error' }), errors + 1);
    });

    it('a reranker past its budget is cancelled; the stream still ends in done (timeout counted)', async () => {
      behaviour.mode = 'sleep';
      const aborted = behaviour.aborted;
      const before = await (await fetch(`${api.url}/metrics/memory`)).text();
      const events = await sseQuery(api.url, token, { query: 'Portuguese on the train', top_k: 3 });
      assert.equal(events.at(-1)?.event, 'done');
      assert.equal(events.filter((e) => e.event === 'result').length, 3);
      assert.equal(behaviour.aborted, aborted + 1, 'the late work was aborted');
      const after = await (await fetch(`${api.url}/metrics/memory`)).text();
      const timeouts = (t: string) => Number(/relay_rerank_fallbacks_total\{reason="timeout"\} (\d+)/.exec(t)![1]);
      assert.equal(timeouts(after), timeouts(before) + 1);
      behaviour.mode = 'ok';
    });
  });

  describe(`an ONNX cross-encoder end to end, and readiness while it loads (${target.name})`, () => {
    let api: TestApi;
    let loads = 0;
    let dir: string;
    let reranker: Awaited<ReturnType<typeof createOnnxReranker>>;
    before(async () => {
      dir = await ensureTestModel('tiny');
      reranker = await createOnnxReranker({ modelDir: dir, maxLength: 128 });
      const model = trackModel(
        async () => {
          loads++;
          if (loads === 1) throw Object.assign(new Error('model folder missing'), { code: 'ENOENT' });
          return reranker;
        },
        { retryMs: 0 },
      );
      model.load();
      api = await startTestApi(target, { reranker, models: { reranker: model } });
    });
    after(async () => {
      await api?.close();
      await reranker?.close?.();
    });

    it('/readyz is not ready while the model has not loaded, and recovers by itself', async () => {
      const first = await fetch(`${api.url}/readyz`);
      assert.equal(first.status, 503);
      assert.match(((await first.json()) as { checks: { reranker: string } }).checks.reranker, /not loaded \(ENOENT\); retrying|loading/);
      let status = 503;
      let body: { checks: { reranker: string } } | null = null;
      for (let i = 0; i < 100 && status !== 200; i++) {
        const res = await fetch(`${api.url}/readyz`);
        status = res.status;
        body = (await res.json()) as { checks: { reranker: string } };
        if (status !== 200) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(status, 200);
      assert.equal(body?.checks.reranker, reranker.id);
      assert.equal(loads, 2);
    });

    it('reranks a real query with the ONNX model', async () => {
      const token = await api.token(testTenant('onnx'), 'rita');
      assert.equal((await call(`${api.url}/api/v1/memory`, 'POST', token, { chunks: NOTES })).status, 201);
      const events = await sseQuery(api.url, token, { query: 'where is the cello', top_k: 3 });
      const summary = JSON.parse(events.at(-1)!.data) as Json;
      assert.equal(events.at(-1)?.event, 'done');
      assert.equal(summary.reranked, 6);
      const scores = events.filter((e) => e.event === 'result').map((e) => (JSON.parse(e.data) as { score: number }).score);
      assert.equal(scores.length, 3);
      assert.ok(scores.every((s) => s >= 0 && s <= 1));
      assert.deepEqual([...scores].sort((a, b) => b - a), scores, 'best first');
    });
  });
}

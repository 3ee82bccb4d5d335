// The ONNX cross-encoder end to end, on the generated `tiny` BERT (2 layers, hidden 32):
// model folder layouts, scoring, batching and padding, truncation, concurrency, abort,
// disposal, execution providers, int8, throughput estimates, and the event loop.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildModelFiles, ensureTestModel, MODEL_FILES, TEST_MODELS } from '../src/rerank/model-gen/index.ts';
import { createOnnxReranker, OnnxRerankError, type OnnxReranker } from '../src/rerank/onnx.ts';
import type { RerankCandidate, RerankScore } from '../src/rerank/types.ts';
import { eventually } from './helpers/eventually.ts';

const QUERY = 'what food does the user like';
const TEXTS = [
  'the user prefers vegan dinner and tea in the morning',
  'meeting moved to thursday afternoon',
  'she likes to run every day before work',
  'invoice sent to the client on monday',
  'their daughter has a birthday in june',
  'allergic to fish, loves coffee',
  'the project deadline is next week',
  'hello world',
  'a long story about a farm, a river and a mountain near the sea',
  'plan a trip to the island for the summer vacation with the family',
  'x',
  'the dog ran far away',
];
const candidates = (texts: readonly string[] = TEXTS): RerankCandidate[] => texts.map((text, i) => ({ id: `c${i}`, text, score: 1 - i / 100 }));
const byId = (scores: ReadonlyArray<{ id: string; score: number }>) => new Map(scores.map((s) => [s.id, s.score]));

let tiny: string;
let scratch: string;
const open: OnnxReranker[] = [];
async function reranker(opts: Partial<Parameters<typeof createOnnxReranker>[0]> = {}): Promise<OnnxReranker> {
  const r = await createOnnxReranker({ modelDir: tiny, ...opts });
  open.push(r);
  return r;
}

before(async () => {
  tiny = await ensureTestModel('tiny');
  scratch = await mkdtemp(join(tmpdir(), 'relay-rerank-onnx-'));
});
after(async () => {
  await Promise.all(open.map((r) => r.close?.()));
  await rm(scratch, { recursive: true, force: true });
});

describe('model folders', () => {
  test('loads a folder with model.onnx at the top and one with onnx/model.onnx alike', async () => {
    const nested = join(scratch, 'nested');
    await mkdir(join(nested, 'onnx'), { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) await cp(join(tiny, f), join(nested, f));
    await cp(join(tiny, 'model.onnx'), join(nested, 'onnx', 'model.onnx'));
    const top = await reranker();
    const sub = await reranker({ modelDir: nested });
    assert.match(top.id, /^onnx\/tiny@[0-9a-f]{12}$/);
    assert.equal(sub.id, top.id.replace('onnx/tiny@', 'onnx/nested@'), 'same model file, same digest');
    assert.ok(sub.modelPath.endsWith(join('onnx', 'model.onnx')));
    assert.deepEqual(await sub.rerank(QUERY, candidates()), await top.rerank(QUERY, candidates()));
  });

  test('a folder without a model or a tokenizer is a clear startup error', async () => {
    const empty = join(scratch, 'empty');
    await mkdir(empty, { recursive: true });
    await cp(join(tiny, 'tokenizer.json'), join(empty, 'tokenizer.json'));
    await assert.rejects(createOnnxReranker({ modelDir: empty }), (err: OnnxRerankError) => err.code === 'rerank_unavailable' && /no model\.onnx/.test(err.message));
    const noTokenizer = join(scratch, 'no-tokenizer');
    await mkdir(noTokenizer, { recursive: true });
    await cp(join(tiny, 'model.onnx'), join(noTokenizer, 'model.onnx'));
    await assert.rejects(createOnnxReranker({ modelDir: noTokenizer }), (err: OnnxRerankError) => err.code === 'rerank_unavailable' && /tokenizer\.json/.test(err.message));
    await assert.rejects(createOnnxReranker({ modelDir: join(scratch, 'nowhere') }), /does not exist/);
    const fp32Only = join(scratch, 'fp32-only');
    await mkdir(fp32Only, { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'model.onnx']) await cp(join(tiny, f), join(fp32Only, f));
    await assert.rejects(createOnnxReranker({ modelDir: fp32Only, quantized: true }), /no model_quantized\.onnx/);
  });

  test('a requested execution provider this onnxruntime lacks stops startup, naming what is available', async () => {
    for (const ep of ['cuda', 'bogus']) {
      await assert.rejects(
        createOnnxReranker({ modelDir: tiny, executionProviders: [ep, 'cpu'] }),
        (err: OnnxRerankError) => err.code === 'rerank_unavailable' && err.message.includes(`"${ep}"`) && /Available here: cpu/.test(err.message),
      );
    }
  });
});

describe('scoring', () => {
  test('scores every candidate once, in [0, 1], best first', async () => {
    const r = await reranker();
    const out = await r.rerank(QUERY, candidates());
    assert.deepEqual(out.map((s) => s.id).sort(), candidates().map((c) => c.id).sort());
    for (const s of out) assert.ok(s.score >= 0 && s.score <= 1 && Number.isFinite(s.score), `${s.id}: ${s.score}`);
    for (let i = 1; i < out.length; i++) assert.ok(out[i - 1]!.score >= out[i]!.score);
    assert.ok(out[0]!.score - out.at(-1)!.score > 0.05, 'the generated weights spread the scores');
    assert.deepEqual(await r.rerank(QUERY, []), []);
  });

  test('batched scores equal one-by-one scores (within 1e-5)', async () => {
    const batched = byId(await (await reranker({ batchSize: 16 })).rerank(QUERY, candidates()));
    const single = byId(await (await reranker({ batchSize: 1 })).rerank(QUERY, candidates()));
    for (const [id, score] of single) assert.ok(Math.abs(score - batched.get(id)!) < 1e-5, `${id}: ${score} vs ${batched.get(id)}`);
  });

  test('padding does not change a score: a short pair batched with a long one scores as alone', async () => {
    const r = await reranker({ batchSize: 8 });
    const short = { id: 'short', text: 'tea', score: 0 };
    const long = { id: 'long', text: 'the user talked about coffee and tea and dinner plans for the week '.repeat(3), score: 0 };
    const runs: number[] = [];
    const alone = byId(await r.rerank(QUERY, [short]));
    const r2 = await reranker({ batchSize: 8, onBatch: (b) => runs.push(b.paddedTokens - b.tokens) });
    const together = byId(await r2.rerank(QUERY, [short, long]));
    assert.ok(runs[0]! > 10, 'the short pair really was padded');
    assert.ok(Math.abs(alone.get('short')! - together.get('short')!) < 1e-5);
  });

  test('a very long candidate is truncated to max length and still scores', async () => {
    const r = await reranker({ maxLength: 48 });
    const huge = { id: 'huge', text: 'memory '.repeat(5000), score: 0 };
    const [tokens] = r.pairTokens(QUERY, [huge]);
    assert.equal(tokens, 48);
    const [s] = await r.rerank(QUERY, [huge]);
    assert.ok(s!.score >= 0 && s!.score <= 1);
    // The model has 128 positions: a larger max length is capped there.
    const capped = await reranker({ maxLength: 4096 });
    assert.equal(capped.maxLength, TEST_MODELS.tiny.maxPositions);
    assert.equal(capped.pairTokens(QUERY, [huge])[0], TEST_MODELS.tiny.maxPositions);
    const [s2] = await capped.rerank(QUERY, [huge]);
    assert.ok(s2!.score >= 0 && s2!.score <= 1);
  });

  test('two sessions of the same model give the same scores', async () => {
    const a = await (await reranker()).rerank(QUERY, candidates());
    const b = await (await reranker({ threads: 1 })).rerank(QUERY, candidates());
    assert.deepEqual(
      a.map((s) => s.id),
      b.map((s) => s.id),
    );
    const bs = byId(b);
    for (const s of a) assert.ok(Math.abs(s.score - bs.get(s.id)!) < 1e-6);
  });

  test('many concurrent calls each get their own correct answer', async () => {
    const r = await reranker({ batchSize: 4 });
    const queries = Array.from({ length: 24 }, (_, i) => `${QUERY} ${['tea', 'run', 'work', 'june'][i % 4]} ${i}`);
    const sequential: RerankScore[][] = [];
    for (const q of queries) sequential.push(await r.rerank(q, candidates()));
    const concurrent = await Promise.all(queries.map((q) => r.rerank(q, candidates())));
    concurrent.forEach((got, i) => {
      const want = byId(sequential[i]!);
      assert.equal(got.length, TEXTS.length);
      for (const s of got) assert.ok(Math.abs(s.score - want.get(s.id)!) < 1e-5, `query ${i}, ${s.id}`);
    });
  });

  test('a two-label (no/yes) head scores with the softmax of the positive class', async () => {
    const dir = join(scratch, 'two-labels');
    await mkdir(dir, { recursive: true });
    const files = await buildModelFiles('two-labels', { ...TEST_MODELS.tiny, labels: 2 });
    for (const [name, data] of Object.entries(files)) await writeFile(join(dir, name), data);
    const r = await reranker({ modelDir: dir });
    const out = await r.rerank(QUERY, candidates());
    assert.equal(out.length, TEXTS.length);
    for (const s of out) assert.ok(s.score > 0 && s.score < 1);
  });
});

describe('int8', () => {
  test('the quantized model loads and ranks close to fp32', async () => {
    const fp32 = await reranker();
    const int8 = await reranker({ quantized: true });
    assert.equal(int8.quantized, true);
    assert.ok(int8.modelPath.endsWith('model_quantized.onnx'));
    assert.notEqual(int8.id, fp32.id);
    const texts = [...TEXTS, ...TEXTS.map((t) => `${t} again`), ...TEXTS.map((t) => `note: ${t}`)];
    const a = byId(await fp32.rerank(QUERY, candidates(texts)));
    const b = byId(await int8.rerank(QUERY, candidates(texts)));
    let maxDiff = 0;
    for (const [id, s] of a) maxDiff = Math.max(maxDiff, Math.abs(s - b.get(id)!));
    assert.ok(maxDiff < 0.1, `int8 scores within 0.1 of fp32 (max diff ${maxDiff})`);
    assert.ok(spearman([...a.keys()].map((id) => [a.get(id)!, b.get(id)!])) > 0.9);
  });

  test('a folder with only model_quantized.onnx loads it without being asked', async () => {
    const dir = join(scratch, 'only-int8');
    await mkdir(join(dir, 'onnx'), { recursive: true });
    for (const f of ['config.json', 'tokenizer.json']) await cp(join(tiny, f), join(dir, f));
    await cp(join(tiny, 'model_quantized.onnx'), join(dir, 'onnx', 'model_quantized.onnx'));
    const r = await reranker({ modelDir: dir });
    assert.equal(r.quantized, true);
    assert.equal((await r.rerank(QUERY, candidates())).length, TEXTS.length);
  });
});

describe('lifecycle', () => {
  test('close releases the session; later calls reject clearly', async () => {
    const r = await createOnnxReranker({ modelDir: tiny });
    await r.rerank(QUERY, candidates());
    const inFlight = r.rerank(QUERY, candidates());
    await r.close!();
    await r.close!();
    // A call already running when close came either finished or was told the reranker closed.
    await inFlight.catch((err: OnnxRerankError) => assert.equal(err.code, 'rerank_closed'));
    await assert.rejects(r.rerank(QUERY, candidates()), (err: OnnxRerankError) => err.code === 'rerank_closed' && /closed/.test(err.message));
    await assert.rejects(r.warm!(), (err: OnnxRerankError) => err.code === 'rerank_closed');
  });

  test('abort stops before the next batch and rejects with the reason', async () => {
    const controller = new AbortController();
    const runs: number[] = [];
    const r = await reranker({
      batchSize: 1,
      onBatch: (b) => {
        runs.push(b.pairs);
        controller.abort(new Error('over budget'));
      },
    });
    await assert.rejects(r.rerank(QUERY, candidates(), { signal: controller.signal }), /over budget/);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(runs.length, 1, 'no batch ran after the abort');
    await assert.rejects(r.rerank(QUERY, candidates(), { signal: AbortSignal.abort(new Error('gone')) }), /gone/);
    assert.equal(runs.length, 1);
    // The session is still usable.
    assert.equal((await r.rerank(QUERY, candidates())).length, TEXTS.length);
  });

  test('a run the caller gave up on still teaches the estimate when it ends', async () => {
    const runs: number[] = [];
    const r = await reranker({ batchSize: 512, threads: 1, onBatch: (b) => runs.push(b.pairs) });
    const rate = r.msPerToken;
    const long = 'the user likes long walks in the park and reading books about science every weekend '.repeat(8);
    const many = candidates(Array.from({ length: 256 }, (_, i) => `${i} ${long}`));
    const controller = new AbortController();
    const call = r.rerank(QUERY, many, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('over budget')), 1);
    await assert.rejects(call, /over budget/);
    // The one run (given up on, so no onBatch) ends in the model and is measured all the same.
    await eventually('the estimate to change', async () => (r.msPerToken !== rate ? true : undefined), 30_000);
    assert.deepEqual(runs, []);
    assert.ok(r.msPerToken > 0 && Number.isFinite(r.msPerToken));
  });

  test('estimateMs grows with the candidate length and follows measured throughput', async () => {
    const r = await reranker();
    const texts = ['tea', 'tea and coffee in the morning', 'tea and coffee in the morning with the family on the island '.repeat(4)];
    const before = r.estimateMs!(QUERY, candidates(texts));
    assert.ok(before[0]! > 0);
    assert.ok(before[0]! < before[1]! && before[1]! < before[2]!);
    await r.warm!();
    const rate = r.msPerToken;
    const after = r.estimateMs!(QUERY, candidates(texts));
    assert.ok(after[0]! < after[1]! && after[1]! < after[2]!);
    const tokens = r.pairTokens(QUERY, candidates(texts));
    after.forEach((ms, i) => assert.ok(Math.abs(ms - tokens[i]! * rate) < 1e-9));
    await r.rerank(QUERY, candidates());
    assert.notEqual(r.msPerToken, rate, 'each run updates the average');
    // While another request's runs are queued, the first candidate carries the wait.
    const busy = r.rerank(QUERY, candidates(Array.from({ length: 64 }, () => texts[2]!)));
    const queued = r.estimateMs!(QUERY, candidates(texts));
    assert.ok(queued[0]! > r.pairTokens(QUERY, candidates(texts))[0]! * r.msPerToken * 10, 'the backlog is in the first estimate');
    await busy;
    const idle = r.estimateMs!(QUERY, candidates(texts));
    assert.ok(Math.abs(idle[0]! - r.pairTokens(QUERY, candidates(texts))[0]! * r.msPerToken) < 1e-9, 'and gone once it ran');
  });

  test('the event loop keeps ticking while a big batch runs', async () => {
    let runMs = 0;
    const r = await reranker({ batchSize: 512, threads: 1, onBatch: (b) => (runMs = b.ms) });
    const long = 'the user likes long walks in the park and reading books about science every weekend '.repeat(8);
    const many = candidates(Array.from({ length: 384 }, (_, i) => `${i} ${long}`));
    r.pairTokens(QUERY, many); // tokenised up front: only the inference is timed below
    const ticks: number[] = [];
    const timer = setInterval(() => ticks.push(performance.now()), 5);
    const started = performance.now();
    await r.rerank(QUERY, many);
    const ended = performance.now();
    clearInterval(timer);
    const stamps = [started, ...ticks, ended];
    const maxGap = Math.max(...stamps.slice(1).map((t, i) => t - stamps[i]!));
    assert.ok(runMs > 100, `the batch is big enough to matter (${runMs.toFixed(0)} ms)`);
    assert.ok(maxGap < Math.max(60, runMs / 4), `longest stall ${maxGap.toFixed(0)} ms during a ${runMs.toFixed(0)} ms inference`);
  });
});

describe('model generator', () => {
  test('builds the same bytes twice, in the Hugging Face layout', async () => {
    const a = await buildModelFiles('tiny', TEST_MODELS.tiny);
    const b = await buildModelFiles('tiny', TEST_MODELS.tiny);
    for (const f of MODEL_FILES) assert.deepEqual(Buffer.from(a[f]), Buffer.from(b[f]), f);
    assert.deepEqual(Buffer.from(a['model.onnx']), await readFile(join(tiny, 'model.onnx')), 'the cached model is what the generator builds');
    const config = JSON.parse(String(a['config.json'])) as Record<string, unknown>;
    assert.deepEqual(
      [config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size, config.vocab_size, config.max_position_embeddings],
      [32, 2, 2, 64, 1024, 128],
    );
    assert.equal(Object.keys(config.id2label as object).length, 1);
    const tok = JSON.parse(String(a['tokenizer.json'])) as { model: { vocab: object }; truncation: { strategy: string } };
    assert.equal(Object.keys(tok.model.vocab).length, 1024);
    assert.equal(tok.truncation.strategy, 'LongestFirst');
    assert.notDeepEqual(Buffer.from(a['model.onnx']), Buffer.from((await buildModelFiles('other-seed', TEST_MODELS.tiny))['model.onnx']));
  });

  test('rebuilds a cached model when a file is missing', async () => {
    const cacheDir = join(scratch, 'cache');
    const dir = await ensureTestModel('tiny', { cacheDir });
    await rm(join(dir, 'model_quantized.onnx'));
    assert.equal(await ensureTestModel('tiny', { cacheDir }), dir);
    assert.deepEqual(await readFile(join(dir, 'model_quantized.onnx')), await readFile(join(tiny, 'model_quantized.onnx')));
  });
});

/** Spearman's rank correlation of paired values. */
function spearman(pairs: ReadonlyArray<[number, number]>): number {
  const rank = (xs: number[]) => {
    const order = xs.map((x, i) => [x, i] as const).sort((p, q) => p[0] - q[0]);
    const r = new Array<number>(xs.length);
    order.forEach(([, i], k) => (r[i] = k));
    return r;
  };
  const ra = rank(pairs.map((p) => p[0]));
  const rb = rank(pairs.map((p) => p[1]));
  const n = pairs.length;
  const d2 = ra.reduce((s, r, i) => s + (r - rb[i]!) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}

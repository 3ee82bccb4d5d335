// `rerank(query, candidates, opts)`: the plain call behind maybeRerank, on real providers (lexical,
// an HTTP service speaking Cohere's wire format on 127.0.0.1, the generated ONNX cross-encoder).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/index.ts';
import { ensureTestModel } from '../../src/rerank/model-gen/index.ts';
import { closeCrossEncoders, createLexicalReranker, createReranker, rerank, RerankError, type RerankProvider } from '../../src/rerank/index.ts';

const candidates = [
  { id: 'a', text: 'The spare keys hang on the hook by the garage door.', score: 0.41, source: 'search' },
  { id: 'b', text: 'Alice prefers green tea in the morning.', score: 0.52, source: 'search' },
  { id: 'c', text: 'Keys to the shed are under the flower pot; spare keys too.', score: 0.38, source: 'search' },
];

/** A provider that answers whatever `scores` says, to see what rerank does with a bad answer. */
const answering = (scores: { id: string; score: number }[]): RerankProvider => ({ provider: 'http', id: 'test', rerank: async () => scores });

describe('rerank()', () => {
  let server: Server;
  let base: string;
  let delayMs = 0;
  let aborted = 0;

  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        const { documents } = JSON.parse(body) as { documents: string[] };
        // Relevance: how often "keys" appears, squashed into [0, 1].
        const results = documents.map((d, index) => ({ index, relevance_score: (d.match(/keys/gi)?.length ?? 0) / 3 }));
        const timer = setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ results }));
        }, delayMs);
        res.on('close', () => {
          if (!res.writableEnded) aborted++;
          clearTimeout(timer);
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await closeCrossEncoders();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('returns every candidate once, best first, with rerankScore in [0, 1] and its own fields kept', async () => {
    const out = await rerank('where are the spare keys?', candidates, { reranker: createLexicalReranker() });
    assert.equal(out.length, 3);
    assert.deepEqual(new Set(out.map((c) => c.id)), new Set(['a', 'b', 'c']));
    assert.equal(out.at(-1)!.id, 'b', 'the chunk about tea is last for a question about keys');
    for (let i = 0; i < out.length; i++) {
      const c = out[i]!;
      assert.ok(c.rerankScore >= 0 && c.rerankScore <= 1, `${c.id}: ${c.rerankScore}`);
      if (i > 0) assert.ok(out[i - 1]!.rerankScore >= c.rerankScore);
      const given = candidates.find((g) => g.id === c.id)!;
      assert.equal(c.score, given.score, 'the search score is kept beside the rerank score');
      assert.equal(c.source, 'search');
    }
  });

  it('without a reranker, uses the configured one (RELAY_RERANKER=http, Cohere format)', async () => {
    const config = loadConfig({ RELAY_RERANKER: 'http', RELAY_RERANK_URL: base, RELAY_RERANK_FORMAT: 'cohere' }).rerank;
    const out = await rerank('spare keys', candidates, { config });
    assert.deepEqual(
      out.map((c) => [c.id, Math.round(c.rerankScore * 3)]),
      [
        ['c', 2],
        ['a', 1],
        ['b', 0],
      ],
    );
  });

  it('an abort rejects the call and cancels the service request', async () => {
    delayMs = 5_000;
    try {
      const config = loadConfig({ RELAY_RERANKER: 'http', RELAY_RERANK_URL: base, RELAY_RERANK_FORMAT: 'cohere' }).rerank;
      const ac = new AbortController();
      const started = performance.now();
      setTimeout(() => ac.abort(new Error('caller gave up')), 50);
      await assert.rejects(rerank('spare keys', candidates, { config, signal: ac.signal }));
      assert.ok(performance.now() - started < 4_000, 'did not wait for the slow service');
      for (let i = 0; i < 50 && aborted === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(aborted, 1, 'the service saw its request closed');
    } finally {
      delayMs = 0;
    }
  });

  it('no candidates: nothing to ask', async () => {
    let asked = 0;
    const provider: RerankProvider = { provider: 'lexical', id: 'count', rerank: async () => (asked++, []) };
    assert.deepEqual(await rerank('q', [], { reranker: provider }), []);
    assert.equal(asked, 0);
  });

  it('refuses duplicate candidate ids before asking anyone', async () => {
    await assert.rejects(rerank('q', [candidates[0]!, { ...candidates[1]!, id: 'a' }], { reranker: createLexicalReranker() }), TypeError);
  });

  it('a provider answer that is unusable is a RerankError, never a partial or invented list', async () => {
    const bad = [
      [{ id: 'a', score: 0.5 }, { id: 'b', score: 0.4 }],
      [{ id: 'a', score: 0.5 }, { id: 'b', score: 0.4 }, { id: 'zz', score: 0.1 }],
      [{ id: 'a', score: 1.5 }, { id: 'b', score: 0.4 }, { id: 'c', score: 0.1 }],
      [{ id: 'a', score: Number.NaN }, { id: 'b', score: 0.4 }, { id: 'c', score: 0.1 }],
      [{ id: 'a', score: 0.5 }, { id: 'a', score: 0.4 }, { id: 'c', score: 0.1 }],
    ];
    for (const scores of bad) {
      await assert.rejects(rerank('q', candidates, { reranker: answering(scores) }), (e: unknown) => e instanceof RerankError && e.code === 'rerank_bad_response', JSON.stringify(scores));
    }
  });

  it('the ONNX cross-encoder: fp32 by default, int8 with RELAY_RERANK_QUANTIZED=on, same order of magnitude of scores', async () => {
    const dir = await ensureTestModel('tiny');
    const env = { RELAY_RERANKER: 'onnx', RELAY_RERANK_MODEL_DIR: dir, RELAY_RERANK_MAX_LENGTH: '64' };
    const fp32 = await createReranker(loadConfig(env).rerank);
    const int8 = await createReranker(loadConfig({ ...env, RELAY_RERANK_QUANTIZED: 'on' }).rerank);
    try {
      assert.ok('quantized' in fp32 && fp32.quantized === false);
      assert.ok('quantized' in int8 && int8.quantized === true);
      assert.notEqual(fp32.id, int8.id);
      for (const provider of [fp32, int8]) {
        const out = await rerank('where are the spare keys?', candidates, { reranker: provider });
        assert.equal(out.length, 3);
        assert.ok(out.every((c, i) => c.rerankScore >= 0 && c.rerankScore <= 1 && (i === 0 || out[i - 1]!.rerankScore >= c.rerankScore)));
      }
    } finally {
      await fp32.close?.();
      await int8.close?.();
    }
  });

  it('RELAY_RERANK_QUANTIZED=on with no model_quantized.onnx in the folder fails to load, naming the file', async () => {
    const { mkdtemp, cp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'relay-fp32-only-'));
    try {
      const src = await ensureTestModel('tiny');
      for (const f of ['config.json', 'tokenizer.json', 'model.onnx']) await cp(join(src, f), join(dir, f));
      await assert.rejects(
        createReranker(loadConfig({ RELAY_RERANKER: 'onnx', RELAY_RERANK_MODEL_DIR: dir, RELAY_RERANK_QUANTIZED: 'on' }).rerank),
        (e: Error & { code?: string }) => e.code === 'rerank_unavailable' && /model_quantized\.onnx/.test(e.message),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('RELAY_RERANK_QUANTIZED accepts on/off only', () => {
    assert.equal(loadConfig({}).rerank.onnx.quantized, false);
    assert.throws(() => loadConfig({ RELAY_RERANK_QUANTIZED: 'yes' }), /RELAY_RERANK_QUANTIZED/);
  });
});

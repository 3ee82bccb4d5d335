import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { loadConfig, type RerankConfig } from '../../src/config/index.ts';
import { closeCrossEncoders, createCrossEncoderCache, createLexicalReranker, createReranker, getCrossEncoder, type RerankProvider } from '../../src/rerank/index.ts';

const rerankConfig = (env: Record<string, string> = {}): RerankConfig => loadConfig(env).rerank;

describe('createReranker', () => {
  let server: Server;
  let base: string;
  const paths: string[] = [];

  before(async () => {
    server = createServer((req, res) => {
      paths.push(req.url ?? '');
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ results: [{ index: 1, relevance_score: 0.8 }, { index: 0, relevance_score: 0.3 }] }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('lexical by default', async () => {
    const r = await createReranker(rerankConfig());
    assert.equal(r.provider, 'lexical');
  });

  it('http from RELAY_RERANK_URL / FORMAT / MODEL', async () => {
    const r = await createReranker(rerankConfig({ RELAY_RERANKER: 'http', RELAY_RERANK_URL: `${base}/`, RELAY_RERANK_FORMAT: 'cohere', RELAY_RERANK_MODEL: 'm' }));
    assert.equal(r.provider, 'http');
    const out = await r.rerank('q', [
      { id: 'a', text: 'x', score: 0 },
      { id: 'b', text: 'y', score: 0 },
    ]);
    assert.deepEqual(
      out.map((s) => s.id),
      ['b', 'a'],
    );
    assert.deepEqual(paths, ['/v1/rerank']);
  });

  it('names the missing variable when a provider lacks what it needs', async () => {
    const cfg = rerankConfig();
    await assert.rejects(createReranker({ ...cfg, provider: 'http' }), /RELAY_RERANK_URL/);
    await assert.rejects(createReranker({ ...cfg, provider: 'onnx' }), /RELAY_RERANK_MODEL_DIR/);
  });
});

describe('getCrossEncoder / createCrossEncoderCache', () => {
  const cfg = rerankConfig();

  it('loads once however many callers ask at the same moment', async () => {
    let loads = 0;
    const cache = createCrossEncoderCache(async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 20));
      return createLexicalReranker();
    });
    const all = await Promise.all(Array.from({ length: 50 }, () => cache.get(cfg)));
    assert.equal(loads, 1);
    assert.ok(all.every((p) => p === all[0]));
    assert.equal(await cache.get(cfg), all[0]);
    assert.equal(loads, 1);
  });

  it('a failed load is shared by its concurrent callers, then forgotten: the next call retries', async () => {
    let loads = 0;
    const cache = createCrossEncoderCache(async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 10));
      if (loads === 1) throw new Error('model folder not mounted yet');
      return createLexicalReranker();
    });
    const first = await Promise.allSettled([cache.get(cfg), cache.get(cfg), cache.get(cfg)]);
    assert.ok(first.every((r) => r.status === 'rejected'));
    assert.equal(loads, 1);
    const r = await cache.get(cfg);
    assert.equal(r.provider, 'lexical');
    assert.equal(loads, 2);
  });

  it('a loader that throws synchronously is a rejection, not a throw', async () => {
    const cache = createCrossEncoderCache(() => {
      throw new Error('sync');
    });
    await assert.rejects(cache.get(cfg), /sync/);
  });

  it('different provider settings get different providers', async () => {
    const cache = createCrossEncoderCache();
    const a = await cache.get(cfg);
    const b = await cache.get({ ...cfg, percent: 5, budgetMs: 7 });
    const c = await cache.get({ ...cfg, provider: 'http', http: { ...cfg.http, url: 'http://127.0.0.1:9' } });
    assert.equal(a, b, 'rollout and budget do not change the provider');
    assert.notEqual(a, c);
    assert.equal(c.provider, 'http');
  });

  it('warm runs the provider warm-up; close closes what was loaded', async () => {
    const events: string[] = [];
    const cache = createCrossEncoderCache(
      async (): Promise<RerankProvider> => ({
        ...createLexicalReranker(),
        warm: async () => void events.push('warm'),
        close: async () => void events.push('close'),
      }),
    );
    await cache.warm(cfg);
    assert.deepEqual(events, ['warm']);
    await cache.close();
    assert.deepEqual(events, ['warm', 'close']);
  });

  it('getCrossEncoder: one provider per process for a config, under concurrent calls', async () => {
    const all = await Promise.all(Array.from({ length: 20 }, () => getCrossEncoder(cfg)));
    assert.ok(all.every((p) => p === all[0]));
    await closeCrossEncoders();
    const fresh = await getCrossEncoder(cfg);
    assert.notEqual(fresh, all[0], 'closing forgets');
    await closeCrossEncoders();
  });
});

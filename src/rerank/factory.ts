import type { RerankConfig } from '../config/index.ts';
import { createHttpReranker } from './http.ts';
import { createLexicalReranker } from './lexical.ts';
import type { RerankProvider } from './types.ts';

/** The configured reranker (RELAY_RERANKER), ready to use: an ONNX model is loaded here. */
export async function createReranker(cfg: RerankConfig): Promise<RerankProvider> {
  switch (cfg.provider) {
    case 'lexical':
      return createLexicalReranker();
    case 'http':
      if (!cfg.http.url) throw new TypeError('the http reranker needs a service URL (RELAY_RERANK_URL)');
      return createHttpReranker({ ...cfg.http, url: cfg.http.url, batchSize: cfg.batchSize });
    case 'onnx': {
      if (!cfg.onnx.modelDir) throw new TypeError('the onnx reranker needs a model folder (RELAY_RERANK_MODEL_DIR)');
      // Loaded only when configured: onnxruntime's native library is heavy to load and absent from no setup that uses it.
      const { createOnnxReranker } = await import('./onnx.ts');
      return createOnnxReranker({
        modelDir: cfg.onnx.modelDir,
        maxLength: cfg.onnx.maxLength,
        executionProviders: cfg.onnx.executionProviders,
        threads: cfg.onnx.threads,
        batchSize: cfg.batchSize,
        quantized: cfg.onnx.quantized,
      });
    }
  }
}

/** What decides which provider a config makes: two configs that agree here share one. */
function keyOf(cfg: RerankConfig): string {
  return JSON.stringify([cfg.provider, cfg.batchSize, cfg.onnx, cfg.http]);
}

export interface CrossEncoderCache {
  /** The provider for `cfg`, created on the first call; concurrent first calls share one creation. A failed creation is forgotten, so the next call tries again. */
  get(cfg: RerankConfig): Promise<RerankProvider>;
  /** `get`, then one warm-up run, so the first query does not pay for loading or the first inference. */
  warm(cfg: RerankConfig): Promise<RerankProvider>;
  /** Closes every provider created so far and forgets them. */
  close(): Promise<void>;
}

/** A memo of providers by config; `load` (default `createReranker`) makes one. */
export function createCrossEncoderCache(load: (cfg: RerankConfig) => Promise<RerankProvider> = createReranker): CrossEncoderCache {
  const loading = new Map<string, Promise<RerankProvider>>();
  return {
    get(cfg) {
      const key = keyOf(cfg);
      let p = loading.get(key);
      if (!p) {
        p = Promise.resolve().then(() => load(cfg));
        loading.set(key, p);
        const mine = p;
        mine.catch(() => {
          if (loading.get(key) === mine) loading.delete(key);
        });
      }
      return p;
    },
    async warm(cfg) {
      const provider = await this.get(cfg);
      await provider.warm?.();
      return provider;
    },
    async close() {
      const all = [...loading.values()];
      loading.clear();
      const providers = await Promise.allSettled(all);
      await Promise.allSettled(providers.map((r) => (r.status === 'fulfilled' ? r.value.close?.() : undefined)));
    },
  };
}

const shared = createCrossEncoderCache();

/** The process's reranker for `cfg`: loaded lazily once, however many requests ask at the same moment. */
export function getCrossEncoder(cfg: RerankConfig): Promise<RerankProvider> {
  return shared.get(cfg);
}

/** Loads and warms the process's reranker, for start-up and /readyz; rejects when it cannot. */
export function warmCrossEncoder(cfg: RerankConfig): Promise<RerankProvider> {
  return shared.warm(cfg);
}

/** Closes the process's rerankers (shutdown). */
export function closeCrossEncoders(): Promise<void> {
  return shared.close();
}

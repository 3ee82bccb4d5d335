import type { EmbedConfig } from '../config/index.ts';
import { createHashEmbedder } from './hash.ts';
import { createOnnxEmbedder } from './onnx.ts';
import { createOpenAIEmbedder } from './openai.ts';
import type { Embedder } from './types.ts';

export type { Embedder, EmbedOptions } from './types.ts';
export { EmbedderError, type EmbedderErrorCode } from './errors.ts';
export { splitText, splitSpans, type SplitOptions, type Span } from './split.ts';
export { createHashEmbedder, HASH_VERSION } from './hash.ts';
export { createOpenAIEmbedder, type OpenAIEmbedderOptions, type RetryInfo } from './openai.ts';
export { createOnnxEmbedder, type OnnxEmbedderOptions } from './onnx.ts';

/** The configured embedder (RELAY_EMBEDDER), ready to use: an ONNX model is loaded and checked against D here. */
export async function createEmbedder(cfg: EmbedConfig): Promise<Embedder> {
  switch (cfg.kind) {
    case 'hash':
      return createHashEmbedder(cfg.dimensions);
    case 'openai':
      return createOpenAIEmbedder({ ...cfg.openai, dimensions: cfg.dimensions, batchSize: cfg.batchSize, timeoutMs: cfg.timeoutMs, retries: cfg.retries });
    case 'onnx':
      if (!cfg.onnx.modelDir) throw new TypeError('the onnx embedder needs a model folder (RELAY_ONNX_MODEL_DIR)');
      return createOnnxEmbedder({ modelDir: cfg.onnx.modelDir, dimensions: cfg.dimensions, batchSize: cfg.batchSize });
  }
}

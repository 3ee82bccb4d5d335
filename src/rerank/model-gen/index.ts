import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bertGraph, bertWeights, type BertShape } from './bert.ts';
import { buildVocab, tokenizerJson } from './vocab.ts';

export { flopsPerToken, type BertShape } from './bert.ts';

/** Bumped whenever the generator's output changes, so stale cached folders are rebuilt. */
export const GENERATOR_VERSION = 2;

export const TEST_MODELS = {
  /** For unit tests of the real ONNX path: builds in milliseconds. */
  tiny: { layers: 2, hidden: 32, heads: 2, intermediate: 64, vocabSize: 1024, maxPositions: 128, labels: 1 },
  /** ms-marco-MiniLM-L-6-v2's shape, hence its cost per token (~21 MFLOP), for the benchmark. */
  'minilm-l6-shape': { layers: 6, hidden: 384, heads: 12, intermediate: 1536, vocabSize: 30522, maxPositions: 512, labels: 1 },
} as const satisfies Record<string, BertShape>;

export type TestModelName = keyof typeof TEST_MODELS;

/** The files a generated folder holds, in the Hugging Face layout the ONNX reranker loads. */
export const MODEL_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.onnx', 'model_quantized.onnx'] as const;

const STAMP = 'relay-model-gen.json';

/** `<repo>/.cache/models`, git-ignored. */
export function defaultCacheDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../../.cache/models');
}

function configJson(s: BertShape): object {
  const labels = Array.from({ length: s.labels }, (_, i) => `LABEL_${i}`);
  return {
    architectures: ['BertForSequenceClassification'],
    model_type: 'bert',
    hidden_size: s.hidden,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    intermediate_size: s.intermediate,
    vocab_size: s.vocabSize,
    max_position_embeddings: s.maxPositions,
    type_vocab_size: 2,
    hidden_act: 'gelu',
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
    id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
    label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
  };
}

/** The bytes of every file of a model folder, weights drawn from a stream seeded by `seed`. */
export async function buildModelFiles(seed: string, shape: BertShape): Promise<Record<(typeof MODEL_FILES)[number], Uint8Array | string>> {
  // onnx-proto is a dev dependency: loaded only when a model is generated (tests, benchmarks).
  const { onnx } = (await import('onnx-proto')).default;
  const weights = bertWeights(seed, shape);
  const encode = (quantized: boolean) => onnx.ModelProto.encode(bertGraph(seed, shape, weights, quantized)).finish();
  const vocab = buildVocab(shape.vocabSize);
  return {
    'config.json': JSON.stringify(configJson(shape), null, 2),
    'tokenizer.json': JSON.stringify(tokenizerJson(vocab, shape.maxPositions)),
    'tokenizer_config.json': JSON.stringify({
      tokenizer_class: 'BertTokenizer',
      do_lower_case: true,
      model_max_length: shape.maxPositions,
      cls_token: '[CLS]',
      sep_token: '[SEP]',
      pad_token: '[PAD]',
      unk_token: '[UNK]',
      mask_token: '[MASK]',
    }),
    'model.onnx': encode(false),
    'model_quantized.onnx': encode(true),
  };
}

/**
 * Writes a model folder into `dir` (replacing it). Written to a sibling first and renamed, so a
 * reader, or another process building the same model at the same moment, never sees half a folder.
 */
export async function writeModelFolder(dir: string, seed: string, shape: BertShape): Promise<void> {
  const files = await buildModelFiles(seed, shape);
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { recursive: true });
  try {
    for (const [name, data] of Object.entries(files)) await writeFile(join(tmp, name), data);
    await writeFile(join(tmp, STAMP), JSON.stringify({ version: GENERATOR_VERSION, seed, shape }));
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    // Another process won the race: its folder is as good as ours.
    if (isCurrent(dir, seed, shape)) return;
    throw err;
  }
}

function isCurrent(dir: string, seed: string, shape: BertShape): boolean {
  const stamp = join(dir, STAMP);
  if (!existsSync(stamp) || !MODEL_FILES.every((f) => existsSync(join(dir, f)))) return false;
  try {
    const s = JSON.parse(readFileSync(stamp, 'utf8')) as { version?: unknown; seed?: unknown; shape?: unknown };
    return s.version === GENERATOR_VERSION && s.seed === seed && JSON.stringify(s.shape) === JSON.stringify(shape);
  } catch {
    return false;
  }
}

const building = new Map<string, Promise<string>>();

/**
 * The folder of a generated test model, built when missing or made by an older generator.
 * Concurrent callers in one process share one build.
 */
export function ensureTestModel(name: TestModelName, opts: { cacheDir?: string; force?: boolean } = {}): Promise<string> {
  const dir = join(opts.cacheDir ?? defaultCacheDir(), name);
  const shape: BertShape = TEST_MODELS[name];
  if (!opts.force && isCurrent(dir, name, shape)) return Promise.resolve(dir);
  let pending = building.get(dir);
  if (!pending) {
    pending = writeModelFolder(dir, name, shape)
      .then(() => dir)
      .finally(() => building.delete(dir));
    building.set(dir, pending);
  }
  return pending;
}

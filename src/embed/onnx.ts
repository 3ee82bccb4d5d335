import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { EmbedderError } from './errors.ts';
import type { Embedder } from './types.ts';
import { normalized } from './vector.ts';

export interface OnnxEmbedderOptions {
  /** A sentence-transformers folder: `tokenizer.json` and `model.onnx` (or `onnx/model.onnx`). */
  modelDir: string;
  /** D: the model's hidden size must be this. */
  dimensions: number;
  /** Texts per inference run. */
  batchSize: number;
}

/** Used when neither sentence_bert_config.json, tokenizer.json nor tokenizer_config.json says: BERT's limit. */
const DEFAULT_MAX_TOKENS = 512;

/**
 * What is used of `@huggingface/tokenizers`: its published typings use extension-less relative
 * imports that NodeNext resolution cannot follow, so the shape is stated here.
 */
interface TextTokenizer {
  encode(text: string): { ids: number[]; attention_mask: number[] };
  token_to_id(token: string): number | undefined;
}

interface Encoded {
  ids: number[];
  mask: number[];
}

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  if (!existsSync(path)) return null;
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

function positiveInt(v: unknown, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= max ? v : undefined;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Rejects with the signal's reason as soon as it aborts; the work itself cannot be interrupted and is left to finish unheard. */
function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Tokenises with the model's own tokenizer, cut to `maxTokens` keeping the special tokens the
 * post-processor puts at the end (e.g. `[SEP]`), since a model has only seen inputs with them.
 */
function encoder(tokenizer: TextTokenizer, maxTokens: number, padId: number): (text: string) => Encoded {
  const bare = tokenizer.encode('').ids;
  return (text) => {
    const enc = tokenizer.encode(text);
    let ids: number[] = enc.ids;
    let mask: number[] = enc.attention_mask;
    if (ids.length > maxTokens) {
      let tail = Math.min(bare.length, maxTokens - 1);
      while (tail > 0 && !bare.slice(-tail).every((id, i) => id === ids[ids.length - tail + i])) tail--;
      ids = [...ids.slice(0, maxTokens - tail), ...ids.slice(ids.length - tail)];
      mask = [...mask.slice(0, maxTokens - tail), ...mask.slice(mask.length - tail)];
    }
    // A tokenizer without special tokens gives an empty text no token at all, and an all-padding
    // input pools to a zero vector: such a text is read as one padding token instead.
    return ids.length > 0 ? { ids, mask } : { ids: [padId], mask: [1] };
  };
}

/** Mean of the token vectors under the attention mask, per text. */
function meanPool(data: Float32Array, dims: readonly number[], batch: readonly Encoded[]): Float64Array[] {
  const [b, seq, hidden] = dims as [number, number, number];
  const out: Float64Array[] = [];
  for (let i = 0; i < b; i++) {
    const sum = new Float64Array(hidden);
    let n = 0;
    const mask = batch[i]!.mask;
    for (let t = 0; t < seq; t++) {
      if (!mask[t]) continue;
      n++;
      const row = (i * seq + t) * hidden;
      for (let h = 0; h < hidden; h++) sum[h]! += data[row + h]!;
    }
    if (n > 0) for (let h = 0; h < hidden; h++) sum[h]! /= n;
    out.push(sum);
  }
  return out;
}

/**
 * A local sentence-transformers model on the CPU: tokenizer.json through `@huggingface/tokenizers`,
 * model.onnx through onnxruntime, mean pooling over the attention mask, L2 normalisation. Its id is
 * `onnx/<folder>@<sha256(model.onnx), 12 hex>/d<D>`, so a changed model file is a new embedder.
 */
export async function createOnnxEmbedder(opts: OnnxEmbedderOptions): Promise<Embedder> {
  // Loaded here, not at import: every relay command imports the embedders, few run a model.
  const ort = await import('onnxruntime-node');
  const { Tokenizer } = await import('@huggingface/tokenizers');
  const dir = resolve(opts.modelDir);
  const unavailable = (why: string, cause?: unknown) => new EmbedderError('embedder_unavailable', `onnx embedder (${dir}): ${why}`, { cause });
  const modelPath = [join(dir, 'model.onnx'), join(dir, 'onnx', 'model.onnx')].find((p) => existsSync(p));
  if (!modelPath) throw unavailable('no model.onnx in the folder (nor in its onnx/ subfolder)');
  const tokenizerJson = await readJson(join(dir, 'tokenizer.json'));
  if (!tokenizerJson) throw unavailable('no tokenizer.json in the folder');
  const tokenizerConfig = (await readJson(join(dir, 'tokenizer_config.json'))) ?? {};
  const stConfig = (await readJson(join(dir, 'sentence_bert_config.json'))) ?? {};
  let tokenizer: TextTokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig) as TextTokenizer;
  } catch (err) {
    throw unavailable(`tokenizer.json cannot be loaded: ${(err as Error).message}`, err);
  }
  // The length the model was trained for, as sentence-transformers itself would pick it; a
  // tokenizer_config "model_max_length" of 1e30 means "unset".
  const truncation = (tokenizerJson.truncation as { max_length?: unknown } | null)?.max_length;
  const maxTokens =
    positiveInt(stConfig.max_seq_length) ?? positiveInt(truncation) ?? positiveInt(tokenizerConfig.model_max_length, 1 << 16) ?? DEFAULT_MAX_TOKENS;
  const padding = (tokenizerJson.padding as { pad_id?: unknown } | null)?.pad_id;
  const padId = typeof padding === 'number' ? padding : (tokenizer.token_to_id('[PAD]') ?? tokenizer.token_to_id('<pad>') ?? 0);
  const encode = encoder(tokenizer, maxTokens, padId);

  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  } catch (err) {
    throw unavailable(`model.onnx cannot be loaded: ${(err as Error).message}`, err);
  }
  if (!session.inputNames.includes('input_ids')) {
    await session.release();
    throw unavailable(`the model has no input_ids input (it has ${session.inputNames.join(', ')})`);
  }
  const output = session.outputNames[0]!;
  const int32 = new Set(session.inputMetadata.filter((m) => m.isTensor && m.type === 'int32').map((m) => m.name));

  function tensor(name: string, batch: readonly Encoded[], seq: number, value: (e: Encoded, t: number) => number): Tensor {
    const values: number[] = [];
    for (const e of batch) for (let t = 0; t < seq; t++) values.push(value(e, t));
    const dims = [batch.length, seq];
    return int32.has(name) ? new ort.Tensor('int32', Int32Array.from(values), dims) : new ort.Tensor('int64', BigInt64Array.from(values, BigInt), dims);
  }

  async function run(batch: readonly Encoded[], signal?: AbortSignal): Promise<Float64Array[]> {
    const seq = Math.max(1, ...batch.map((e) => e.ids.length));
    const feeds: Record<string, Tensor> = { input_ids: tensor('input_ids', batch, seq, (e, t) => e.ids[t] ?? padId) };
    if (session.inputNames.includes('attention_mask')) feeds.attention_mask = tensor('attention_mask', batch, seq, (e, t) => e.mask[t] ?? 0);
    if (session.inputNames.includes('token_type_ids')) feeds.token_type_ids = tensor('token_type_ids', batch, seq, () => 0);
    let result: InferenceSession.OnnxValueMapType;
    try {
      result = await abortable(session.run(feeds), signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw new EmbedderError('embedder_failed', `onnx inference failed: ${(err as Error).message}`, { cause: err });
    }
    const out = result[output] as Tensor;
    if (out.type !== 'float32') throw new EmbedderError('embedder_failed', `model output ${output} is ${out.type}, expected float32`);
    const data = out.data as Float32Array;
    if (out.dims.length !== 3) throw new EmbedderError('embedder_failed', `model output ${output} has shape [${out.dims.join(', ')}], expected [batch, tokens, hidden]`);
    return meanPool(data, out.dims, batch);
  }

  // The hidden size shows only in an output: one tiny run tells it before any row is written with it.
  let hidden: number;
  try {
    hidden = (await run([encode('probe')]))[0]!.length;
  } catch (err) {
    await session.release();
    throw unavailable(`a first inference failed: ${(err as Error).message}`, err);
  }
  if (hidden !== opts.dimensions) {
    await session.release();
    throw unavailable(`the model's hidden size is ${hidden}, but RELAY_EMBED_DIM is ${opts.dimensions}: set RELAY_EMBED_DIM=${hidden} on a new store, or pick a model of ${opts.dimensions} dimensions`);
  }
  const digest = await sha256File(modelPath);

  return {
    id: `onnx/${basename(dir)}@${digest.slice(0, 12)}/d${opts.dimensions}`,
    dimensions: opts.dimensions,
    async embed(texts, embedOpts) {
      const signal = embedOpts?.signal;
      signal?.throwIfAborted();
      const encoded = texts.map(encode);
      // Texts of similar length share a batch, so little of each run is spent on padding.
      const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.ids.length - encoded[b]!.ids.length);
      const out = new Array<Float32Array>(texts.length);
      for (let i = 0; i < order.length; i += opts.batchSize) {
        signal?.throwIfAborted();
        const idx = order.slice(i, i + opts.batchSize);
        const pooled = await run(idx.map((j) => encoded[j]!), signal);
        pooled.forEach((v, k) => {
          const unit = normalized(v);
          if (!unit) throw new EmbedderError('embedder_failed', 'the model gave a zero vector');
          out[idx[k]!] = unit;
        });
      }
      return out;
    },
    async close() {
      await session.release();
    },
  };
}

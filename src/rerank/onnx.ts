import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { OnnxRerankError } from './onnx-errors.ts';
import { installedProviders, missingProviders } from './onnx-providers.ts';
import { WorkerSession, type IdArray } from './onnx-session.ts';
import { pairEncoder, type EncodedPair, type PairEncoder, type TextTokenizer } from './onnx-tokenize.ts';
import type { RerankCandidate, RerankCallOptions, RerankProvider, RerankScore } from './types.ts';

export { OnnxRerankError, type OnnxRerankErrorCode } from './onnx-errors.ts';

export interface OnnxRerankerOptions {
  /**
   * A Hugging Face cross-encoder folder: `config.json`, `tokenizer.json`, and `model.onnx` or
   * `onnx/model.onnx` (and/or `model_quantized.onnx`, in either place).
   */
  modelDir: string;
  /** Tokens of a whole pair (query, candidate, special tokens) at most; capped at what the model's positions allow. Default 512. */
  maxLength?: number;
  /** onnxruntime execution providers, in order of preference, e.g. `['cuda', 'cpu']`. A missing one is a startup error. Default `['cpu']`. */
  executionProviders?: string[];
  /** Threads of one inference (intraOpNumThreads); 0 lets onnxruntime pick one per physical core. Default 0. */
  threads?: number;
  /** Pairs per inference run. Default 16. */
  batchSize?: number;
  /** Load the int8 `model_quantized.onnx` rather than `model.onnx`. The one that exists is loaded when only one does. Default false. */
  quantized?: boolean;
  /** Called after every inference run: for metrics, benchmarks and tests. */
  onBatch?: (run: BatchInfo) => void;
  /**
   * Profiles every operator (onnxruntime's profiler, a Chrome trace) into `<profilePrefix>_<time>.json`,
   * written when the reranker closes: for benchmarks (`bench rerank` reads where the time goes). Default off.
   */
  profilePrefix?: string;
}

export interface BatchInfo {
  pairs: number;
  /** Tokens of the pairs themselves. */
  tokens: number;
  /** pairs × the longest pair: what the model computed. */
  paddedTokens: number;
  /** Inside `session.run`. */
  ms: number;
}

/**
 * The ONNX provider, with what benchmarks and /readyz may want to know beyond `RerankProvider`.
 * Its `estimateMs` is pair tokens × `msPerToken`, plus, on the first candidate, the time the
 * runs already queued by other calls will take.
 */
export interface OnnxReranker extends RerankProvider {
  readonly provider: 'onnx';
  readonly modelPath: string;
  readonly maxLength: number;
  readonly quantized: boolean;
  /** The model's FLOPs per token at short lengths, from config.json (0 when it does not say). */
  readonly flopsPerToken: number;
  /** Milliseconds per pair token: measured by `warm()`, then a moving average over every run. */
  readonly msPerToken: number;
  /** Tokens of each (query, candidate) pair as the model will read it, truncation included. */
  pairTokens(query: string, candidates: readonly RerankCandidate[]): number[];
}

const DEFAULT_MAX_LENGTH = 512;
const DEFAULT_BATCH = 16;
/** Weight of the newest run in the throughput average: a few runs follow a change of load. */
const EWMA_ALPHA = 0.2;
/**
 * onnxruntime's intra-op threads sleep between operators rather than spin. Spinning buys
 * nothing measurable on a quiet CPU, but beside one busy core a spinning thread holds its core
 * while its partner waits for the scheduler: a 20-pair fp32 rerank on 2 threads of a 2-core AMD
 * EPYC took 106–125 ms spinning and 71–77 ms not (quiet, 51–53 ms either way; docs/benchmarks.md).
 * It also leaves the cores to the service's event loop between runs.
 */
export const NO_SPINNING = { session: { intra_op: { allow_spinning: '0' } } } as const;
/** The throughput assumed before anything is measured, FLOP/s: a modest CPU's. */
const ASSUMED_FLOPS = 50e9;

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

/** The model file to load: int8 when asked for (and only then missing is an error), else fp32, else the only one there is. */
function pickModel(dir: string, quantized: boolean): { path: string; quantized: boolean } | string {
  const find = (file: string) => [join(dir, file), join(dir, 'onnx', file)].find((p) => existsSync(p));
  const fp32 = find('model.onnx');
  const int8 = find('model_quantized.onnx');
  if (quantized) return int8 ? { path: int8, quantized: true } : 'int8 was asked for, but there is no model_quantized.onnx in the folder (nor in its onnx/ subfolder)';
  if (fp32) return { path: fp32, quantized: false };
  return int8 ? { path: int8, quantized: true } : 'no model.onnx or model_quantized.onnx in the folder (nor in its onnx/ subfolder)';
}

/** How many positions a pair may use: RoBERTa-family models reserve the first two for padding. */
function maxPositions(config: Record<string, unknown>): number | undefined {
  const positions = positiveInt(config.max_position_embeddings);
  if (positions === undefined) return undefined;
  const type = typeof config.model_type === 'string' ? config.model_type : '';
  return /roberta|camembert/.test(type) ? positions - 2 : positions;
}

function configFlopsPerToken(config: Record<string, unknown>): number {
  const layers = positiveInt(config.num_hidden_layers);
  const hidden = positiveInt(config.hidden_size);
  const inter = positiveInt(config.intermediate_size) ?? (hidden ? 4 * hidden : undefined);
  if (!layers || !hidden || !inter) return 0;
  return 2 * layers * (4 * hidden * hidden + 2 * hidden * inter);
}

function labelCount(config: Record<string, unknown>): number {
  const id2label = config.id2label;
  if (id2label && typeof id2label === 'object') return Object.keys(id2label).length;
  return positiveInt(config.num_labels) ?? 1;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * Splits `n` pairs, already sorted by length, into the fewest runs of at most `size`, of equal
 * sizes: 20 pairs at 16 a run are two runs of 10, not 16 + 4, and each run pads less.
 */
function batches(n: number, size: number): Array<[number, number]> {
  const count = Math.ceil(n / size);
  const out: Array<[number, number]> = [];
  let start = 0;
  for (let b = 0; b < count; b++) {
    const len = Math.floor(n / count) + (b < n % count ? 1 : 0);
    out.push([start, start + len]);
    start += len;
  }
  return out;
}

/**
 * A local cross-encoder through onnxruntime: pair tokenisation with the model's own tokenizer
 * and truncation, length-sorted dynamic padding, the sigmoid of the relevance logit. Inference
 * runs in a worker thread, one run at a time; the event loop only tokenises and sorts.
 */
export async function createOnnxReranker(opts: OnnxRerankerOptions): Promise<OnnxReranker> {
  // Loaded here, not at import: the factory imports this module only when RELAY_RERANKER=onnx.
  const ort = await import('onnxruntime-node');
  const { Tokenizer } = await import('@huggingface/tokenizers');
  const dir = resolve(opts.modelDir);
  const unavailable = (why: string, cause?: unknown) => new OnnxRerankError('rerank_unavailable', `onnx reranker (${dir}): ${why}`, { cause });
  const batchSize = opts.batchSize ?? DEFAULT_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw unavailable(`batch size must be a positive integer, not ${batchSize}`);
  const threads = opts.threads ?? 0;
  if (!Number.isInteger(threads) || threads < 0) throw unavailable(`threads must be 0 (runtime default) or more, not ${threads}`);
  const providers = (opts.executionProviders ?? ['cpu']).map((p) => p.trim().toLowerCase()).filter(Boolean);
  if (providers.length === 0) throw unavailable('no execution provider requested');
  const backends = ort.listSupportedBackends();
  const missing = missingProviders(providers, backends);
  if (missing) throw unavailable(missing);

  if (!existsSync(dir)) throw unavailable('the folder does not exist');
  const model = pickModel(dir, opts.quantized ?? false);
  if (typeof model === 'string') throw unavailable(model);
  const tokenizerJson = await readJson(join(dir, 'tokenizer.json'));
  if (!tokenizerJson) throw unavailable('no tokenizer.json in the folder');
  const config = (await readJson(join(dir, 'config.json'))) ?? {};
  const tokenizerConfig = (await readJson(join(dir, 'tokenizer_config.json'))) ?? {};
  const labels = labelCount(config);
  if (labels > 2) throw unavailable(`config.json has ${labels} labels; a reranker needs one relevance logit (or two, no/yes)`);
  const maxLength = Math.min(
    opts.maxLength ?? DEFAULT_MAX_LENGTH,
    maxPositions(config) ?? Number.MAX_SAFE_INTEGER,
    // 1e30 there means "unset".
    positiveInt(tokenizerConfig.model_max_length, 1 << 16) ?? Number.MAX_SAFE_INTEGER,
  );

  let tokenizer: TextTokenizer;
  let encoder: PairEncoder;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig) as TextTokenizer;
    encoder = pairEncoder(tokenizer, tokenizerJson.post_processor, maxLength);
  } catch (err) {
    throw unavailable(`tokenizer.json cannot be used: ${(err as Error).message}`, err);
  }
  const padding = (tokenizerJson.padding as { pad_id?: unknown } | null)?.pad_id;
  const padId = typeof padding === 'number' ? padding : (tokenizer.token_to_id('[PAD]') ?? tokenizer.token_to_id('<pad>') ?? 0);

  const sessionOptions: InferenceSession.SessionOptions = {
    executionProviders: providers,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
    ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    extra: NO_SPINNING,
  };
  let session: WorkerSession;
  try {
    session = await WorkerSession.open(model.path, sessionOptions);
  } catch (err) {
    const available = installedProviders(backends).join(', ');
    throw unavailable(`${basename(model.path)} cannot be loaded with execution providers ${providers.join(', ')} (installed here: ${available}): ${(err as Error).message}`, err);
  }
  const inputs = new Map(session.info.inputs.map((i) => [i.name, i.type]));
  const output = session.info.outputs.includes('logits') ? 'logits' : session.info.outputs[0];
  if (!inputs.has('input_ids') || output === undefined) {
    await session.close();
    throw unavailable(`the model needs an input_ids input and an output (it has inputs ${[...inputs.keys()].join(', ')})`);
  }
  const digest = await sha256File(model.path);

  const flopsPerToken = configFlopsPerToken(config);
  let msPerToken = flopsPerToken > 0 ? (flopsPerToken / ASSUMED_FLOPS) * 1000 : 0.05;
  let closed = false;
  // Pair tokens submitted and not yet through the model, all callers together: a new call waits
  // behind them, which its estimate must include.
  let backlogTokens = 0;

  // Token ids of candidates, held only as long as the caller holds the candidate objects:
  // `maybeRerank` asks estimateMs and then rerank about the same ones, and plaintext memory
  // must not outlive the request in a process-wide cache.
  const candidateTokens = new WeakMap<RerankCandidate, { text: string; ids: number[] }>();
  const textTokens = (c: RerankCandidate) => {
    let hit = candidateTokens.get(c);
    if (hit?.text !== c.text) {
      hit = { text: c.text, ids: encoder.tokens(c.text) };
      candidateTokens.set(c, hit);
    }
    return hit.ids;
  };
  const encodePairs = (query: string, candidates: readonly RerankCandidate[]): EncodedPair[] => {
    const q = encoder.tokens(query);
    return candidates.map((c) => encoder.pair(q, textTokens(c)));
  };

  function feed(name: string, pairs: readonly EncodedPair[], seq: number, value: (p: EncodedPair, t: number) => number): IdArray {
    const out = inputs.get(name) === 'int32' ? new Int32Array(pairs.length * seq) : new BigInt64Array(pairs.length * seq);
    pairs.forEach((p, i) => {
      for (let t = 0; t < seq; t++) {
        const v = value(p, t);
        if (out instanceof Int32Array) out[i * seq + t] = v;
        else out[i * seq + t] = BigInt(v);
      }
    });
    return out;
  }

  function observe(msPerTokenNow: number, replace: boolean) {
    if (!Number.isFinite(msPerTokenNow) || msPerTokenNow <= 0) return;
    msPerToken = replace ? msPerTokenNow : msPerToken + EWMA_ALPHA * (msPerTokenNow - msPerToken);
  }

  /** One run; logits → relevance in [0, 1]. */
  async function runBatch(pairs: readonly EncodedPair[], signal: AbortSignal | undefined, replaceRate: boolean): Promise<number[]> {
    const seq = Math.max(...pairs.map((p) => p.ids.length));
    const feeds: Record<string, IdArray> = { input_ids: feed('input_ids', pairs, seq, (p, t) => p.ids[t] ?? padId) };
    if (inputs.has('attention_mask')) feeds.attention_mask = feed('attention_mask', pairs, seq, (p, t) => (t < p.ids.length ? 1 : 0));
    if (inputs.has('token_type_ids')) feeds.token_type_ids = feed('token_type_ids', pairs, seq, (p, t) => p.typeIds[t] ?? 0);
    const tokens = pairs.reduce((n, p) => n + p.ids.length, 0);
    // Per real token, so the padding and per-run overhead of typical batches are in the estimate;
    // a run the caller gave up on counts too (on a loaded CPU those are the slow ones).
    const result = await session.run(feeds, [pairs.length, seq], output!, signal, (ms) => observe(ms / tokens, replaceRate));
    opts.onBatch?.({ pairs: pairs.length, tokens, paddedTokens: pairs.length * seq, ms: result.ms });
    const width = result.data.length / pairs.length;
    if (width !== labels || !Number.isInteger(width)) {
      throw new OnnxRerankError('rerank_failed', `model output ${output} has shape [${result.dims.join(', ')}], expected [${pairs.length}, ${labels}]`);
    }
    return pairs.map((_, i) => {
      const logit = width === 1 ? result.data[i]! : result.data[i * 2 + 1]! - result.data[i * 2]!;
      if (Number.isNaN(logit)) throw new OnnxRerankError('rerank_failed', `model output ${output} is NaN`);
      return sigmoid(logit);
    });
  }

  async function scorePairs(pairs: readonly EncodedPair[], signal: AbortSignal | undefined, replaceRate = false): Promise<number[]> {
    const order = pairs.map((_, i) => i).sort((a, b) => pairs[a]!.ids.length - pairs[b]!.ids.length);
    const scores = new Array<number>(pairs.length);
    let left = pairs.reduce((n, p) => n + p.ids.length, 0);
    backlogTokens += left;
    try {
      for (const [from, to] of batches(order.length, batchSize)) {
        // Between runs is where an abort takes effect: a run already in the model cannot be stopped.
        signal?.throwIfAborted();
        const idx = order.slice(from, to);
        const batch = idx.map((i) => pairs[i]!);
        const got = await runBatch(batch, signal, replaceRate);
        const done = batch.reduce((n, p) => n + p.ids.length, 0);
        backlogTokens -= done;
        left -= done;
        idx.forEach((i, k) => (scores[i] = got[k]!));
      }
    } finally {
      backlogTokens -= left;
    }
    return scores;
  }

  const pairTokens = (query: string, candidates: readonly RerankCandidate[]) => encodePairs(query, candidates).map((p) => p.ids.length);
  const closedError = () => new OnnxRerankError('rerank_closed', `onnx reranker ${basename(dir)} is closed`);

  return {
    provider: 'onnx',
    id: `onnx/${basename(dir)}@${digest.slice(0, 12)}`,
    modelPath: model.path,
    maxLength,
    quantized: model.quantized,
    flopsPerToken,
    get msPerToken() {
      return msPerToken;
    },

    async rerank(query: string, candidates: readonly RerankCandidate[], callOpts?: RerankCallOptions): Promise<RerankScore[]> {
      if (closed) throw closedError();
      callOpts?.signal?.throwIfAborted();
      if (candidates.length === 0) return [];
      const scores = await scorePairs(encodePairs(query, candidates), callOpts?.signal);
      return candidates
        .map((c, i) => ({ id: c.id, score: scores[i]!, i }))
        .sort((a, b) => b.score - a.score || a.i - b.i)
        .map(({ id, score }) => ({ id, score }));
    },

    pairTokens,

    estimateMs(query, candidates) {
      const est = pairTokens(query, candidates).map((n) => n * msPerToken);
      // The wait behind other requests' queued runs lands on the first (best-ranked) candidate,
      // so a caller fitting a prefix into its budget reranks fewer when the model is busy.
      if (est.length > 0) est[0]! += backlogTokens * msPerToken;
      return est;
    },

    async warm() {
      if (closed) throw closedError();
      // A typical request's shape: a short query and chunks of a few sentences.
      const length = Math.min(64, maxLength);
      const q = encoder.tokens('what does the user prefer');
      const text = encoder.tokens('the user said they prefer short answers and weekly summaries of their projects. '.repeat(16));
      const pairs = Array.from({ length: Math.min(batchSize, 8) }, () => encoder.pair(q, text.slice(0, Math.max(1, length - q.length - 3))));
      // The first run pays for allocations and kernel selection; the second is what requests will see.
      await scorePairs(pairs, undefined);
      await scorePairs(pairs, undefined, true);
    },

    async close() {
      closed = true;
      await session.close();
    },
  };
}

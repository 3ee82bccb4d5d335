import type { onnx } from 'onnx-proto';
import { DType, GraphBuilder, valueInfo } from './graph.ts';
import { uniform } from './prng.ts';

/** The shape of a BERT cross-encoder (BertForSequenceClassification). */
export interface BertShape {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  vocabSize: number;
  maxPositions: number;
  /** Logits per pair: 1 (a relevance logit, the ms-marco cross-encoders) or 2 (softmax head). */
  labels: 1 | 2;
}

/** One weight tensor: row-major, the layout a MatMul's B input takes ([in, out]). */
interface Weight {
  dims: number[];
  data: Float32Array;
}

export type BertWeights = Map<string, Weight>;

/**
 * Draws every weight from a stream named after the model and the tensor. Dense weights have a
 * standard deviation of 1/√fan-in, so activations keep their scale through the layers and the
 * logits spread over the sigmoid instead of all sitting at 0.5 (a ranking test needs spread).
 */
export function bertWeights(seed: string, s: BertShape): BertWeights {
  const w: BertWeights = new Map();
  const put = (name: string, dims: number[], std: number, mean = 0) => {
    w.set(name, { dims, data: uniform(`${seed}/${name}`, dims.reduce((a, b) => a * b, 1), std, mean) });
  };
  const dense = (name: string, fanIn: number, fanOut: number, gain = 1) => {
    put(`${name}.weight`, [fanIn, fanOut], gain / Math.sqrt(fanIn));
    put(`${name}.bias`, [fanOut], 0.02);
  };
  const norm = (name: string) => {
    put(`${name}.weight`, [s.hidden], 0.05, 1);
    put(`${name}.bias`, [s.hidden], 0.02);
  };
  put('embeddings.word_embeddings.weight', [s.vocabSize, s.hidden], 1);
  put('embeddings.position_embeddings.weight', [s.maxPositions, s.hidden], 0.5);
  put('embeddings.token_type_embeddings.weight', [2, s.hidden], 0.5);
  norm('embeddings.LayerNorm');
  for (let l = 0; l < s.layers; l++) {
    const p = `encoder.layer.${l}`;
    for (const m of ['query', 'key', 'value']) dense(`${p}.attention.self.${m}`, s.hidden, s.hidden);
    dense(`${p}.attention.output.dense`, s.hidden, s.hidden);
    norm(`${p}.attention.output.LayerNorm`);
    dense(`${p}.intermediate.dense`, s.hidden, s.intermediate);
    dense(`${p}.output.dense`, s.intermediate, s.hidden);
    norm(`${p}.output.LayerNorm`);
  }
  dense('pooler.dense', s.hidden, s.hidden);
  dense('classifier', s.hidden, s.labels, 3);
  return w;
}

/**
 * Symmetric per-tensor int8. `limit` 127 is onnxruntime's `quantize_dynamic` default; 63 is its
 * `reduce_range` (7-bit weights), which MatMul weights need on CPUs without VNNI: there the
 * AVX2 u8×s8 kernel adds pairs of products in int16 (vpmaddubsw), 2 × 255 × 127 overflows and
 * saturates, and scores drift (0.32 from fp32 on the tiny model, on an AVX2-only EPYC);
 * 2 × 255 × 63 fits.
 */
function quantize(data: Float32Array, limit: 127 | 63): { q: Int8Array; scale: number } {
  let max = 0;
  for (let i = 0; i < data.length; i++) max = Math.max(max, Math.abs(data[i]!));
  const scale = max > 0 ? max / limit : 1;
  const q = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++) q[i] = Math.max(-limit, Math.min(limit, Math.round(data[i]! / scale)));
  return { q, scale };
}

/**
 * The ONNX graph of BertForSequenceClassification as `optimum` exports it, from standard ops
 * (opset 17): embeddings + LayerNormalization, N post-norm encoder layers (additive attention
 * mask, erf GELU), pooler tanh on [CLS], classifier. With `quantized`, every weight MatMul is
 * DynamicQuantizeLinear → MatMulInteger → Cast → Mul (and the word embeddings a Gather of int8
 * followed by DequantizeLinear): the `model_quantized.onnx` layout, which onnxruntime fuses
 * into its int8 GEMM kernels.
 */
export function bertGraph(name: string, s: BertShape, w: BertWeights, quantized: boolean): onnx.IModelProto {
  const g = new GraphBuilder();
  const H = s.hidden;
  const d = H / s.heads;
  const weight = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`model-gen: no weight ${n}`);
    return t;
  };
  const f32 = (n: string) => g.init(n, weight(n).dims, weight(n).data);
  const quantizedInits = new Map<string, { q: string; scale: string; zp: string }>();
  const q8 = (n: string, limit: 127 | 63) => {
    let done = quantizedInits.get(n);
    if (!done) {
      const { q, scale } = quantize(weight(n).data, limit);
      done = { q: g.init(`${n}_quantized`, weight(n).dims, q), scale: g.floats(`${n}_scale`, [scale], true), zp: g.init(`${n}_zero_point`, [], new Int8Array(1)) };
      quantizedInits.set(n, done);
    }
    return done;
  };

  const dense = (x: string, n: string, out: string): string => {
    let y: string;
    if (quantized) {
      const wq = q8(`${n}.weight`, 63);
      const [xq, xs, xzp] = g.op('DynamicQuantizeLinear', [x], `${out}_x`, {}, 3) as [string, string, string];
      const acc = g.one('MatMulInteger', [xq, wq.q, xzp, wq.zp], `${out}_int32`);
      const scale = g.one('Mul', [xs, wq.scale], `${out}_scale`);
      y = g.one('Mul', [g.one('Cast', [acc], `${out}_float`, { to: DType.FLOAT }), scale], `${out}_matmul`);
    } else {
      y = g.one('MatMul', [x, f32(`${n}.weight`)], `${out}_matmul`);
    }
    return g.one('Add', [y, f32(`${n}.bias`)], out);
  };
  const layerNorm = (x: string, n: string, out: string) => g.one('LayerNormalization', [x, f32(`${n}.weight`), f32(`${n}.bias`)], out, { axis: -1, epsilon: { f: 1e-12 } });

  // Embeddings: positions are 0..S-1, a slice of the table as long as the input.
  let words: string;
  if (quantized) {
    const wq = q8('embeddings.word_embeddings.weight', 127);
    words = g.one('DequantizeLinear', [g.one('Gather', [wq.q, 'input_ids'], 'word_embeddings_int8', { axis: 0 }), wq.scale, wq.zp], 'word_embeddings');
  } else {
    words = g.one('Gather', [f32('embeddings.word_embeddings.weight'), 'input_ids'], 'word_embeddings', { axis: 0 });
  }
  const seqLen = g.one('Shape', ['input_ids'], 'sequence_length', { start: 1, end: 2 });
  const positions = g.one('Slice', [f32('embeddings.position_embeddings.weight'), g.ints('zero_1d', [0]), seqLen, g.ints('axis_0', [0])], 'position_embeddings');
  const types = g.one('Gather', [f32('embeddings.token_type_embeddings.weight'), 'token_type_ids'], 'token_type_embeddings', { axis: 0 });
  const summed = g.one('Add', [g.one('Add', [words, positions], 'embeddings_wp'), types], 'embeddings_sum');
  let x = layerNorm(summed, 'embeddings.LayerNorm', 'embeddings_output');

  // (1 − mask) × −10000 on [B, 1, 1, S]: padding gets exp(−10000) = 0 in float32, so a padded
  // pair scores exactly as it does alone.
  const maskF = g.one('Cast', ['attention_mask'], 'attention_mask_float', { to: DType.FLOAT });
  const inverted = g.one('Sub', [g.floats('one', [1], true), maskF], 'attention_mask_inverted');
  const additive = g.one('Mul', [inverted, g.floats('mask_min', [-10000], true)], 'attention_mask_additive');
  const mask = g.one('Unsqueeze', [additive, g.ints('axes_1_2', [1, 2])], 'extended_attention_mask');

  const headsShape = g.ints('heads_shape', [0, 0, s.heads, d]);
  const hiddenShape = g.ints('hidden_shape', [0, 0, H]);
  const invSqrtD = g.floats('inv_sqrt_head_dim', [1 / Math.sqrt(d)], true);
  const sqrt2 = g.floats('sqrt_2', [Math.SQRT2], true);
  const half = g.floats('half', [0.5], true);
  const one = 'one';
  for (let l = 0; l < s.layers; l++) {
    const p = `encoder.layer.${l}`;
    const t = `layer${l}`;
    const heads = (n: string, perm: number[]) =>
      g.one('Transpose', [g.one('Reshape', [dense(x, `${p}.attention.self.${n}`, `${t}_${n}`), headsShape], `${t}_${n}_heads`)], `${t}_${n}_t`, { perm });
    const q = heads('query', [0, 2, 1, 3]);
    const k = heads('key', [0, 2, 3, 1]);
    const v = heads('value', [0, 2, 1, 3]);
    const scores = g.one('Add', [g.one('Mul', [g.one('MatMul', [q, k], `${t}_qk`), invSqrtD], `${t}_scores_scaled`), mask], `${t}_scores`);
    const probs = g.one('Softmax', [scores], `${t}_probs`, { axis: -1 });
    const ctx = g.one('Reshape', [g.one('Transpose', [g.one('MatMul', [probs, v], `${t}_context_heads`)], `${t}_context_t`, { perm: [0, 2, 1, 3] }), hiddenShape], `${t}_context`);
    const attn = dense(ctx, `${p}.attention.output.dense`, `${t}_attention_dense`);
    x = layerNorm(g.one('Add', [attn, x], `${t}_attention_residual`), `${p}.attention.output.LayerNorm`, `${t}_attention_output`);
    const inter = dense(x, `${p}.intermediate.dense`, `${t}_intermediate`);
    const erf = g.one('Erf', [g.one('Div', [inter, sqrt2], `${t}_gelu_scaled`)], `${t}_gelu_erf`);
    const gelu = g.one('Mul', [g.one('Mul', [inter, half], `${t}_gelu_half`), g.one('Add', [erf, one], `${t}_gelu_erf1`)], `${t}_gelu`);
    const out = dense(gelu, `${p}.output.dense`, `${t}_output_dense`);
    x = layerNorm(g.one('Add', [out, x], `${t}_output_residual`), `${p}.output.LayerNorm`, `${t}_output`);
  }
  const cls = g.one('Gather', [x, g.ints('cls_index', [0], true)], 'cls_state', { axis: 1 });
  const pooled = g.one('Tanh', [dense(cls, 'pooler.dense', 'pooler_dense')], 'pooler_output');
  const logits = dense(pooled, 'classifier', 'logits');

  return {
    irVersion: 8,
    producerName: 'relay-memory model-gen',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name,
      node: g.nodes,
      initializer: g.initializers,
      input: ['input_ids', 'attention_mask', 'token_type_ids'].map((n) => valueInfo(n, DType.INT64, ['batch_size', 'sequence_length'])),
      output: [valueInfo(logits, DType.FLOAT, ['batch_size', s.labels])],
    },
  };
}

/** Multiply-adds per token of the encoder's dense layers, ×2: the model's FLOPs per token at short lengths. */
export function flopsPerToken(s: BertShape, seqLen = 0): number {
  const dense = 4 * s.hidden * s.hidden + 2 * s.hidden * s.intermediate;
  const attention = 2 * seqLen * s.hidden;
  return 2 * s.layers * (dense + attention);
}

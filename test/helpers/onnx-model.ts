import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** The vocabulary of the test tokenizer; a word's id is its index. */
export const TINY_VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'the', 'cat', 'sat', 'on', 'mat', 'dog', 'ran', 'far', 'away', 'hello', 'world', 'walk', '##ing', '##s', '.', ','];

export interface TinyModel {
  dir: string;
  hidden: number;
  /** Row `id` of the embedding matrix the model looks token ids up in. */
  row(id: number): Float32Array;
  /** Added to every token's row when the model takes token_type_ids (type 0 only). */
  typeRow: Float32Array | null;
  /** Token ids as the tokenizer gives them, e.g. `ids('the cat')` → [2, 4, 5, 3]. */
  ids(text: string): number[];
}

/** A small deterministic matrix: no two rows parallel, no zero row. */
function matrix(rows: number, cols: number, salt: number): Float32Array {
  const m = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m[r * cols + c] = Math.sin(r * 12.9898 + c * 78.233 + salt) * 0.5 + (c === r % cols ? 1 : 0);
  return m;
}

function tokenizerJson(maxLength: number | null): object {
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: maxLength === null ? null : { direction: 'Right', max_length: maxLength, strategy: 'LongestFirst', stride: 0 },
    padding: null,
    added_tokens: [special(0, '[PAD]'), special(1, '[UNK]'), special(2, '[CLS]'), special(3, '[SEP]')],
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(TINY_VOCAB.map((w, i) => [w, i])),
    },
  };
}

function tensorInput(name: string, elemType: number, dims: Array<string | number>) {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}

/**
 * Writes a sentence-transformers-like folder into `dir`: a WordPiece tokenizer.json over
 * `TINY_VOCAB`, and a model.onnx that looks each token id up in a [vocab, hidden] matrix
 * (plus a token-type row when `tokenTypes`) and returns it as `last_hidden_state`. Mean pooling
 * of that is easy to compute by hand, which is the point.
 */
export function writeTinyModel(dir: string, opts: { hidden: number; tokenTypes?: boolean; maxLength?: number | null }): TinyModel {
  mkdirSync(dir, { recursive: true });
  const { hidden } = opts;
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const INT64 = onnx.TensorProto.DataType.INT64;
  const emb = matrix(TINY_VOCAB.length, hidden, 0.5);
  const types = opts.tokenTypes ? matrix(2, hidden, 3.25) : null;
  const initializer = [{ name: 'embeddings', dims: [TINY_VOCAB.length, hidden], dataType: FLOAT, rawData: Buffer.from(emb.buffer) }];
  const input = [tensorInput('input_ids', INT64, ['batch', 'sequence']), tensorInput('attention_mask', INT64, ['batch', 'sequence'])];
  const node = [];
  if (types) {
    initializer.push({ name: 'type_embeddings', dims: [2, hidden], dataType: FLOAT, rawData: Buffer.from(types.buffer) });
    input.push(tensorInput('token_type_ids', INT64, ['batch', 'sequence']));
    node.push(
      { opType: 'Gather', input: ['embeddings', 'input_ids'], output: ['words'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      { opType: 'Gather', input: ['type_embeddings', 'token_type_ids'], output: ['kinds'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      { opType: 'Add', input: ['words', 'kinds'], output: ['last_hidden_state'] },
    );
  } else {
    node.push({ opType: 'Gather', input: ['embeddings', 'input_ids'], output: ['last_hidden_state'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] });
  }
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'relay-memory-tests',
    opsetImport: [{ domain: '', version: 15 }],
    graph: {
      name: 'tiny',
      node,
      initializer,
      input,
      output: [tensorInput('last_hidden_state', FLOAT, ['batch', 'sequence', hidden])],
    },
  });
  writeFileSync(join(dir, 'model.onnx'), onnx.ModelProto.encode(model).finish());
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(opts.maxLength ?? null)));
  const index = new Map(TINY_VOCAB.map((w, i) => [w, i]));
  return {
    dir,
    hidden,
    row: (id) => emb.slice(id * hidden, (id + 1) * hidden),
    typeRow: types ? types.slice(0, hidden) : null,
    ids(text) {
      // The test vocabulary has whole words only (plus ##s, ##ing), which is enough for the texts the tests use.
      const out = [2];
      for (const w of text.toLowerCase().match(/[a-z]+|[.,]/g) ?? []) {
        if (index.has(w)) out.push(index.get(w)!);
        else if (w.endsWith('ing') && index.has(w.slice(0, -3))) out.push(index.get(w.slice(0, -3))!, index.get('##ing')!);
        else if (w.endsWith('s') && index.has(w.slice(0, -1))) out.push(index.get(w.slice(0, -1))!, index.get('##s')!);
        else out.push(1);
      }
      out.push(3);
      return out;
    },
  };
}

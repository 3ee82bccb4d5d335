import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildVocab, tokenizerJson } from './model-gen/vocab.ts';
import { longestFirst, pairEncoder, pairTemplate, type TextTokenizer } from './onnx-tokenize.ts';

async function generatedTokenizer(): Promise<{ tokenizer: TextTokenizer; json: Record<string, unknown>; vocab: string[] }> {
  const { Tokenizer } = await import('@huggingface/tokenizers');
  const vocab = buildVocab(1024);
  const json = tokenizerJson(vocab, 128) as Record<string, unknown>;
  return { tokenizer: new Tokenizer(json, {}) as TextTokenizer, json, vocab };
}

test('a pair is [CLS] query [SEP] text [SEP], token type 1 on the text side', async () => {
  const { tokenizer, json, vocab } = await generatedTokenizer();
  const enc = pairEncoder(tokenizer, json.post_processor, 128);
  const pair = enc.pair(enc.tokens('the dog'), enc.tokens('ran far'));
  assert.deepEqual(
    pair.ids.map((id) => vocab[id]),
    ['[CLS]', 'the', 'dog', '[SEP]', 'ran', 'far', '[SEP]'],
  );
  assert.deepEqual(pair.typeIds, [0, 0, 0, 0, 1, 1, 1]);
});

test('any text tokenizes without [UNK]: the vocabulary has every character and ## piece', async () => {
  const { tokenizer, vocab } = await generatedTokenizer();
  const ids = tokenizer.encode('Zyxw 12345, qq-42!', { add_special_tokens: false }).ids;
  assert.ok(ids.length > 0 && !ids.includes(vocab.indexOf('[UNK]')));
});

test('longest_first keeps the short side whole and cuts the long one', () => {
  assert.deepEqual(longestFirst(5, 10, 20), [5, 10]);
  assert.deepEqual(longestFirst(5, 100, 20), [5, 15]);
  assert.deepEqual(longestFirst(100, 5, 20), [15, 5]);
  assert.deepEqual(longestFirst(30, 40, 21), [10, 11]);
  assert.deepEqual(longestFirst(40, 30, 21), [11, 10]);
});

test('truncation caps the whole pair, special tokens included', async () => {
  const { tokenizer, json } = await generatedTokenizer();
  const enc = pairEncoder(tokenizer, json.post_processor, 16);
  const pair = enc.pair(enc.tokens('what does the user like'), enc.tokens('tea '.repeat(100)));
  assert.equal(pair.ids.length, 16);
  assert.equal(pair.typeIds.length, 16);
  assert.throws(() => pairEncoder(tokenizer, json.post_processor, 4), /no room/);
});

test('BERT and RoBERTa post-processors give their own pair layouts', async () => {
  const { tokenizer } = await generatedTokenizer();
  assert.deepEqual(pairTemplate({ type: 'BertProcessing', cls: ['[CLS]', 101], sep: ['[SEP]', 102] }, tokenizer), [
    { special: [101], type: 0 },
    { seq: 'A', type: 0 },
    { special: [102], type: 0 },
    { seq: 'B', type: 1 },
    { special: [102], type: 1 },
  ]);
  const roberta = pairTemplate({ type: 'Sequence', processors: [{ type: 'ByteLevel' }, { type: 'RobertaProcessing', cls: ['<s>', 0], sep: ['</s>', 2] }] }, tokenizer);
  assert.deepEqual(roberta, [
    { special: [0], type: 0 },
    { seq: 'A', type: 0 },
    { special: [2, 2], type: 0 },
    { seq: 'B', type: 0 },
    { special: [2], type: 0 },
  ]);
  assert.deepEqual(pairTemplate(null, tokenizer), [
    { seq: 'A', type: 0 },
    { seq: 'B', type: 0 },
  ]);
});

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/index.ts';
import { createEmbedder, createOnnxEmbedder, EmbedderError } from '../../src/embed/index.ts';
import { writeTinyModel, type TinyModel } from '../helpers/onnx-model.ts';

/** What the embedder must give: the mean of the token rows (plus the type row), L2-normalised. */
function expected(model: TinyModel, ids: number[]): number[] {
  const sum = new Float64Array(model.hidden);
  for (const id of ids) {
    const row = model.row(id);
    for (let h = 0; h < model.hidden; h++) sum[h]! += row[h]! + (model.typeRow?.[h] ?? 0);
  }
  const mean = Array.from(sum, (x) => x / ids.length);
  const norm = Math.hypot(...mean);
  return mean.map((x) => x / norm);
}

function assertClose(actual: Float32Array, want: number[]): void {
  assert.equal(actual.length, want.length);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(actual[i]! - want[i]!) < 1e-5, `component ${i}: ${actual[i]} vs ${want[i]}`);
}

describe('onnx embedder (a tiny model written by the test)', () => {
  const root = mkdtempSync(join(tmpdir(), 'relay-onnx-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('mean-pools the first output over the attention mask and normalises; id names folder, model hash and D', async () => {
    const model = writeTinyModel(join(root, 'tiny-minilm'), { hidden: 16 });
    const e = await createOnnxEmbedder({ modelDir: model.dir, dimensions: 16, batchSize: 8 });
    try {
      const sha = createHash('sha256').update(readFileSync(join(model.dir, 'model.onnx'))).digest('hex');
      assert.equal(e.id, `onnx/tiny-minilm@${sha.slice(0, 12)}/d16`);
      const text = 'The cats sat on the mat.';
      assert.deepEqual(model.ids(text), [2, 4, 5, 17, 6, 7, 4, 8, 18, 3]);
      const [v] = await e.embed([text]);
      assertClose(v!, expected(model, model.ids(text)));
    } finally {
      await e.close?.();
    }
  });

  it('gives a text the same vector alone or padded in a batch with longer ones', async () => {
    const model = writeTinyModel(join(root, 'pad'), { hidden: 8 });
    const e = await createOnnxEmbedder({ modelDir: model.dir, dimensions: 8, batchSize: 3 });
    try {
      const texts = ['dog', 'hello world, the dog ran far away walking', 'the cat', 'hello', 'cat sat on mat'];
      const batched = await e.embed(texts);
      for (let i = 0; i < texts.length; i++) {
        const [alone] = await e.embed([texts[i]!]);
        assertClose(batched[i]!, Array.from(alone!));
        assertClose(batched[i]!, expected(model, model.ids(texts[i]!)));
      }
    } finally {
      await e.close?.();
    }
  });

  it('feeds token_type_ids when the model declares them', async () => {
    const model = writeTinyModel(join(root, 'typed'), { hidden: 8, tokenTypes: true });
    const e = await createOnnxEmbedder({ modelDir: model.dir, dimensions: 8, batchSize: 4 });
    try {
      const [v] = await e.embed(['hello world']);
      assertClose(v!, expected(model, model.ids('hello world')));
    } finally {
      await e.close?.();
    }
  });

  it("truncates to the tokenizer's max length, keeping the closing [SEP]", async () => {
    const model = writeTinyModel(join(root, 'short'), { hidden: 8, maxLength: 5 });
    const e = await createOnnxEmbedder({ modelDir: model.dir, dimensions: 8, batchSize: 4 });
    try {
      const [v] = await e.embed(['the dog ran far away on the mat']);
      // [CLS] the dog ran [SEP]
      assertClose(v!, expected(model, [2, 4, 9, 10, 3]));
      // sentence_bert_config.json's max_seq_length is what sentence-transformers itself uses.
      writeFileSync(join(model.dir, 'sentence_bert_config.json'), JSON.stringify({ max_seq_length: 3, do_lower_case: false }));
      const e3 = await createEmbedder(loadConfig({ RELAY_EMBEDDER: 'onnx', RELAY_ONNX_MODEL_DIR: model.dir, RELAY_EMBED_DIM: '8' }).embed);
      const [w] = await e3.embed(['the dog ran far away']);
      assertClose(w!, expected(model, [2, 4, 3]));
      await e3.close?.();
    } finally {
      await e.close?.();
    }
  });

  it('refuses a model whose hidden size is not D, and a folder without the model', async () => {
    const model = writeTinyModel(join(root, 'wide'), { hidden: 12 });
    await assert.rejects(createOnnxEmbedder({ modelDir: model.dir, dimensions: 384, batchSize: 4 }), (err: unknown) => {
      assert.ok(err instanceof EmbedderError);
      assert.equal(err.code, 'embedder_unavailable');
      assert.match(err.message, /hidden size is 12, but RELAY_EMBED_DIM is 384/);
      return true;
    });
    await assert.rejects(createOnnxEmbedder({ modelDir: join(root, 'nothing-here'), dimensions: 8, batchSize: 4 }), /no model\.onnx/);
  });

  it('rejects with the caller’s reason when aborted', async () => {
    const model = writeTinyModel(join(root, 'abort'), { hidden: 8 });
    const e = await createOnnxEmbedder({ modelDir: model.dir, dimensions: 8, batchSize: 4 });
    try {
      const reason = new Error('gone');
      await assert.rejects(e.embed(['hello'], { signal: AbortSignal.abort(reason) }), (err) => err === reason);
      assert.deepEqual(await e.embed([]), []);
    } finally {
      await e.close?.();
    }
  });
});

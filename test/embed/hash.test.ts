import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { createEmbedder, createHashEmbedder, type Embedder } from '../../src/embed/index.ts';
import { hashFeatures, hashWords } from '../../src/embed/hash.ts';
import { loadConfig } from '../../src/config/index.ts';

const PINNED_TEXT = 'Relay Memory keeps what Ada said: she prefers green tea, lives in Lisbon, and walks her dog Émile at 7:30.';

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot;
}

function norm(v: Float32Array): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

function digest(v: Float32Array): string {
  return createHash('sha256').update(Buffer.from(v.buffer, v.byteOffset, v.byteLength)).digest('hex');
}

function assertUnit(v: Float32Array, dim: number): void {
  assert.equal(v.length, dim);
  assert.ok(v.every((x) => Number.isFinite(x)));
  assert.ok(Math.abs(norm(v) - 1) < 1e-5, `norm ${norm(v)}`);
}

describe('hash embedder', () => {
  const make = (d = 384): Promise<Embedder> => createHashEmbedder(d);

  it('is the default embedder, with id hash-v1/d<D>', async () => {
    const e = await createEmbedder(loadConfig({}).embed);
    assert.equal(e.id, 'hash-v1/d384');
    assert.equal(e.dimensions, 384);
    assert.equal((await make(64)).id, 'hash-v1/d64');
  });

  it('pins hash-v1: any change to the algorithm changes this vector (and must bump the version)', async () => {
    const [v] = await (await make()).embed([PINNED_TEXT]);
    assertUnit(v!, 384);
    const expected = [0, 0.13399285078048706, 0, -0.0893285721540451, 0, 0, -0.04466428607702255, 0];
    assert.deepEqual(Array.from(v!.slice(0, 8)), expected);
    assert.equal(v!.filter((x) => x !== 0).length, 104);
    assert.equal(digest(v!), 'e47890a020479e5d6a755a19f2503d0dcea9a7792fdb24278c4763406a7c33df');
  });

  it('normalises words: NFKC, lower case, split on anything but letters, marks and digits', () => {
    assert.deepEqual(hashWords('Ｈｅｌｌｏ, WORLD!! ﬁne—café 42nd'), ['hello', 'world', 'fine', 'café', '42nd']);
    assert.deepEqual(hashWords('नमस्ते दुनिया'), ['नमस्ते', 'दुनिया']);
    const f = hashFeatures('the cat the');
    assert.deepEqual([...f.get('word')!], [['the', 2], ['cat', 1]]);
    assert.deepEqual([...f.get('bigram')!], [['the cat', 1], ['cat the', 1]]);
    assert.deepEqual([...f.get('trigram')!], [['<th', 2], ['the', 2], ['he>', 2], ['<ca', 1], ['cat', 1], ['at>', 1]]);
    // Trigrams are over code points: an astral letter is never cut in half.
    assert.deepEqual([...hashFeatures('𠀀b').get('trigram')!.keys()], ['<𠀀b', '𠀀b>']);
  });

  it('puts similar texts closer than unrelated ones', async () => {
    const e = await make();
    const [q, near, far] = await e.embed([
      'Ada prefers green tea in the morning',
      'In the mornings Ada likes to drink green tea',
      'The quarterly tax report is due on Friday',
    ]);
    assert.ok(cosine(q!, near!) > cosine(q!, far!) + 0.2, `${cosine(q!, near!)} vs ${cosine(q!, far!)}`);
    // Inflections share trigrams even without a shared word.
    const [walk, walking, bank] = await e.embed(['walking', 'walked', 'banker']);
    assert.ok(cosine(walk!, walking!) > cosine(walk!, bank!));
  });

  it('gives a valid unit vector for text with no letters or digits, and tells such texts apart', async () => {
    const e = await make();
    const [empty, blank, bang, smile, smile2] = await e.embed(['', '   \n\t', '!!!', '🙂', '🙂']);
    for (const v of [empty, blank, bang, smile]) assertUnit(v!, 384);
    assert.deepEqual(empty, blank);
    assert.notDeepEqual(bang, smile);
    assert.deepEqual(smile, smile2);
  });

  it('works for tiny and odd dimensions', async () => {
    for (const d of [1, 2, 3, 383, 1536]) {
      const [v] = await (await make(d)).embed([PINNED_TEXT]);
      assertUnit(v!, d);
    }
  });

  it('is the same in a separate node process', async () => {
    const script = `
      import { createHashEmbedder } from './src/embed/index.ts';
      const e = await createHashEmbedder(384);
      const [v] = await e.embed([${JSON.stringify(PINNED_TEXT)}]);
      process.stdout.write(JSON.stringify(Array.from(v)));
    `;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.status, 0, run.stderr);
    const [here] = await (await make()).embed([PINNED_TEXT]);
    assert.deepEqual(JSON.parse(run.stdout), Array.from(here!));
  });

  it('returns one vector per text, in order, and honours an aborted signal', async () => {
    const e = await make(32);
    const texts = ['a', 'b', 'a'];
    const out = await e.embed(texts);
    assert.equal(out.length, 3);
    assert.deepEqual(out[0], out[2]);
    assert.notDeepEqual(out[0], out[1]);
    assert.deepEqual(await e.embed([]), []);
    const reason = new Error('caller gone');
    await assert.rejects(e.embed(texts, { signal: AbortSignal.abort(reason) }), (err) => err === reason);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createLexicalReranker, scoreLexical, type RerankCandidate } from '../../src/rerank/index.ts';

const cand = (id: string, text: string, score = 0): RerankCandidate => ({ id, text, score });

describe('lexical reranker (BM25 over the candidates, blended with the vector score)', () => {
  it('puts the candidate that has the query words first when vector scores are equal', async () => {
    const r = createLexicalReranker();
    const out = await r.rerank('where does alice live', [
      cand('a', 'bob likes green tea', 0.3),
      cand('b', 'alice moved to lisbon, she lives near the river', 0.3),
      cand('c', 'the weather was cold', 0.3),
    ]);
    assert.deepEqual(
      out.map((s) => s.id),
      ['b', 'a', 'c'],
    );
    assert.equal(r.provider, 'lexical');
    assert.match(r.id, /^lexical\/bm25-v1@a0\.5$/);
  });

  it('computes α·BM25/max + (1−α)·(v+1)/2 exactly', () => {
    const scores = scoreLexical('apple', [cand('x', 'apple pie', 0.6), cand('y', 'banana bread', -0.2)]);
    assert.ok(Math.abs(scores[0]! - (0.5 * 1 + 0.5 * 0.8)) < 1e-12);
    assert.ok(Math.abs(scores[1]! - (0.5 * 0 + 0.5 * 0.4)) < 1e-12);
  });

  it('α = 0 is the vector order and α = 1 ignores the vector score', async () => {
    const cs = [cand('a', 'nothing relevant', 0.9), cand('b', 'rare word here', -0.9), cand('c', 'rare rare word', 0.1)];
    const vectorOnly = await createLexicalReranker({ alpha: 0 }).rerank('rare', cs);
    assert.deepEqual(
      vectorOnly.map((s) => s.id),
      ['a', 'c', 'b'],
    );
    assert.ok(Math.abs(vectorOnly[0]!.score - 0.95) < 1e-12);
    const lexicalOnly = await createLexicalReranker({ alpha: 1 }).rerank('rare', cs);
    assert.deepEqual(
      lexicalOnly.map((s) => s.id),
      ['c', 'b', 'a'],
    );
    assert.equal(lexicalOnly[0]!.score, 1);
    assert.equal(lexicalOnly[2]!.score, 0);
  });

  it('takes IDF from the candidate set: a word every candidate has counts less than a rare one', async () => {
    const out = await createLexicalReranker({ alpha: 1 }).rerank('memory paris', [
      cand('a', 'memory memory memory of the office'),
      cand('b', 'memory of paris'),
      cand('c', 'memory of the garden'),
      cand('d', 'memory of a dog'),
    ]);
    assert.equal(out[0]!.id, 'b');
  });

  it('normalises length: the same match in a shorter text scores higher', async () => {
    const out = await createLexicalReranker({ alpha: 1 }).rerank('piano', [
      cand('long', 'she mentioned in passing during a very long conversation about many unrelated things that she plays piano'),
      cand('short', 'she plays piano'),
    ]);
    assert.deepEqual(
      out.map((s) => s.id),
      ['short', 'long'],
    );
  });

  it('tokenises like the hash embedder: NFKC, lower case, letters and digits', async () => {
    const out = await createLexicalReranker({ alpha: 1 }).rerank('ＣＡＦÉ 42', [cand('a', 'tea at noon'), cand('b', 'the café on street 42!')]);
    assert.equal(out[0]!.id, 'b');
    assert.equal(out[0]!.score, 1);
  });

  it('is deterministic, and ties keep the search order', async () => {
    const r = createLexicalReranker();
    const cs = [cand('1', 'same text', 0.2), cand('2', 'same text', 0.2), cand('3', 'other', 0.2), cand('4', 'same text', 0.2)];
    const first = await r.rerank('same', cs);
    assert.deepEqual(
      first.map((s) => s.id),
      ['1', '2', '4', '3'],
    );
    for (let i = 0; i < 5; i++) assert.deepEqual(await createLexicalReranker().rerank('same', cs), first);
  });

  it('a query with no words falls back to the vector order', async () => {
    const out = await createLexicalReranker().rerank('?!', [cand('a', 'x', 0.1), cand('b', 'y', 0.5)]);
    assert.deepEqual(
      out.map((s) => s.id),
      ['b', 'a'],
    );
  });

  it('scores lie in [0, 1] and cover every candidate once, whatever the input (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string(),
        fc.array(fc.record({ text: fc.string(), score: fc.oneof(fc.double(), fc.constantFrom(Number.NaN, Infinity, -5, 5)) }), { maxLength: 12 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (query, raw, alpha) => {
          const cs = raw.map((c, i) => ({ id: `c${i}`, ...c }));
          const out = await createLexicalReranker({ alpha }).rerank(query, cs);
          assert.equal(out.length, cs.length);
          assert.deepEqual(new Set(out.map((s) => s.id)), new Set(cs.map((c) => c.id)));
          for (let i = 0; i < out.length; i++) {
            assert.ok(out[i]!.score >= 0 && out[i]!.score <= 1, `score ${out[i]!.score}`);
            if (i > 0) assert.ok(out[i - 1]!.score >= out[i]!.score);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('rejects an aborted call and bad options', async () => {
    const ac = new AbortController();
    ac.abort(new Error('gone'));
    await assert.rejects(createLexicalReranker().rerank('q', [cand('a', 'x')], { signal: ac.signal }), /gone/);
    assert.throws(() => createLexicalReranker({ alpha: 1.5 }), RangeError);
    assert.throws(() => createLexicalReranker({ b: -1 }), RangeError);
    assert.throws(() => createLexicalReranker({ k1: Number.NaN }), RangeError);
  });
});

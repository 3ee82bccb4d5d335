import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { splitSpans, splitText } from '../../src/embed/index.ts';

/** Whitespace-separated words, as a reader would count them. */
const wordsOf = (s: string) => s.split(/\s+/u).filter(Boolean);

/** Every word of `words` found in `chunks`, in order (a word may be found again in an overlap). */
function inOrder(words: string[], chunks: string[]): boolean {
  let c = 0;
  let w = 0;
  let chunkWords = wordsOf(chunks[0] ?? '');
  for (const word of words) {
    for (;;) {
      const at = chunkWords.indexOf(word, w);
      if (at >= 0) {
        w = at + 1;
        break;
      }
      if (++c >= chunks.length) return false;
      chunkWords = wordsOf(chunks[c]!);
      w = 0;
    }
  }
  return true;
}

const word = fc.oneof(
  fc.stringMatching(/^[a-z]{1,12}$/),
  fc.constantFrom('Dr.', 'e.g.', '3.14', 'naïve', 'café', '東京タワー', '🙂', '“quoted”', "don't", 'x'),
);
const sentence = fc
  .tuple(fc.array(word, { minLength: 1, maxLength: 30 }), fc.constantFrom('.', '!', '?', '', '。'))
  .map(([ws, end]) => ws.join(' ') + end);
const text = fc
  .tuple(fc.array(sentence, { minLength: 0, maxLength: 25 }), fc.constantFrom(' ', '  ', '\n', '\n\n', '\t'))
  .map(([ss, sep]) => ss.join(sep));
const opts = fc.integer({ min: 20, max: 400 }).chain((maxChars) => fc.record({ maxChars: fc.constant(maxChars), overlapChars: fc.integer({ min: 0, max: maxChars - 1 }) }));

describe('splitText', () => {
  it('keeps text of at most maxChars as one trimmed chunk, and blank text as none', () => {
    assert.deepEqual(splitText('  Hello there.  ', { maxChars: 50, overlapChars: 10 }), ['Hello there.']);
    assert.deepEqual(splitText('x'.repeat(50), { maxChars: 50, overlapChars: 10 }), ['x'.repeat(50)]);
    assert.deepEqual(splitText(' \n\t ', { maxChars: 50, overlapChars: 10 }), []);
    assert.deepEqual(splitText('', { maxChars: 50, overlapChars: 0 }), []);
  });

  it('packs whole sentences and overlaps with whole trailing sentences', () => {
    const text = 'One is here. Two is there. Three is near. Four is far. Five is gone.';
    assert.deepEqual(splitText(text, { maxChars: 30, overlapChars: 0 }), ['One is here. Two is there.', 'Three is near. Four is far.', 'Five is gone.']);
    assert.deepEqual(splitText(text, { maxChars: 30, overlapChars: 15 }), [
      'One is here. Two is there.',
      'Two is there. Three is near.',
      'Three is near. Four is far.',
      'Four is far. Five is gone.',
    ]);
  });

  it('cuts a long sentence between words, overlapping by whole words, and a huge word only when it must', () => {
    const long = 'alpha beta gamma delta epsilon zeta eta theta iota kappa';
    const chunks = splitText(long, { maxChars: 20, overlapChars: 6 });
    // "epsilon" (7 characters) is longer than the overlap: that cut has none.
    assert.deepEqual(chunks, ['alpha beta gamma', 'gamma delta epsilon', 'zeta eta theta iota', 'iota kappa']);
    assert.deepEqual(splitText(`ok ${'x'.repeat(25)} end`, { maxChars: 10, overlapChars: 0 }), ['ok', 'xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxx end']);
    // A script written without spaces is cut at its word boundaries, not every maxChars.
    const ja = '東京タワーは高いです東京タワーは高いです東京タワーは高いです';
    const pieces = splitText(ja, { maxChars: 12, overlapChars: 0 });
    assert.equal(pieces.join(''), ja);
    assert.ok(pieces.every((p) => p.length <= 12 && !p.startsWith('ワー')));
  });

  it('never splits a surrogate pair', () => {
    const emoji = '🙂'.repeat(30);
    const chunks = splitText(emoji, { maxChars: 9, overlapChars: 0 });
    assert.equal(chunks.join(''), emoji);
    for (const c of chunks) assert.doesNotMatch(c, /^[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/);
  });

  it('refuses options it cannot honour', () => {
    assert.throws(() => splitText('x', { maxChars: 1, overlapChars: 0 }), RangeError);
    assert.throws(() => splitText('x', { maxChars: 10, overlapChars: 10 }), RangeError);
    assert.throws(() => splitText('x', { maxChars: 10, overlapChars: -1 }), RangeError);
  });

  it('property: chunks are non-empty, trimmed, at most maxChars, deterministic', () => {
    fc.assert(
      fc.property(text, opts, (t, o) => {
        const chunks = splitText(t, o);
        for (const c of chunks) {
          assert.ok(c.length > 0 && c.length <= o.maxChars, `chunk of ${c.length} > ${o.maxChars}`);
          assert.equal(c, c.trim());
        }
        assert.deepEqual(splitText(t, o), chunks);
      }),
      { numRuns: 300 },
    );
  });

  it('property: every word of the input appears in some chunk, in order', () => {
    fc.assert(
      fc.property(text, opts, (t, o) => {
        assert.ok(inOrder(wordsOf(t), splitText(t, o)));
      }),
      { numRuns: 300 },
    );
  });

  it('property: chunks are slices of the input that cover all of it, advance, and overlap by at most overlapChars', () => {
    fc.assert(
      fc.property(text, opts, (t, o) => {
        const spans = splitSpans(t, o);
        const covered = new Uint8Array(t.length);
        spans.forEach((s, i) => {
          covered.fill(1, s.start, s.end);
          const prev = spans[i - 1];
          if (!prev) return;
          assert.ok(s.start > prev.start && s.end > prev.end, 'chunks move forward');
          assert.ok(Math.max(0, prev.end - s.start) <= o.overlapChars, 'overlap within overlapChars');
        });
        for (let i = 0; i < t.length; i++) if (/\S/u.test(t[i]!)) assert.equal(covered[i], 1, `character ${i} is in no chunk`);
      }),
      { numRuns: 300 },
    );
  });
});

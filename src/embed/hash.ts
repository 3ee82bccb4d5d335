import xxhash from 'xxhash-wasm';
import type { Embedder } from './types.ts';
import { normalized } from './vector.ts';

/**
 * The lexical hashing embedder: no model, no network, the same vector for the same text in
 * every process and release. docs/embedders.md states the algorithm; `HASH_VERSION` names it,
 * and any change to what it computes must bump it (stored rows carry the id).
 */
export const HASH_VERSION = 'hash-v1';

/**
 * One xxh32 seed per kind of feature, so a word, a bigram and a trigram that happen to be the
 * same string land in unrelated places (and nothing needs concatenating before hashing).
 */
const SEED = { word: 1, bigram: 2, trigram: 3, symbol: 4, empty: 5 } as const;

/** Words carry the meaning; bigrams add word order; trigrams tolerate inflection and typos without drowning the words. */
const WEIGHT = { word: 1, bigram: 0.5, trigram: 0.25, symbol: 1, empty: 1 } as const;

// Marks belong to the letter before them (Devanagari vowel signs, Hebrew points): splitting
// on them would tear words of many scripts apart.
const WORD = /[\p{L}\p{M}\p{N}]+/gu;
const SURROGATE = /[\uD800-\uDFFF]/;
const NOT_SPACE = /\S/gu;

type Kind = keyof typeof SEED;
type H32 = (input: string, seed?: number) => number;

/** Lower-cased NFKC words, in order. */
export function hashWords(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(WORD) ?? [];
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** Character trigrams of `<word>`, over code points so an astral character is never cut in half. */
function addTrigrams(map: Map<string, number>, word: string): void {
  const bounded = `<${word}>`;
  if (!SURROGATE.test(word)) {
    for (let i = 0; i + 3 <= bounded.length; i++) count(map, bounded.slice(i, i + 3));
    return;
  }
  const cps = Array.from(bounded);
  for (let i = 0; i + 3 <= cps.length; i++) count(map, cps[i]! + cps[i + 1]! + cps[i + 2]!);
}

/** Feature counts of a text, by kind. */
export function hashFeatures(text: string): Map<Kind, Map<string, number>> {
  const words = hashWords(text);
  const features = new Map<Kind, Map<string, number>>();
  const of = (kind: Kind) => {
    let m = features.get(kind);
    if (!m) features.set(kind, (m = new Map()));
    return m;
  };
  if (words.length > 0) {
    const unigrams = of('word');
    const trigrams = of('trigram');
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      count(unigrams, w);
      if (i > 0) count(of('bigram'), `${words[i - 1]!} ${w}`);
      addTrigrams(trigrams, w);
    }
    return features;
  }
  // No word at all ("!!!", "🙂"): the symbols still tell such texts apart.
  const symbols = text.normalize('NFKC').match(NOT_SPACE);
  if (symbols) for (const s of symbols) count(of('symbol'), s);
  else count(of('empty'), '');
  return features;
}

/** The vector of one text, as `hash-v1` defines it. */
export function hashVector(h32: H32, text: string, dimensions: number): Float32Array {
  const acc = new Float64Array(dimensions);
  for (const [kind, counts] of hashFeatures(text)) {
    const seed = SEED[kind];
    const weight = WEIGHT[kind];
    for (const [feature, tf] of counts) {
      const h = h32(feature, seed);
      // Bit 0 gives the sign, the other 31 bits the index: disjoint bits of one hash, so the
      // sign does not depend on the slot (which keeps colliding features from adding up with a bias).
      const index = (h >>> 1) % dimensions;
      acc[index]! += ((h & 1) === 0 ? 1 : -1) * weight * (1 + Math.log(tf));
    }
  }
  // Features that cancel out exactly in every slot leave nothing to normalise; such a text gets the
  // empty text's vector rather than a zero vector (whose cosine is NaN).
  return normalized(acc) ?? hashVector(h32, '', dimensions);
}

/** The `hash` embedder of D dimensions; its id is `hash-v1/d<D>`. */
export async function createHashEmbedder(dimensions: number): Promise<Embedder> {
  if (!Number.isInteger(dimensions) || dimensions < 1) throw new RangeError(`dimensions must be a positive integer, got ${dimensions}`);
  const { h32 } = await xxhash();
  return {
    id: `${HASH_VERSION}/d${dimensions}`,
    dimensions,
    async embed(texts, opts) {
      opts?.signal?.throwIfAborted();
      return texts.map((t) => hashVector(h32, t, dimensions));
    },
  };
}

/** How long text is cut into chunks (RELAY_CHUNK_MAX_CHARS, RELAY_CHUNK_OVERLAP_CHARS). */
export interface SplitOptions {
  /** No chunk is longer than this (UTF-16 code units, as `String.length` counts). At least 2. */
  maxChars: number;
  /** Up to this many characters of whole trailing sentences (or words) of a chunk open the next one too. Less than `maxChars`; 0 for none. */
  overlapChars: number;
}

/** A half-open range `[start, end)` of the input that starts and ends on a non-space character. */
export interface Span {
  start: number;
  end: number;
}

// A fixed locale: the process's default one must not change where text is cut.
const sentences = new Intl.Segmenter('en', { granularity: 'sentence' });
const words = new Intl.Segmenter('en', { granularity: 'word' });
const NON_SPACE_RUN = /\S+/gu;
const NOT_SPACE = /\S/u;

/** `[start, end)` shrunk to its non-space content; null when it is all space. */
function trimmed(text: string, start: number, end: number): Span | null {
  while (start < end && !NOT_SPACE.test(text[start]!)) start++;
  while (end > start && !NOT_SPACE.test(text[end - 1]!)) end--;
  return start < end ? { start, end } : null;
}

/** Cuts a word longer than `max` every `max` code units, never between the halves of a surrogate pair. */
function hardSplit(text: string, span: Span, max: number, out: Span[]): void {
  for (let start = span.start; start < span.end; ) {
    let end = Math.min(span.end, start + max);
    const code = text.charCodeAt(end - 1);
    if (end < span.end && code >= 0xd800 && code <= 0xdbff && end - 1 > start) end--;
    out.push({ start, end });
    start = end;
  }
}

/**
 * The parts of a sentence longer than `max`: its space-separated words; a word still too long
 * (scripts written without spaces) is cut where `Intl.Segmenter` finds word boundaries, and
 * only a single word longer than `max` is cut blindly.
 */
function wordSpans(text: string, sentence: Span, max: number, out: Span[]): void {
  const body = text.slice(sentence.start, sentence.end);
  for (const run of body.matchAll(NON_SPACE_RUN)) {
    const start = sentence.start + run.index;
    const span = { start, end: start + run[0].length };
    if (span.end - span.start <= max) {
      out.push(span);
      continue;
    }
    for (const seg of words.segment(run[0])) {
      const s = start + seg.index;
      const piece = { start: s, end: s + seg.segment.length };
      if (piece.end - piece.start <= max) out.push(piece);
      else hardSplit(text, piece, max, out);
    }
  }
}

/** Sentences, and the words of sentences longer than `max`: the units chunks are made of, in order. */
function units(text: string, max: number): Span[] {
  const out: Span[] = [];
  for (const seg of sentences.segment(text)) {
    const span = trimmed(text, seg.index, seg.index + seg.segment.length);
    if (!span) continue;
    if (span.end - span.start <= max) out.push(span);
    else wordSpans(text, span, max, out);
  }
  return out;
}

function check(opts: SplitOptions): void {
  if (!Number.isInteger(opts.maxChars) || opts.maxChars < 2) throw new RangeError(`maxChars must be an integer of at least 2, got ${opts.maxChars}`);
  if (!Number.isInteger(opts.overlapChars) || opts.overlapChars < 0 || opts.overlapChars >= opts.maxChars) {
    throw new RangeError(`overlapChars must be an integer from 0 to maxChars - 1, got ${opts.overlapChars}`);
  }
}

/** Where `splitText` cuts: the span of each chunk in `text`, in order. */
export function splitSpans(text: string, opts: SplitOptions): Span[] {
  check(opts);
  const { maxChars: max, overlapChars: overlap } = opts;
  const whole = trimmed(text, 0, text.length);
  if (!whole) return [];
  if (whole.end - whole.start <= max) return [whole];
  const parts = units(text, max);
  const chunks: Span[] = [];
  let first = 0;
  while (first < parts.length) {
    // Greedy: as many whole units as fit. Every unit fits alone, so each chunk takes at least one.
    let next = first + 1;
    while (next < parts.length && parts[next]!.end - parts[first]!.start <= max) next++;
    chunks.push({ start: parts[first]!.start, end: parts[next - 1]!.end });
    if (next >= parts.length) break;
    // The next chunk starts with the longest run of this one's trailing units that fits the
    // overlap, leaves room for at least one new unit, and is not this whole chunk again.
    let start = next;
    while (
      start - 1 > first &&
      parts[next - 1]!.end - parts[start - 1]!.start <= overlap &&
      parts[next]!.end - parts[start - 1]!.start <= max
    ) {
      start--;
    }
    first = start;
  }
  return chunks;
}

/**
 * Cuts text into chunks of at most `maxChars`, packing whole sentences; a sentence too long for
 * one chunk is cut between words. Consecutive chunks share up to `overlapChars` of whole trailing
 * sentences or words, so a fact spanning a cut is still found whole in one of them. Text of
 * `maxChars` or less is one chunk; blank text none.
 */
export function splitText(text: string, opts: SplitOptions): string[] {
  return splitSpans(text, opts).map((s) => text.slice(s.start, s.end));
}

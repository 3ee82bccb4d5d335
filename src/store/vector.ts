/** Significant digits each vector is written with, relative to its largest component (< 2^53). */
const DIGITS = 15;
const MINUS = 0x2d;
/** The longest `String()` of a float4 value: `-1.2345678901234567e-38`. */
const SHORT_MAX = 24;
const ZERO = 0x30;

/** Decimal digits of a non-negative int32. */
function digitCount(x: number): number {
  let d = 1;
  while (x >= 10) {
    x = (x / 10) | 0;
    d++;
  }
  return d;
}

/** "00" … "99": two digits a division. */
const PAIRS = Buffer.from(Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0')).join(''), 'latin1');

/** Writes `x` (a non-negative int32) in `width` digits (zero-padded) at `at`; returns the next offset. */
function writeInt(out: Buffer, at: number, x: number, width: number): number {
  let i = at + width - 1;
  for (; i > at; i -= 2) {
    const q = (x / 100) | 0;
    const r = (x - q * 100) << 1;
    out[i] = PAIRS[r + 1]!;
    out[i - 1] = PAIRS[r]!;
    x = q;
  }
  if (i === at) out[i] = ZERO + x;
  return at + width;
}

/** Writes the non-negative integer `n` (< 10^16) in decimal at `at`: two int32 halves. */
function writeDigits(out: Buffer, at: number, n: number): number {
  const hi = Math.floor(n / 1e8);
  const lo = n - hi * 1e8;
  if (hi === 0) return writeInt(out, at, lo, digitCount(lo));
  at = writeInt(out, at, hi, digitCount(hi));
  return writeInt(out, at, lo, 8);
}

function checkDim(values: ArrayLike<number>, dim: number): void {
  if (values.length !== dim) throw new RangeError(`embedding has ${values.length} dimensions, the store expects ${dim}`);
}

/** `values[i]` as the float4 pgvector stores; NaN, infinities and values beyond float4's range are refused, as pgvector refuses them. */
function float4At(values: ArrayLike<number>, i: number): number {
  const v = Math.fround(values[i] as number);
  if (!Number.isFinite(v)) throw new RangeError(`embedding[${i}] is not a finite number (or beyond float4's range)`);
  return v;
}

/**
 * pgvector's text form: `[1,2,3]`. Rejects NaN, infinities and values beyond float4's range,
 * which pgvector refuses too.
 *
 * Each component is first rounded to float4 (`Math.fround`: what pgvector stores), then
 * written as an integer times a power of ten shared by the vector (`12345e-6`), 15 significant
 * digits for the largest: float4 keeps 24 bits (9 digits read it back exactly). A component
 * that would get fewer than 10 digits that way (below 10⁻⁵ of the largest: rare, and the
 * transform's rounding noise around zero is such a one) is written with `String()` instead, so
 * every component reads back as exactly its float4. Rounding the double to 15 digits without
 * the first step could cross the midpoint between two float4s, 1 ulp off `Math.fround`.
 * `String(x)` of a double that is not in V8's small number-to-string cache — every component of a transformed vector, docs/security.md — costs
 * ~0.4 µs, 125–175 µs a 384-d vector; this ~4× less.
 */
export function toSqlVector(values: ArrayLike<number>, dim: number): string {
  checkDim(values, dim);
  let max = 0;
  for (let i = 0; i < dim; i++) {
    const a = Math.abs(float4At(values, i));
    if (a > max) max = a;
  }
  // max · 10^exp < 10^DIGITS (and ≥ 10^(DIGITS−1) but for the rounding of log10)
  const exp = max === 0 ? 0 : DIGITS - Math.ceil(Math.log10(max) + 1e-12);
  const scale = 10 ** Math.abs(exp);
  const suffix = Buffer.from(exp === 0 ? '' : `e${-exp}`, 'latin1');
  const out = Buffer.allocUnsafe(2 + dim * Math.max(DIGITS + 3 + suffix.length, SHORT_MAX + 1));
  let at = 0;
  out[at++] = 0x5b; // [
  for (let i = 0; i < dim; i++) {
    if (i > 0) out[at++] = 0x2c; // ,
    const v = Math.fround(values[i] as number);
    const n = Math.round(exp >= 0 ? v * scale : v / scale);
    if (v === 0) {
      out[at++] = ZERO;
      continue;
    }
    if (Math.abs(n) < 1e9) {
      at += out.write(String(v), at, 'latin1');
      continue;
    }
    if (n < 0) out[at++] = MINUS;
    at = writeDigits(out, at, Math.abs(n));
    for (let j = 0; j < suffix.length; j++) out[at++] = suffix[j]!;
  }
  out[at++] = 0x5d; // ]
  return out.toString('latin1', 0, at);
}

/**
 * pgvector's binary form (what `vector_recv` reads): the dimension and a zero as int16, then each
 * component as a big-endian float4. A `Buffer` parameter is sent in binary by the server driver,
 * so the query vector needs neither formatting here nor parsing there: a statement with two
 * 384-d vector parameters ran in 0.15 ms instead of 0.30 (docs/benchmarks.md, "The query vector
 * in binary"). Same checks, and the same float4 values, as `toSqlVector`.
 */
export function toBinaryVector(values: ArrayLike<number>, dim: number): Buffer {
  checkDim(values, dim);
  const out = Buffer.allocUnsafe(4 + 4 * dim);
  out.writeInt16BE(dim, 0);
  out.writeInt16BE(0, 2);
  for (let i = 0; i < dim; i++) out.writeFloatBE(float4At(values, i), 4 + 4 * i);
  return out;
}

/** bytea comes back as Buffer from pg and as Uint8Array from PGlite. */
export function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError('expected bytea');
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toBinaryVector, toSqlVector } from './vector.ts';

/** What pgvector does with each component: strtof, i.e. the float4 nearest the decimal. */
const read = (text: string): number[] => text.slice(1, -1).split(',').map((t) => Math.fround(Number(t)));

/** Every component of `v`, written and read back, is `Math.fround` of it: what a float4 column holds. */
function assertReadsBackAsFloat4(v: number[]): void {
  const back = read(toSqlVector(v, v.length));
  for (let i = 0; i < v.length; i++) assert.equal(back[i], Math.fround(v[i]!), `[${i}] ${v[i]}`);
}

test('toSqlVector: every float4 component reads back as itself, at any magnitude', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  for (const magnitude of [1e-30, 1e-6, 0.05, 1, 37.5, 1e6, 3e30]) {
    for (let trial = 0; trial < 20; trial++) {
      const v = Float32Array.from({ length: 384 }, () => rand() * magnitude);
      assert.deepEqual(read(toSqlVector(v, 384)), Array.from(v), `magnitude ${magnitude}`);
    }
  }
});

test('toSqlVector: a double is written close enough that float4 rounding is all that changes', () => {
  const v = Array.from({ length: 384 }, (_, i) => Math.sin(i * 12.9898) * 0.07);
  assertReadsBackAsFloat4(v);
});

test('toSqlVector: a double just beside a float4 rounding midpoint still reads back as Math.fround of it', () => {
  // Rounding the double to 15 digits first and to float4 after (in strtof) can land on the
  // other side of the midpoint between two float4s: 1 ulp off what the transform computed.
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  let seed = 11;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const v = Array.from({ length: 384 }, (_, i) => {
    f32[0] = (rand() * 2 - 1) * 0.1;
    const low = f32[0]!;
    u32[0] = u32[0]! + 1; // the next float4 up in magnitude
    const mid = (low + f32[0]!) / 2; // exact in a double
    const nudge = Math.abs(mid) * 2 ** -50 * (1 + (i % 4)); // below 15 digits' resolution
    return i % 2 === 0 ? mid + nudge : mid - nudge;
  });
  assertReadsBackAsFloat4(v);
});

test('toSqlVector: a component far below the largest (the transform\'s noise around zero) reads back exactly too', () => {
  const v = Array.from({ length: 384 }, (_, i) => Math.cos(i * 7.31) * 0.06);
  v[3] = -6.938893903907228e-18;
  v[10] = 2.5e-12;
  v[11] = -4.1e-7;
  v[12] = 1.5e-45; // the smallest float4 (a denormal)
  assertReadsBackAsFloat4(v);
  assert.notEqual(read(toSqlVector(v, 384))[3], 0);
});

test('toSqlVector: zeros, signs, a zero vector, exact small integers', () => {
  assert.equal(toSqlVector([0, 0, 0], 3), '[0,0,0]');
  assert.deepEqual(read(toSqlVector([1, -2.5, 0, 3], 4)), [1, -2.5, 0, 3]);
  assert.deepEqual(read(toSqlVector([-0.125], 1)), [-0.125]);
  assert.match(toSqlVector([1, -2.5], 2), /^\[[0-9e-]+(,[0-9e-]+)*\]$/);
});

test('toSqlVector: refuses a wrong dimension, NaN and infinities', () => {
  assert.throws(() => toSqlVector([1, 2], 3), /2 dimensions, the store expects 3/);
  assert.throws(() => toSqlVector([1, Number.NaN], 2), /embedding\[1\] is not a finite number/);
  assert.throws(() => toSqlVector([Number.POSITIVE_INFINITY, 1], 2), /embedding\[0\]/);
  // pgvector: "value out of range for type vector".
  assert.throws(() => toSqlVector([0.5, -1e39], 2), /embedding\[1\] is not a finite number \(or beyond float4's range\)/);
});

test('toBinaryVector: pgvector\'s binary form, dimension and a zero as int16, then big-endian float4s', () => {
  const v = [1, -2.5, 0.1, 3e38, -1e-40];
  const b = toBinaryVector(v, 5);
  assert.equal(b.length, 4 + 4 * 5);
  assert.equal(b.readInt16BE(0), 5);
  assert.equal(b.readInt16BE(2), 0);
  assert.deepEqual(Array.from({ length: 5 }, (_, i) => b.readFloatBE(4 + 4 * i)), v.map((x) => Math.fround(x)));
  // The same float4 values the text form reads back as.
  const w = Array.from({ length: 384 }, (_, i) => Math.sin(i * 12.9898) * 0.07);
  const bin = toBinaryVector(w, 384);
  assert.deepEqual(Array.from({ length: 384 }, (_, i) => bin.readFloatBE(4 + 4 * i)), read(toSqlVector(w, 384)));
});

test('toBinaryVector: refuses what toSqlVector refuses', () => {
  assert.throws(() => toBinaryVector([1, 2], 3), /2 dimensions, the store expects 3/);
  assert.throws(() => toBinaryVector([1, Number.NaN], 2), /embedding\[1\] is not a finite number/);
  assert.throws(() => toBinaryVector([Number.NEGATIVE_INFINITY, 1], 2), /embedding\[0\]/);
  assert.throws(() => toBinaryVector([0.5, -1e39], 2), /embedding\[1\] is not a finite number \(or beyond float4's range\)/);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TRANSFORM_ROUNDS, VectorTransform } from '../../src/crypto/index.ts';
import { ctxFor, makeRig, reasonOf } from './helpers.ts';

const DIMS = [1, 3, 8, 384, 768, 1536];
const TOL = 1e-9;

const SEED = Uint8Array.from({ length: 32 }, (_, i) => i);
const SEED_V2 = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
const ALICE = new TextEncoder().encode('user-alice');
const BOB = new TextEncoder().encode('user-bob');

/** Deterministic standard normals (mulberry32 + Box–Muller), so a failure reproduces. */
function gaussians(seed: number): (n: number) => Float64Array {
  let a = seed >>> 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297; // (0, 1)
  };
  return (n) => {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    return out;
  };
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const norm = (a: ArrayLike<number>): number => Math.sqrt(dot(a, a));
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>): number => dot(a, b) / (norm(a) * norm(b));

/** |actual − expected| within TOL, relative to the size of `expected` when it is above 1. */
function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= TOL * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

function closeVec(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) close(actual[i]!, expected[i]!, `${what}[${i}]`);
}

function basis(dim: number, i: number): Float64Array {
  const e = new Float64Array(dim);
  e[i] = 1;
  return e;
}

test('orthogonal: norms, inner products and cosine distances are kept, at every dimension', () => {
  const rnd = gaussians(1);
  for (const dim of DIMS) {
    const q = VectorTransform.derive(SEED, ALICE, dim);
    assert.equal(q.dim, dim);
    for (let trial = 0; trial < 5; trial++) {
      const a = rnd(dim);
      // b correlated with a (cosine ≈ 0.8 at high dimension), so the kept cosine is not just ≈ 0
      const noise = rnd(dim);
      const b = a.map((x, i) => 0.8 * x + 0.6 * noise[i]!);
      const qa = q.apply(a);
      const qb = q.apply(b);
      assert.ok(Array.isArray(qa), "a fresh array: the working space is not handed out");
      close(norm(qa), norm(a), `‖Qa‖ dim ${dim}`);
      close(norm(qb), norm(b), `‖Qb‖ dim ${dim}`);
      close(dot(qa, qb), dot(a, b), `⟨Qa,Qb⟩ dim ${dim}`);
      close(1 - cosine(qa, qb), 1 - cosine(a, b), `cosine distance dim ${dim}`);
      // L2 distance too (what an L2 index would compare)
      close(norm(qa.map((x, i) => x - qb[i]!)), norm(a.map((x, i) => x - b[i]!)), `‖Qa−Qb‖ dim ${dim}`);
    }
  }
});

test('invert is the inverse and the transpose: invert(apply(v)) = v, apply(invert(w)) = w, ⟨Qa,b⟩ = ⟨a,Qᵀb⟩', () => {
  const rnd = gaussians(2);
  for (const dim of DIMS) {
    const q = VectorTransform.derive(SEED, BOB, dim);
    const v = rnd(dim);
    closeVec(q.invert(q.apply(v)), v, `invert(apply(v)) dim ${dim}`);
    closeVec(q.apply(q.invert(v)), v, `apply(invert(v)) dim ${dim}`);
    const b = rnd(dim);
    close(dot(q.apply(v), b), dot(v, q.invert(b)), `⟨Qa,b⟩ = ⟨a,Qᵀb⟩ dim ${dim}`);
  }
});

test('the whole matrix is orthogonal at small dimensions: QᵀQ = I, column by column', () => {
  for (const dim of [1, 2, 3, 5, 8, 13, 24]) {
    const q = VectorTransform.derive(SEED, ALICE, dim);
    const cols = Array.from({ length: dim }, (_, i) => q.apply(basis(dim, i)));
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j < dim; j++) close(dot(cols[i]!, cols[j]!), i === j ? 1 : 0, `(QᵀQ)[${i}][${j}] dim ${dim}`);
    }
  }
  // at one dimension the only orthogonal maps are ±1
  const one = VectorTransform.derive(SEED, ALICE, 1).apply([2.5])[0]!;
  assert.ok(one === 2.5 || one === -2.5, `1-d: ${one}`);
});

test('apply and invert leave their input alone and take number[] and Float32Array alike', () => {
  const q = VectorTransform.derive(SEED, ALICE, 384);
  const v = gaussians(3)(384);
  const before = Float64Array.from(v);
  const w = q.apply(v);
  assert.deepEqual(v, before);
  q.invert(w);
  assert.deepEqual(v, before);
  assert.deepEqual(q.apply(Array.from(v)), w);
  const f32 = Float32Array.from(v);
  assert.deepEqual(q.apply(f32), q.apply(Float64Array.from(f32)));
  // The working space is shared by every transform: an answer is never changed by a later call.
  const kept = [...w];
  const back = q.invert(w);
  const keptBack = [...back];
  const other = VectorTransform.derive(SEED_V2, BOB, 384);
  other.apply(gaussians(4)(384));
  other.invert(gaussians(5)(384));
  assert.deepEqual(w, kept);
  assert.deepEqual(back, keptBack);
});

test('deterministic: the same seed, salt and dimension give the same transform, from fresh derivations', () => {
  const v = gaussians(4)(384);
  const a = VectorTransform.derive(SEED, ALICE, 384).apply(v);
  const b = VectorTransform.derive(Uint8Array.from(SEED), Buffer.from(ALICE), 384).apply(v);
  assert.deepEqual(a, b);
  // deriving does not consume or change its inputs
  assert.deepEqual(SEED, Uint8Array.from({ length: 32 }, (_, i) => i));
});

test('pinned: the derivation does not change (stored vectors are searched with it)', () => {
  // If this fails the transform changed: every vector stored under the old one stops matching queries.
  const pinned = [
    2.8284271247461894, 2.8284271247461903, -11.313708498984758, -1.4142135623730943, 3.535533905932737, 2.121320343559643,
    0.7071067811865481, 6.363961030678925,
  ];
  const q = VectorTransform.derive(SEED, ALICE, 8);
  const out = q.apply([1, 2, 3, 4, 5, 6, 7, 8]);
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(out[i]! - pinned[i]!) < 1e-12, `[${i}]: ${out[i]} vs ${pinned[i]}`);
  assert.equal(TRANSFORM_ROUNDS, 3);
});

test('a different salt (user), seed (key version) or dimension gives an unrelated transform', () => {
  const rnd = gaussians(5);
  const base = VectorTransform.derive(SEED, ALICE, 384);
  const otherUser = VectorTransform.derive(SEED, BOB, 384);
  const otherVersion = VectorTransform.derive(SEED_V2, ALICE, 384);
  const oneBitSeed = Uint8Array.from(SEED);
  oneBitSeed[31]! ^= 1;
  const oneBit = VectorTransform.derive(oneBitSeed, ALICE, 384);
  const otherDim = VectorTransform.derive(SEED, ALICE, 385);
  for (let trial = 0; trial < 10; trial++) {
    const v = rnd(384);
    const ref = base.apply(v);
    for (const [name, other] of [
      ['other user', otherUser],
      ['other key version', otherVersion],
      ['seed differing in one bit', oneBit],
    ] as const) {
      const c = cosine(ref, other.apply(v));
      assert.ok(Math.abs(c) < 0.3, `${name}: cosine ${c}`);
    }
    // 385-d: v padded with a zero, compared with Q₃₈₄·v padded with a zero
    const padded = Float64Array.from([...v, 0]);
    const c = cosine(Float64Array.from([...ref, 0]), otherDim.apply(padded));
    assert.ok(Math.abs(c) < 0.3, `other dimension: cosine ${c}`);
  }
});

test('it mixes: every basis vector at 384-d spreads over most coordinates (not a signed permutation)', () => {
  const q = VectorTransform.derive(SEED, ALICE, 384);
  for (let i = 0; i < 384; i++) {
    const y = q.apply(basis(384, i));
    const nonZero = y.filter((x) => Math.abs(x) > 1e-6).length;
    assert.ok(nonZero > 100, `e_${i}: only ${nonZero} non-zero coordinates`);
    const largest = Math.max(...Array.from(y, Math.abs));
    assert.ok(largest < 0.5, `e_${i}: a coordinate of ${largest} (a signed permutation gives 1)`);
  }
});

test('input errors are RangeErrors: wrong length, a seed that is not 32 bytes, a bad dimension', () => {
  const q = VectorTransform.derive(SEED, ALICE, 384);
  assert.throws(() => q.apply(new Float64Array(383)), RangeError);
  assert.throws(() => q.apply(new Float64Array(385)), RangeError);
  assert.throws(() => q.apply([]), RangeError);
  assert.throws(() => q.invert(new Float64Array(768)), RangeError);
  for (const n of [0, 16, 31, 33, 64]) assert.throws(() => VectorTransform.derive(new Uint8Array(n), ALICE, 384), RangeError, `seed of ${n} bytes`);
  for (const dim of [0, -1, 1.5, Number.NaN, Infinity, 65537]) assert.throws(() => VectorTransform.derive(SEED, ALICE, dim), RangeError, `dim ${dim}`);
  // an empty salt is a salt: it derives
  assert.equal(VectorTransform.derive(SEED, new Uint8Array(0), 4).dim, 4);
});

test('keyring: every keyring over the same keys gives the same vector seeds; none for a tenant that never sealed', async () => {
  const a = makeRig();
  const b = makeRig({ masterKey: a.masterKey, repo: a.repo });
  assert.equal((await a.keyring.vectorSeeds('tenant-a')).size, 0);
  assert.deepEqual(await a.repo.list('tenant-a'), [], 'asking for seeds makes no key');
  await a.keyring.seal('hello', ctxFor('tenant-a'));
  await a.keyring.seal('hello', ctxFor('tenant-b'));
  const seedsA = await a.keyring.vectorSeeds('tenant-a');
  const seedsB = await b.keyring.vectorSeeds('tenant-a');
  assert.deepEqual([...seedsA.keys()], [1]);
  assert.equal(seedsA.get(1)!.length, 32);
  assert.deepEqual(seedsB, seedsA);
  // so both derive the same transform
  const v = gaussians(6)(384);
  assert.deepEqual(VectorTransform.derive(seedsB.get(1)!, ALICE, 384).apply(v), VectorTransform.derive(seedsA.get(1)!, ALICE, 384).apply(v));
  // another tenant's seed is another seed
  const other = (await a.keyring.vectorSeeds('tenant-b')).get(1)!;
  assert.notDeepEqual(other, seedsA.get(1));
});

test('keyring: rotate adds version 2 with another seed; a keyring that cached version 1 finds it with need', async () => {
  const a = makeRig();
  const b = makeRig({ masterKey: a.masterKey, repo: a.repo });
  await a.keyring.seal('hello', ctxFor('tenant-a'));
  const v1 = Buffer.from((await b.keyring.vectorSeeds('tenant-a')).get(1)!);
  assert.equal(await a.keyring.rotate('tenant-a'), 2);
  const seeds = await a.keyring.vectorSeeds('tenant-a');
  assert.deepEqual([...seeds.keys()].sort(), [1, 2]);
  assert.deepEqual(seeds.get(1), v1, 'version 1 keeps its seed');
  assert.equal(seeds.get(2)!.length, 32);
  assert.notDeepEqual(seeds.get(2), seeds.get(1));
  // b cached the tenant before the rotation: without need it may answer from its cache, with need it loads
  const fromB = await b.keyring.vectorSeeds('tenant-a', 2);
  assert.deepEqual(fromB.get(2), seeds.get(2));
  assert.deepEqual(fromB.get(1), v1);
});

test('keyring: a shredded tenant has no vector seeds (key_shredded), in this keyring and a fresh one', async () => {
  const a = makeRig();
  await a.keyring.seal('hello', ctxFor('tenant-a'));
  await a.keyring.seal('hello', ctxFor('tenant-b'));
  assert.equal((await a.keyring.vectorSeeds('tenant-a')).size, 1);
  await a.repo.shred('tenant-a');
  a.keyring.forget('tenant-a');
  assert.equal(await reasonOf(a.keyring.vectorSeeds('tenant-a')), 'key_shredded');
  assert.equal(await reasonOf(a.keyring.vectorSeeds('tenant-a', 1)), 'key_shredded');
  const fresh = makeRig({ masterKey: a.masterKey, repo: a.repo });
  assert.equal(await reasonOf(fresh.keyring.vectorSeeds('tenant-a')), 'key_shredded');
  // other tenants keep theirs
  assert.equal((await fresh.keyring.vectorSeeds('tenant-b')).size, 1);
});

/**
 * Issue 22, "The attack, in a test" and "Known-plaintext": what a dump of `memory_chunks`
 * (the owner's `SELECT embedding::text`, a backup, a replica) tells an attacker who knows the
 * embedding model, with the keyed vector transform off and on (src/crypto/vector-transform.ts,
 * docs/security.md "Vectors at rest"). Every figure is printed with t.diagnostic; the bounds
 * asserted were picked from measurements, with margin.
 *
 * The attacker's models: the real `hash` embedder (src/embed/hash.ts), and a "public model": a
 * fixed random linear map of bag-of-words, normalised (dense, full rank, known to anyone).
 *
 * Two tests also measure what the transform does not hide (the fingerprint test below, and the
 * forward column of the known-plaintext table): it is orthogonal, so inner products within one
 * scope are kept (that is what lets search work), and an attacker who knows some plaintexts of a
 * user, or holds a list of candidate texts that covers the user's rows, uses exactly that.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Keyring, LocalKeyProvider } from '../src/crypto/index.ts';
import { createHashEmbedder, hashWords } from '../src/embed/hash.ts';
import { rng } from '../src/bench/synthetic.ts';
import { SealedMemory } from '../src/memory/index.ts';
import { createPgliteDriver, SqlKeyRepository, Store } from '../src/store/index.ts';
import { testTenant } from './helpers/fixtures.ts';

// ---------------------------------------------------------------------------------------------
// Texts

/** 200 distinct words; every memory of these suites is a few of them. */
const VOCAB = `
apple river mountain garden window doctor teacher market bridge castle
forest ocean island desert valley winter summer autumn spring morning
evening midnight kitchen bedroom office school church station airport harbor
bicycle train truck engine rocket camera phone letter ticket wallet
jacket shirt boots hat glove scarf pillow blanket candle mirror
violin guitar piano drum trumpet concert theater museum library gallery
coffee tea bread cheese butter honey pepper salt sugar lemon
orange banana cherry grape melon carrot potato tomato onion garlic
chicken salmon turkey rabbit horse tiger eagle dolphin spider turtle
brother sister mother father cousin uncle aunt neighbor friend stranger
lawyer nurse pilot farmer baker painter writer singer dancer soldier
happy sad angry calm brave quiet loud bright dark gentle
rapid slow heavy light warm cold fresh ancient modern secret
purple green yellow silver golden crimson violet scarlet ivory amber
run jump swim climb dance sing write read paint build
travel visit borrow lend repair clean cook bake plant harvest
remember forget promise whisper shout laugh cry wonder dream believe
monday tuesday friday sunday january march july october december birthday
wedding holiday vacation meeting deadline project budget invoice contract salary
allergy fever headache surgery vaccine diet exercise marathon yoga therapy
`
  .trim()
  .split(/\s+/);


/** `count` distinct sentences of 5..8 distinct vocabulary words each. */
function sentences(count: number, seed: number): string[][] {
  const next = rng(seed);
  const out: string[][] = [];
  const seen = new Set<string>();
  while (out.length < count) {
    const m = 5 + Math.floor(next() * 4);
    const words = new Set<string>();
    while (words.size < m) words.add(VOCAB[Math.floor(next() * VOCAB.length)]!);
    const key = [...words].sort().join(' ');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push([...words]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Vectors (float64; what the store holds comes back as float32)

type Vec = Float64Array;

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
const norm = (a: ArrayLike<number>) => Math.sqrt(dot(a, a));
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / (norm(a) * norm(b));
function distance2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}
function unit(a: Vec): Vec {
  const n = norm(a);
  return a.map((x) => x / n);
}

/** Index of the candidate with the highest score. */
function argmax(n: number, score: (j: number) => number): number {
  let best = 0;
  let bestScore = -Infinity;
  for (let j = 0; j < n; j++) {
    const s = score(j);
    if (s > bestScore) [best, bestScore] = [j, s];
  }
  return best;
}

/**
 * The "public model": every word a fixed Gaussian vector (seeded by the word), a text the
 * normalised sum of its words' vectors. Anyone can compute it, like a published model's weights.
 */
function publicModel(dim: number): (text: string) => Vec {
  const rows = new Map<string, Vec>();
  const row = (word: string): Vec => {
    let r = rows.get(word);
    if (r === undefined) {
      const next = rng(createHash('sha256').update(`public-model/${dim}/${word}`).digest().readUInt32LE(0));
      r = new Float64Array(dim);
      for (let i = 0; i < dim; i++) r[i] = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
      rows.set(word, r);
    }
    return r;
  };
  return (text) => {
    const acc = new Float64Array(dim);
    for (const w of hashWords(text)) {
      const r = row(w);
      for (let i = 0; i < dim; i++) acc[i]! += r[i]!;
    }
    return unit(acc);
  };
}

/**
 * The least-squares estimate of a user's map from n known (embedding, stored vector) pairs:
 * Q̂ = Y X⁺, X and Y d×n with the pairs as columns. n ≤ d: X⁺ = (XᵀX)⁻¹Xᵀ (the minimum-norm
 * solution); n > d: X⁺ = Xᵀ(XXᵀ)⁻¹. Normal equations, Cholesky, float64. Returns Q̂'s rows.
 */
function leastSquaresMap(xs: readonly Vec[], ys: readonly Vec[]): Vec[] {
  const n = xs.length;
  const d = xs[0]!.length;
  const q = Array.from({ length: d }, () => new Float64Array(d));
  if (n <= d) {
    const g = xs.map((a) => Float64Array.from(xs, (b) => dot(a, b)));
    const l = cholesky(g);
    // Z = G⁻¹Xᵀ (n×d), one column of Xᵀ (a row of X) at a time; then Q̂ = Y Z.
    const z = Array.from({ length: n }, () => new Float64Array(d));
    for (let j = 0; j < d; j++) {
      const col = choleskySolve(l, Float64Array.from(xs, (x) => x[j]!));
      for (let k = 0; k < n; k++) z[k]![j] = col[k]!;
    }
    for (let k = 0; k < n; k++) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) q[i]![j]! += ys[k]![i]! * z[k]![j]!;
    return q;
  }
  // Q̂ H = B with H = XXᵀ and B = YXᵀ, so H q̂ᵢ = bᵢ for each row i (H is symmetric).
  const h = Array.from({ length: d }, () => new Float64Array(d));
  const b = Array.from({ length: d }, () => new Float64Array(d));
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        h[i]![j]! += xs[k]![i]! * xs[k]![j]!;
        b[i]![j]! += ys[k]![i]! * xs[k]![j]!;
      }
    }
  }
  const l = cholesky(h);
  return b.map((row) => choleskySolve(l, row));
}

/** Lower-triangular L with A = LLᵀ (A symmetric positive definite). */
function cholesky(a: readonly Vec[]): Vec[] {
  const n = a.length;
  const l = Array.from({ length: n }, () => new Float64Array(n));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i]![j]!;
      for (let k = 0; k < j; k++) s -= l[i]![k]! * l[j]![k]!;
      if (i === j) {
        assert.ok(s > 0, 'the known embeddings are linearly independent');
        l[i]![i] = Math.sqrt(s);
      } else l[i]![j] = s / l[j]![j]!;
    }
  }
  return l;
}

function choleskySolve(l: readonly Vec[], rhs: Vec): Vec {
  const n = l.length;
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = rhs[i]!;
    for (let k = 0; k < i; k++) s -= l[i]![k]! * y[k]!;
    y[i] = s / l[i]![i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= l[k]![i]! * x[k]!;
    x[i] = s / l[i]![i]!;
  }
  return x;
}

const mulVec = (m: readonly Vec[], v: ArrayLike<number>): Vec => Float64Array.from(m, (row) => dot(row, v));
function mulTransposedVec(m: readonly Vec[], v: ArrayLike<number>): Vec {
  const out = new Float64Array(m[0]!.length);
  for (let i = 0; i < m.length; i++) for (let j = 0; j < out.length; j++) out[j]! += m[i]![j]! * v[i]!;
  return out;
}

const fmt = (x: number) => x.toFixed(3);

// ---------------------------------------------------------------------------------------------
// The store, as the service writes it and as the owner dumps it

interface Stack {
  store: Store;
  /** RELAY_VECTOR_TRANSFORM=off: vectors as the model made them. */
  plain: SealedMemory;
  /** The default: vectors under the scope's keyed transform. */
  keyed: SealedMemory;
}

async function openStack(embeddingDim: number): Promise<Stack> {
  const store = new Store(await createPgliteDriver({ dataDir: 'memory://' }), { embeddingDim });
  await store.migrate();
  const keyring = new Keyring({ provider: new LocalKeyProvider(randomBytes(32)), repository: new SqlKeyRepository(store.driver) });
  return { store, plain: new SealedMemory(store, keyring, { vectorTransform: false }), keyed: new SealedMemory(store, keyring, { vectorTransform: true }) };
}

interface Dumped {
  vector: Vec;
  vectorKey: number | null;
}

/** What the attacker gets: every row of the tenant, read as the table's owner (past RLS). */
async function dumpTenant(store: Store, tenantId: string): Promise<Map<string, Dumped>> {
  const { rows } = await store.driver.ownerTransaction((sql) =>
    sql.query<{ id: string; embedding: string; vector_key: number | null }>(
      'SELECT id, embedding::text AS embedding, vector_key FROM memory_chunks WHERE tenant_id = $1',
      [tenantId],
    ),
  );
  return new Map(rows.map((r) => [r.id, { vector: Float64Array.from(r.embedding.slice(1, -1).split(','), Number), vectorKey: r.vector_key }]));
}

/** Writes `texts` for the user through `memory`; returns each text's row as dumped, in order. */
async function writeThenDump(memory: SealedMemory, tenantId: string, userId: string, texts: readonly string[], vectors: readonly ArrayLike<number>[]): Promise<Dumped[]> {
  const ids = await memory.write(
    tenantId,
    userId,
    texts.map((text, i) => ({ text, embedding: vectors[i]!, embedderId: 'attack-model' })),
  );
  const dump = await dumpTenant(memory.store, tenantId);
  return ids.map((id) => dump.get(id)!);
}

// ---------------------------------------------------------------------------------------------

describe('vectors at rest: a dump against the model (issue 22, "The attack, in a test")', () => {
  let stack: Stack;
  const D = 384;

  before(async () => {
    stack = await openStack(D);
  });
  after(async () => {
    await stack.store.close();
  });

  it('dictionary attack with the hash embedder: each word of a memory recovered from its row with the transform off, chance with it on', async (t) => {
    const hash = await createHashEmbedder(D);
    const wordVectors = await hash.embed(VOCAB);
    const memories = sentences(40, 2201);
    const texts = memories.map((words) => words.join(' '));
    const embedded = await hash.embed(texts);
    const tenant = testTenant('vp-dict');
    const plainRows = await writeThenDump(stack.plain, tenant, 'alice', texts, embedded);
    const keyedRows = await writeThenDump(stack.keyed, tenant, 'alice', texts, embedded);
    assert.ok(plainRows.every((r) => r.vectorKey === null));
    assert.ok(keyedRows.every((r) => r.vectorKey === 1));

    /** Share of the memories' words among the m best-scoring vocabulary words of their rows (m: the memory's word count). */
    const recovered = (rows: readonly Dumped[]) => {
      let hit = 0;
      let total = 0;
      rows.forEach((row, i) => {
        const truth = new Set(memories[i]);
        const ranked = VOCAB.map((w, j) => ({ w, s: dot(wordVectors[j]!, row.vector) })).sort((a, b) => b.s - a.s);
        for (const { w } of ranked.slice(0, truth.size)) if (truth.has(w)) hit++;
        total += truth.size;
      });
      return hit / total;
    };
    const off = recovered(plainRows);
    const on = recovered(keyedRows);
    const chance = memories.reduce((s, m) => s + m.length, 0) / memories.length / VOCAB.length;
    t.diagnostic(`dictionary attack (hash-v1/d${D}, ${memories.length} memories of 5-8 words, vocabulary ${VOCAB.length}): words recovered off ${fmt(off)}, on ${fmt(on)}, chance ${fmt(chance)}`);
    assert.ok(off >= 0.8, `transform off: ${fmt(off)} of the words recovered`);
    assert.ok(on <= 0.1, `transform on: ${fmt(on)} of the words recovered (chance ${fmt(chance)})`);
  });

  it('nearest neighbour against the public model: each row matched to its text among 50 with the transform off, chance with it on', async (t) => {
    const model = publicModel(D);
    const texts = sentences(50, 2202).map((w) => w.join(' '));
    const candidates = texts.map(model);
    const tenant = testTenant('vp-nn');
    /** Rows i, i + 50, ... are text i's, for each user in turn. */
    const top1 = (rows: readonly Dumped[]) =>
      rows.filter((row, i) => argmax(candidates.length, (j) => cosine(row.vector, candidates[j]!)) === i % candidates.length).length / rows.length;

    const off = top1(await writeThenDump(stack.plain, tenant, 'bob', texts, candidates));
    // Four users, each under a transform of his own: 200 trials, so chance (1/50) is measured closely.
    const keyed: Dumped[] = [];
    for (const user of ['bob', 'carol', 'dave', 'erin']) keyed.push(...(await writeThenDump(stack.keyed, tenant, user, texts, candidates)));
    const on = top1(keyed);
    t.diagnostic(`nearest neighbour (public model d${D}, ${texts.length} candidates): top-1 off ${fmt(off)}, on ${fmt(on)} over ${keyed.length} rows, chance ${fmt(1 / texts.length)}`);
    assert.ok(off >= 0.98, `transform off: top-1 ${fmt(off)}`);
    assert.ok(on <= 0.08, `transform on: top-1 ${fmt(on)} (chance ${fmt(1 / texts.length)})`);
  });

  it('unlinkable across users: the same text is stored as unrelated vectors for two users of a tenant and a user of another tenant', async (t) => {
    const model = publicModel(D);
    const texts = sentences(5, 2203).map((w) => w.join(' '));
    const vectors = texts.map(model);
    const tenantA = testTenant('vp-link-a');
    const tenantB = testTenant('vp-link-b');
    const writers: Array<[string, string]> = [
      [tenantA, 'frank'],
      [tenantA, 'grace'],
      [tenantB, 'frank'],
    ];
    const pairs = [
      [0, 1],
      [0, 2],
      [1, 2],
    ] as const;
    const cosines = async (memory: SealedMemory) => {
      const rows: Dumped[][] = [];
      for (const [tenant, user] of writers) rows.push(await writeThenDump(memory, tenant, user, texts, vectors));
      return { rows, cos: pairs.flatMap(([a, b]) => texts.map((_, i) => cosine(rows[a]![i]!.vector, rows[b]![i]!.vector))) };
    };

    const off = await cosines(stack.plain);
    for (const [a, b] of pairs) for (let i = 0; i < texts.length; i++) assert.deepEqual(off.rows[a]![i]!.vector, off.rows[b]![i]!.vector, 'transform off: the same vector for everyone');
    const on = await cosines(stack.keyed);
    const maxOn = Math.max(...on.cos.map(Math.abs));
    const meanOn = on.cos.reduce((s, c) => s + Math.abs(c), 0) / on.cos.length;
    t.diagnostic(
      `same text, different scopes (${on.cos.length} pairs: same tenant and across tenants): cosine off min ${fmt(Math.min(...off.cos))}; on mean |cos| ${fmt(meanOn)}, max |cos| ${fmt(maxOn)} (1/sqrt(d) = ${fmt(1 / Math.sqrt(D))})`,
    );
    assert.ok(Math.min(...off.cos) > 0.9999);
    assert.ok(maxOn < 0.3, `transform on: max |cos| ${fmt(maxOn)}`);
  });

  it('does not hide the distances within a user: rows matched to a candidate list that covers them, with no plaintext known', async (t) => {
    // The transform is orthogonal: cosines between a user's rows are the cosines between their
    // texts' embeddings (what keeps search working). A row's cosines to the user's other rows
    // are a fingerprint that is found among the candidates' cosines to each other.
    const model = publicModel(D);
    const pool = sentences(100, 2204).map((w) => w.join(' '));
    const candidates = pool.map(model);
    const texts = pool.slice(0, 50);
    const rows = await writeThenDump(stack.keyed, testTenant('vp-gram'), 'heidi', texts, candidates.slice(0, 50));
    let drift = 0;
    for (let i = 0; i < rows.length; i++) for (let j = 0; j < i; j++) drift = Math.max(drift, Math.abs(cosine(rows[i]!.vector, rows[j]!.vector) - cosine(candidates[i]!, candidates[j]!)));
    const profile = (vs: readonly ArrayLike<number>[], i: number) => vs.flatMap((v, j) => (j === i ? [] : [cosine(vs[i]!, v)])).sort((a, b) => a - b);
    const rowProfiles = rows.map((_, i) => profile(rows.map((r) => r.vector), i));
    const candidateProfiles = candidates.map((_, j) => profile(candidates, j));
    /** How many of `a`'s values have a partner in `b` within 1e-5 (both sorted). */
    const shared = (a: readonly number[], b: readonly number[]) => {
      let n = 0;
      for (let i = 0, j = 0; i < a.length && j < b.length; ) {
        if (Math.abs(a[i]! - b[j]!) <= 1e-5) [n, i, j] = [n + 1, i + 1, j + 1];
        else if (a[i]! < b[j]!) i++;
        else j++;
      }
      return n;
    };
    const top1 = rowProfiles.filter((p, i) => argmax(candidateProfiles.length, (j) => shared(p, candidateProfiles[j]!)) === i).length / rows.length;
    t.diagnostic(`within-user cosines kept under the transform: max drift ${drift.toExponential(1)}; fingerprint match of ${rows.length} rows among ${pool.length} candidates: top-1 ${fmt(top1)} (chance ${fmt(1 / pool.length)})`);
    assert.ok(drift < 1e-5);
    assert.ok(top1 >= 0.9, `fingerprint top-1 ${fmt(top1)}`);
  });
});

describe('vectors at rest: known plaintext (issue 22, "Known-plaintext")', () => {
  let stack: Stack;
  /** A small dimension keeps least squares fast; the pattern is the same at 384. */
  const D = 32;

  before(async () => {
    stack = await openStack(D);
  });
  after(async () => {
    await stack.store.close();
  });

  it('n known (text, row) pairs of a user: the map is recovered at n ≥ d; matching to candidates needs far fewer; another user\'s rows stay at chance', async (t) => {
    const model = publicModel(D);
    const all = sentences(120, 2205).map((w) => w.join(' '));
    const known = all.slice(0, 40);
    const heldOut = all.slice(40);
    const knownX = known.map(model);
    const candidates = heldOut.map(model);
    const tenant = testTenant('vp-kpa');
    const victim = await writeThenDump(stack.keyed, tenant, 'ivan', [...known, ...heldOut], [...knownX, ...candidates]);
    const knownY = victim.slice(0, known.length).map((r) => r.vector);
    const victimHeldOut = victim.slice(known.length).map((r) => r.vector);
    const other = (await writeThenDump(stack.keyed, tenant, 'judy', heldOut, candidates)).map((r) => r.vector);
    const chance = 1 / candidates.length;

    const table: Array<{ n: number; recon: number; naive: number; forward: number; otherNaive: number; otherForward: number }> = [];
    for (const n of [1, 2, 4, D / 4, D / 2, (3 * D) / 4, D, D + 8]) {
      const q = leastSquaresMap(knownX.slice(0, n), knownY.slice(0, n));
      const mapped = candidates.map((c) => mulVec(q, c));
      // Naive: invert the row with Q̂ᵀ (Q is orthogonal) and take the nearest candidate.
      const naive = (rows: readonly Vec[]) => rows.filter((w, i) => argmax(candidates.length, (j) => cosine(mulTransposedVec(q, w), candidates[j]!)) === i).length / rows.length;
      // Forward: map every candidate with Q̂ and take the nearest to the row (least squares in the row's space).
      const forward = (rows: readonly Vec[]) => rows.filter((w, i) => argmax(mapped.length, (j) => -distance2(w, mapped[j]!)) === i).length / rows.length;
      const recon = victimHeldOut.reduce((s, w, i) => s + cosine(mulTransposedVec(q, w), candidates[i]!), 0) / victimHeldOut.length;
      table.push({ n, recon, naive: naive(victimHeldOut), forward: forward(victimHeldOut), otherNaive: naive(other), otherForward: forward(other) });
    }
    t.diagnostic(`known plaintext, d = ${D}, ${candidates.length} held-out rows and candidates (chance ${fmt(chance)}):`);
    t.diagnostic('n | cos(Q̂ᵀw, v) | top-1 naive | top-1 forward | other user naive | other user forward');
    for (const r of table) t.diagnostic(`${r.n} | ${fmt(r.recon)} | ${fmt(r.naive)} | ${fmt(r.forward)} | ${fmt(r.otherNaive)} | ${fmt(r.otherForward)}`);

    const at = (n: number) => table.find((r) => r.n === n)!;
    // The map itself: recovered below d only on the span of the known pairs (cos ≈ √(n/d)), exactly from n = d.
    assert.ok(at(D / 4).recon < 0.7 && at(D / 2).recon < 0.85, `partial map: ${fmt(at(D / 4).recon)}, ${fmt(at(D / 2).recon)}`);
    assert.ok(at(D).recon > 0.99 && at(D + 8).recon > 0.99, `full map: ${fmt(at(D).recon)}, ${fmt(at(D + 8).recon)}`);
    assert.ok(at(1).naive < 0.5, `naive top-1 at n = 1: ${fmt(at(1).naive)}`);
    assert.ok(at(D).naive >= 0.95 && at(D + 8).naive >= 0.95);
    // Against a candidate list, the known rows are anchors: a few pairs identify the user's other rows.
    for (const r of table) assert.ok(r.forward >= 0.9, `forward top-1 at n = ${r.n}: ${fmt(r.forward)}`);
    // Another user's rows are under another map: what was learnt of this one does not apply
    // (chance is 1/80; 12 of 80 by luck has odds under 1e-9).
    for (const r of table) assert.ok(r.otherNaive <= 0.15 && r.otherForward <= 0.15, `other user at n = ${r.n}: ${fmt(r.otherNaive)}, ${fmt(r.otherForward)}`);
  });
});

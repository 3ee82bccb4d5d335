/**
 * `relay bench crypto`: seal/open through the real keyring API (keys cached) against a bare
 * AES-256-GCM loop, and the vectors-at-rest transform (`VectorTransform`, 384-d) against a dense
 * 384×384 matrix–vector product, all on this thread (one core), in one run. The measurements are
 * interleaved in short slices so that load from other processes falls on all of them alike
 * and the ratios stay meaningful on a busy machine.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { contextLength, type SealContext } from './aad.ts';
import { LocalKeyProvider } from './key-provider.ts';
import { MemoryKeyRepository } from './key-repository.ts';
import { Keyring } from './keyring.ts';
import { headerLength, headerPrefix } from './sealed-format.ts';
import { DATA_KEY_ID } from './keyring.ts';
import { VectorTransform } from './vector-transform.ts';

export interface CryptoBenchOptions {
  /** Measuring time per series, ms, split over `rounds` slices; default 2000. */
  durationMs?: number;
  /** Interleaved slices per series; default 8. */
  rounds?: number;
}

/** The last line of `relay bench crypto --json`. */
export interface CryptoBenchResult {
  seal_ops_s_1k: number;
  open_ops_s_1k: number;
  /** Bare createCipheriv AES-256-GCM: fresh random nonce, same-size AAD, update, final, getAuthTag. */
  raw_ops_s_1k: number;
  /** seal_ops_s_1k / raw_ops_s_1k */
  ratio_1k: number;
  seal_mb_s_16k: number;
  hmac_ops_s: number;
  /** `VectorTransform#apply` of one 384-d vector (a derived transform, 3 rounds), ns. */
  transform_ns_per_vector: number;
  /** The baseline: a dense 384×384 Float64Array matrix times one vector, ns. */
  dense_ns_per_vector: number;
  /** transform_ns_per_vector / dense_ns_per_vector */
  transform_vs_dense: number;
  /** `VectorTransform.derive` for one (data key's vector seed, user), 384-d, ns: paid on a miss of the service's transform cache. */
  derive_ns: number;
}

/** The dimension of the transform series (the default embedder's). */
const BENCH_DIM = 384;

type Op = () => unknown;

interface Series {
  op: Op;
  ops: number;
  ns: bigint;
}

const BATCH = 64;

async function slice(s: Series, ms: number): Promise<void> {
  const budget = BigInt(Math.round(ms * 1e6));
  const start = process.hrtime.bigint();
  let now = start;
  let ops = 0;
  while (now - start < budget) {
    for (let i = 0; i < BATCH; i++) await s.op();
    ops += BATCH;
    now = process.hrtime.bigint();
  }
  s.ops += ops;
  s.ns += now - start;
}

const perSecond = (s: Series): number => (s.ops * 1e9) / Number(s.ns);
const nsPerOp = (s: Series): number => Number(s.ns) / s.ops;
const round = (n: number, digits = 0): number => Number(n.toFixed(digits));

export async function runCryptoBench(opts: CryptoBenchOptions = {}): Promise<CryptoBenchResult> {
  const durationMs = opts.durationMs ?? 2000;
  const rounds = opts.rounds ?? 8;
  const keyring = new Keyring({ provider: new LocalKeyProvider(randomBytes(32)), repository: new MemoryKeyRepository() });
  const ctx: SealContext = { tenantId: 'bench-tenant', userHash: randomBytes(32), chunkId: '018f5c9e-7d1a-7c3e-9b2f-5a4d3c2b1a09', purpose: 'chunk.text' };
  const pt1k = randomBytes(1024);
  const pt16k = randomBytes(16 * 1024);
  const sealed1k = await keyring.seal(pt1k, ctx);
  await keyring.hmacUser(ctx.tenantId, 'warm');

  // The floor does the same AES-GCM work as seal: a fresh random nonce, AAD of the same size.
  const rawKey = randomBytes(32);
  const rawAad = randomBytes(headerLength(headerPrefix(DATA_KEY_ID, 1).length) + contextLength(ctx));
  const raw: Op = () => {
    const cipher = createCipheriv('aes-256-gcm', rawKey, randomBytes(12), { authTagLength: 16 });
    cipher.setAAD(rawAad);
    cipher.update(pt1k);
    cipher.final();
    return cipher.getAuthTag();
  };
  const users = Array.from({ length: 1024 }, (_, i) => `user-${i}`);
  let u = 0;

  // Vectors at rest: the tenant's real vector seed (data key version 1), user pseudonyms as salts.
  const seed = (await keyring.vectorSeeds(ctx.tenantId)).get(1);
  if (seed === undefined) throw new Error('bench: the tenant has no vector seed after a seal');
  const salts = Array.from({ length: 1024 }, () => randomBytes(32));
  let k = 0;
  const transform = VectorTransform.derive(seed, ctx.userHash, BENCH_DIM);
  const vec = Float64Array.from({ length: BENCH_DIM }, () => Math.random() * 2 - 1);
  const matrix = Float64Array.from({ length: BENCH_DIM * BENCH_DIM }, () => Math.random() * 2 - 1);
  // Row-major y = M·v, a fresh output per vector as `apply` makes one.
  const dense: Op = () => {
    const y = new Float64Array(BENCH_DIM);
    for (let i = 0, row = 0; i < BENCH_DIM; i++, row += BENCH_DIM) {
      let acc = 0;
      for (let j = 0; j < BENCH_DIM; j++) acc += matrix[row + j]! * vec[j]!;
      y[i] = acc;
    }
    return y;
  };
  const series = {
    raw: { op: raw, ops: 0, ns: 0n },
    seal1k: { op: () => keyring.seal(pt1k, ctx), ops: 0, ns: 0n },
    open1k: { op: () => keyring.openSealed(sealed1k, ctx), ops: 0, ns: 0n },
    seal16k: { op: () => keyring.seal(pt16k, ctx), ops: 0, ns: 0n },
    hmac: { op: () => keyring.hmacUser(ctx.tenantId, users[u++ & 1023] as string), ops: 0, ns: 0n },
    transform: { op: () => transform.apply(vec), ops: 0, ns: 0n },
    dense: { op: dense, ops: 0, ns: 0n },
    derive: { op: () => VectorTransform.derive(seed, salts[k++ & 1023] as Buffer, BENCH_DIM), ops: 0, ns: 0n },
  } satisfies Record<string, Series>;
  const all: Series[] = Object.values(series);

  for (const s of all) await slice(s, 50); // warm up the JIT
  for (const s of all) {
    s.ops = 0;
    s.ns = 0n;
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of all) await slice(s, durationMs / rounds);
  }

  const seal = perSecond(series.seal1k);
  const rawOps = perSecond(series.raw);
  const transformNs = nsPerOp(series.transform);
  const denseNs = nsPerOp(series.dense);
  return {
    seal_ops_s_1k: round(seal),
    open_ops_s_1k: round(perSecond(series.open1k)),
    raw_ops_s_1k: round(rawOps),
    ratio_1k: round(seal / rawOps, 3),
    seal_mb_s_16k: round((perSecond(series.seal16k) * pt16k.length) / 1e6, 1),
    hmac_ops_s: round(perSecond(series.hmac)),
    transform_ns_per_vector: round(transformNs),
    dense_ns_per_vector: round(denseNs),
    transform_vs_dense: round(transformNs / denseNs, 3),
    derive_ns: round(nsPerOp(series.derive)),
  };
}

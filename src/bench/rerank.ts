import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { createLexicalReranker, createMaybeRerank, type MaybeRerank, type RerankMode } from '../rerank/index.ts';
import { DType, GraphBuilder, valueInfo } from '../rerank/model-gen/graph.ts';
import { ensureTestModel, TEST_MODELS, type TestModelName } from '../rerank/model-gen/index.ts';
import { createOnnxReranker, NO_SPINNING, type OnnxReranker } from '../rerank/onnx.ts';
import type { RerankCandidate, RerankProvider } from '../rerank/types.ts';
import { percentile } from './load.ts';
import { child } from './proc.ts';
import { rng } from './synthetic.ts';
import { inTurns } from './turns.ts';

export interface RerankBenchOptions {
  /** Queries timed per configuration. Default 100. */
  queries?: number;
  /** Candidates per query. Default 20. */
  candidates?: number;
  /** `maybeRerank`'s budget, ms. Default 150. */
  budgetMs?: number;
  seed?: number;
  /** The generated model (`minilm-l6-shape` for the real figures, `tiny` for tests). Default `minilm-l6-shape`. */
  model?: TestModelName;
  /** Pairs per inference run. Default 16: 20 candidates go in two runs of 10, faster here than one of 20 (docs/benchmarks.md). */
  batchSize?: number;
  /** onnxruntime intra-op threads, for the model and the floors alike. Default: every CPU. */
  threads?: number;
  /** Default 128. */
  maxLength?: number;
  /** Untimed queries after `warm()`, per model. Default 5. */
  warmup?: number;
  /** Timed passes of each floor graph, in turns with the model's queries. Default 30. */
  floorRuns?: number;
  /** Model cache folder (tests); default the repository's `.cache/models`. */
  cacheDir?: string;
  log?: (line: string) => void;
}

export interface RerankBenchSummary {
  bench: 'rerank';
  model: TestModelName;
  queries: number;
  candidates: number;
  batch_size: number;
  threads: number;
  mean_pair_tokens: number;
  /** fp32: full rerank of every candidate, ms. */
  p50_ms: number;
  p95_ms: number;
  p50_ms_int8: number;
  p95_ms_int8: number;
  /** Model FLOP/s at the median ÷ the floor's FLOP/s. */
  efficiency: number;
  efficiency_int8: number;
  floor_gflops: number;
  floor_gflops_int8: number;
  /** How many runs the floor's best figure split the query's tokens into (1, 2 or 4). */
  floor_splits: number;
  floor_splits_int8: number;
  /** Model FLOPs per query (sum of pair tokens × FLOPs per token), GFLOP. */
  gflop_per_query: number;
  budget_ms: number;
  /** The whole `maybeRerank` call on the fp32 model, ms. */
  budget_p95_ms: number;
  reranked_mean: number;
  /**
   * Candidates reranked on average ÷ what the floor allows inside the budget
   * (budget × floor FLOP/s ÷ FLOPs per pair, capped at 20 and at the candidates).
   */
  budget_utilization: number;
  /** The same beside a one-core busy loop, against the floor measured beside it. */
  budget_utilization_busy: number;
  budget_p95_ms_busy: number;
  floor_gflops_busy: number;
  budget_fallbacks: number;
  /**
   * 1 − the share of the int8 model's operator time outside its quantized GEMMs (onnxruntime's
   * profile): what `efficiency_int8` could reach were those GEMMs at the floor and the rest as
   * fast as now. `efficiency_int8 ÷ efficiency_int8_ceiling` is the GEMMs' own share of the floor.
   */
  efficiency_int8_ceiling: number;
  /** The int8 model's operator time by operator, the largest first, shares summing to 1. */
  int8_op_shares: Record<string, number>;
  lexical_p95_ms: number;
  /** `maybeRerank` with mode `off`: what the query path pays when it does not rerank. */
  none_p95_ms: number;
}

// Words the generator's vocabulary holds whole (see model-gen/vocab.ts), so each costs one
// token with the `minilm-l6-shape` tokenizer, as English words mostly do with BERT's.
const SUBJECTS = ['the user', 'she', 'he', 'they', 'her manager', 'his wife', 'the client', 'the team', 'their daughter', 'my brother'];
const VERBS = ['prefers', 'likes', 'wants', 'needs', 'asked for', 'said', 'moved', 'bought', 'sent', 'called', 'reminded', 'booked'];
const NOUNS = [
  'coffee', 'tea', 'dinner', 'lunch', 'breakfast', 'flight', 'hotel', 'trip', 'vacation', 'budget', 'invoice', 'report', 'meeting',
  'project', 'deadline', 'email', 'phone', 'birthday', 'account', 'password', 'payment', 'subscription', 'plan', 'schedule',
  'appointment', 'doctor', 'gym', 'recipe', 'office', 'review', 'release', 'bug', 'server', 'database', 'service', 'book',
  'music', 'car', 'house', 'dog', 'family', 'school', 'food', 'city', 'river', 'mountain', 'island', 'garden', 'paper', 'story',
];
const FILLER = [
  'on', 'monday', 'tuesday', 'friday', 'sunday', 'every', 'week', 'morning', 'night', 'with', 'the', 'team', 'before', 'after',
  'work', 'and', 'a', 'small', 'new', 'old', 'long', 'short', 'weekly', 'daily', 'in', 'june', 'march', 'october', 'near', 'home',
  'for', 'their', 'next', 'last', 'year', 'because', 'it', 'was', 'too', 'late', 'early', 'at', 'remote', 'vegan', 'quick', 'simple',
];
const QUESTION = ['what', 'when', 'which', 'how', 'where', 'who'];

interface Query {
  text: string;
  candidates: RerankCandidate[];
}

/**
 * Memory-like chunks: 1–3 sentences, sized so that a pair with its query is 40–80 tokens
 * (every word one token, one per period, three special tokens).
 */
function workload(queries: number, candidates: number, seed: number): Query[] {
  const rand = rng(seed ^ 0x7e7a);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const words = (n: number) => Array.from({ length: n }, () => (rand() < 0.35 ? pick(NOUNS) : pick(FILLER)));
  return Array.from({ length: queries }, (_, qi) => {
    const topic = pick(NOUNS);
    const text = `${pick(QUESTION)} ${pick(VERBS)} ${pick(SUBJECTS)} about the ${topic} ${pick(FILLER)}`;
    const queryTokens = text.split(' ').length;
    const cands = Array.from({ length: candidates }, (_, ci) => {
      const sentences = 1 + Math.floor(rand() * 3);
      const target = 40 + Math.floor(rand() * 41) - queryTokens - 3 - sentences;
      // Split the words among the sentences; each opens with a subject and a verb (about 3 tokens).
      const parts: string[] = [];
      let left = target;
      for (let s = 0; s < sentences; s++) {
        const n = s === sentences - 1 ? left : Math.max(4, Math.round(left / (sentences - s)));
        const body = words(Math.max(1, n - 3));
        // Some candidates mention the query's topic, as a vector search's neighbours would.
        if (rand() < 0.3) body[Math.floor(rand() * body.length)] = topic;
        parts.push(`${pick(SUBJECTS).split(' ')[0]} ${pick(VERBS).split(' ')[0]} ${pick(FILLER)} ${body.join(' ')}.`);
        left -= n;
      }
      return { id: `q${qi}c${ci}`, text: parts.join(' '), score: 0.9 - ci * 0.01 };
    });
    return { text, candidates: cands };
  });
}

const median = (xs: readonly number[]) => percentile(xs, 50);
const round = (x: number, d = 2) => Number(x.toFixed(d));

/** `warmup` untimed reranks, cycling through the queries. */
async function warmUp(provider: RerankProvider, queries: readonly Query[], warmup: number): Promise<void> {
  for (let i = 0; i < warmup; i++) {
    const q = queries[i % queries.length]!;
    await provider.rerank(q.text, q.candidates);
  }
}

/** Times `provider.rerank` over every query, after `warmup` untimed ones; ms per query. */
async function timeReranks(provider: RerankProvider, queries: readonly Query[], warmup: number): Promise<number[]> {
  await warmUp(provider, queries, warmup);
  const out: number[] = [];
  for (const q of queries) {
    const t0 = performance.now();
    await provider.rerank(q.text, q.candidates);
    out.push(performance.now() - t0);
  }
  return out;
}

/**
 * The model's feed-forward block alone, [tokens, H] × [H, I] then × [I, H]: the largest GEMMs
 * the model runs, at the token count of one query. With `int8`, each is DynamicQuantizeLinear →
 * MatMulInteger → Cast → Mul, the layout of the quantised model's dense layers.
 */
async function floorModel(hidden: number, inter: number, int8: boolean, seed: number): Promise<Uint8Array> {
  const { onnx } = (await import('onnx-proto')).default;
  const rand = rng(seed);
  const g = new GraphBuilder();
  const matmul = (x: string, rows: number, cols: number, name: string): string => {
    if (!int8) {
      const w = Float32Array.from({ length: rows * cols }, () => (rand() - 0.5) * 0.1);
      return g.one('MatMul', [x, g.init(`${name}.weight`, [rows, cols], w)], name);
    }
    const w = Int8Array.from({ length: rows * cols }, () => Math.floor(rand() * 255) - 127);
    const [xq, xs, xzp] = g.op('DynamicQuantizeLinear', [x], `${name}_x`, {}, 3) as [string, string, string];
    const acc = g.one('MatMulInteger', [xq, g.init(`${name}.weight`, [rows, cols], w), xzp, g.init(`${name}.zp`, [], new Int8Array(1))], `${name}_int32`);
    const scale = g.one('Mul', [xs, g.floats(`${name}.scale`, [0.001], true)], `${name}_scale`);
    return g.one('Mul', [g.one('Cast', [acc], `${name}_float`, { to: DType.FLOAT }), scale], name);
  };
  const y = matmul(matmul('x', hidden, inter, 'ffn_in'), inter, hidden, 'ffn_out');
  return onnx.ModelProto.encode({
    irVersion: 8,
    producerName: 'relay-memory bench rerank',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: int8 ? 'ffn_int8' : 'ffn_fp32',
      node: g.nodes,
      initializer: g.initializers,
      input: [valueInfo('x', DType.FLOAT, ['tokens', hidden])],
      output: [valueInfo(y, DType.FLOAT, ['tokens', hidden])],
    },
  }).finish();
}

/** One FFN floor, open beside the model so that the two are timed in turns. */
export interface Floor {
  /** FLOPs of one pass: the query's tokens through the FFN. */
  flops: number;
  /** How many runs the pass splits the tokens into (1, 2 or 4): the fastest, chosen by `openFloor`. */
  splits: number;
  /** Times `runs` passes, ms each. */
  time(runs: number): Promise<number[]>;
  close(): Promise<void>;
}

/**
 * The FFN floor on one query's tokens, split whole, in 2 and in 4 equal runs, the fastest kept
 * (by the median of `probeRuns` passes): on this CPU a single [1250, 1536] intermediate (7.7 MB)
 * falls out of cache and runs at ~60% of the split runs' rate, and a floor the model's own
 * batching beats would not be a floor. Each with onnxruntime's threads spinning and sleeping
 * (NO_SPINNING), the faster kept, for the same reason. Its FLOP/s are measured later, in turns
 * with the model.
 */
async function openFloor(hidden: number, inter: number, tokens: number, threads: number, int8: boolean, probeRuns: number, seed: number): Promise<Floor> {
  const ort = await import('onnxruntime-node');
  const model = await floorModel(hidden, inter, int8, seed);
  const rand = rng(seed ^ 0xf1);
  const xsOf = (splits: number) =>
    Array.from({ length: splits }, (_, i) => Math.floor(tokens / splits) + (i < tokens % splits ? 1 : 0))
      .filter((n) => n > 0)
      .map((n) => new ort.Tensor('float32', Float32Array.from({ length: n * hidden }, () => rand() * 2 - 1), [n, hidden]));
  const inputs = [1, 2, 4].map(xsOf);
  // With onnxruntime's threads spinning (its default) and sleeping (the reranker's NO_SPINNING):
  // spinning is the faster floor on a quiet CPU, sleeping beside a busy core.
  const sessions: InferenceSession[] = [];
  try {
    let best: { splits: number; session: InferenceSession; xs: Tensor[]; ms: number } | undefined;
    for (const extra of [{}, NO_SPINNING]) {
      const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', executionMode: 'sequential', intraOpNumThreads: threads, extra });
      sessions.push(session);
      for (const xs of inputs) {
        await passes(session, xs, 3);
        const ms = median(await passes(session, xs, probeRuns));
        if (!best || ms < best.ms) best = { splits: xs.length, session, xs, ms };
      }
    }
    const { session, xs, splits } = best!;
    await Promise.all(sessions.filter((s) => s !== session).map((s) => s.release()));
    return { flops: 2 * tokens * hidden * inter * 2, splits, time: (runs) => passes(session, xs, runs), close: () => session.release() };
  } catch (e) {
    await Promise.all(sessions.map((s) => s.release()));
    throw e;
  }
}

/** `runs` passes of `xs` through the floor's session, ms each. */
async function passes(session: InferenceSession, xs: readonly Tensor[], runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    for (const x of xs) await session.run({ x });
    times.push(performance.now() - t0);
  }
  return times;
}

/**
 * The model's reranks and the floor's passes in turns: `slices` slices in ABBA order, each a
 * share of the queries and of `floorRuns`, so that a neighbour's load or a clock change lands on
 * both sides of the efficiency ratio alike (timed one after the other, single runs of the fp32
 * figure spread 0.39–0.82 within one bench:check). Each side starts settled: a 50 ms pause, then
 * one untimed pass, because a floor timed straight after the model ran up to 2× slower for its
 * first ~60 ms (the model's garbage and thread wake-ups, not the GEMM). ms per query and per pass.
 */
export async function timeInTurns(provider: RerankProvider, queries: readonly Query[], floor: Floor, floorRuns: number, warmup: number): Promise<{ model: number[]; floor: number[] }> {
  await warmUp(provider, queries, warmup);
  const slices = Math.min(8, queries.length);
  const model: number[] = [];
  const floorTimes: number[] = [];
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
  for (let k = 0; k < slices; k++) {
    const from = (n: number) => Math.floor((n * k) / slices);
    const to = (n: number) => Math.floor((n * (k + 1)) / slices);
    const runModel = async () => {
      await settle();
      // Its one untimed pass is the slice's first query.
      model.push(...(await timeReranks(provider, queries.slice(from(queries.length), to(queries.length)), 1)));
    };
    const runFloor = async () => {
      await settle();
      await floor.time(1);
      floorTimes.push(...(await floor.time(Math.max(1, to(floorRuns) - from(floorRuns)))));
    };
    // ABBA: floor, model, model, floor, …
    await inTurns(k, runFloor, runModel);
  }
  return { model, floor: floorTimes };
}

/** What the budget run saw: each call's ms, candidates reranked in all, and fallbacks. */
interface BudgetRun {
  times: number[];
  reranked: number;
  fallbacks: number;
}

/** `maybeRerank` on every query in turn, as the query path calls it. */
async function budgetRun(maybe: MaybeRerank, queries: readonly Query[], mode: RerankMode = 'auto'): Promise<BudgetRun> {
  const run: BudgetRun = { times: [], reranked: 0, fallbacks: 0 };
  for (const [i, q] of queries.entries()) {
    const t0 = performance.now();
    const r = await maybe(q.text, q.candidates, { tenantId: 'bench', userId: `u${i}`, mode });
    run.times.push(performance.now() - t0);
    run.reranked += r.reranked;
    if (r.fallback) run.fallbacks++;
  }
  return run;
}

/**
 * One core kept busy by another process (a neighbour's batch job) until `stop`. It also ends
 * itself within 0.1 s of the bench going away by any means (its parent changes).
 */
function busyLoop(): { stop: () => Promise<void> } {
  const spin = 'const parent = process.ppid; for (;;) { const end = Date.now() + 100; while (Date.now() < end); if (process.ppid !== parent) process.exit(0); }';
  return child(['-e', spin], {});
}

/** The quantized GEMMs of an int8 model as onnxruntime runs them, fused or not. */
const QUANTIZED_GEMMS = new Set(['DynamicQuantizeLinear', 'DynamicQuantizeMatMul', 'MatMulInteger', 'MatMulIntegerToFloat', 'QGemm', 'QLinearMatMul']);

/**
 * Operator time by operator (shares of the sum), from onnxruntime's profile of `queries`
 * reranked once each after `warmup` on a profiling copy of the model: the copy is not the one
 * timed, as the profiler's bookkeeping costs a little on every operator.
 */
async function opShares(open: (profilePrefix: string) => Promise<OnnxReranker>, queries: readonly Query[], warmup: number): Promise<Map<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'relay-rerank-profile-'));
  try {
    const provider = await open(join(dir, 'int8'));
    try {
      await warmUp(provider, queries, warmup);
      for (const q of queries) await provider.rerank(q.text, q.candidates);
    } finally {
      await provider.close?.();
    }
    const [file] = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    if (!file) throw new Error('bench rerank: onnxruntime wrote no profile');
    const events = JSON.parse(await readFile(join(dir, file), 'utf8')) as Array<{ cat?: string; name?: string; dur?: number; args?: { op_name?: string } }>;
    const byOp = new Map<string, number>();
    let total = 0;
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || typeof e.dur !== 'number') continue;
      const op = e.args?.op_name ?? 'unknown';
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
      total += e.dur;
    }
    if (total === 0) throw new Error('bench rerank: the profile holds no operator times');
    return new Map([...byOp].sort((a, b) => b[1] - a[1]).map(([op, us]) => [op, us / total]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `relay bench rerank`: the ONNX cross-encoder (fp32 and int8) on generated memory chunks,
 * against the CPU's own GEMM throughput on the model's FFN shape, the lexical reranker, no
 * reranker, and `maybeRerank` holding a budget. Runs in-process; needs no database.
 */
export async function benchRerank(opts: RerankBenchOptions = {}): Promise<RerankBenchSummary> {
  const queryCount = opts.queries ?? 100;
  const candidateCount = opts.candidates ?? 20;
  const budgetMs = opts.budgetMs ?? 150;
  const seed = opts.seed ?? 1;
  const modelName = opts.model ?? 'minilm-l6-shape';
  const batchSize = opts.batchSize ?? 16;
  const threads = opts.threads ?? availableParallelism();
  const maxLength = opts.maxLength ?? 128;
  const warmup = opts.warmup ?? 5;
  const floorRuns = opts.floorRuns ?? 30;
  const probeRuns = Math.max(1, Math.min(10, floorRuns));
  const log = opts.log ?? (() => {});
  const shape = TEST_MODELS[modelName];
  if (!(queryCount >= 1 && candidateCount >= 2)) throw new RangeError(`bench rerank needs at least 1 query and 2 candidates, got ${queryCount} and ${candidateCount}`);

  log(`model ${modelName}: generating or loading from the cache`);
  const modelDir = await ensureTestModel(modelName, opts.cacheDir ? { cacheDir: opts.cacheDir } : {});
  const queries = workload(queryCount, candidateCount, seed);
  const open = (quantized: boolean) => createOnnxReranker({ modelDir, maxLength, batchSize, threads, quantized, executionProviders: ['cpu'] });

  let fp32: OnnxReranker | undefined;
  let int8: OnnxReranker | undefined;
  try {
    fp32 = await open(false);
    const pairTokens = queries.map((q) => fp32!.pairTokens(q.text, q.candidates));
    const queryTokens = pairTokens.map((p) => p.reduce((a, b) => a + b, 0));
    const meanQueryTokens = queryTokens.reduce((a, b) => a + b, 0) / queryTokens.length;
    const meanPairTokens = meanQueryTokens / candidateCount;
    const flopsPerQuery = meanQueryTokens * fp32.flopsPerToken;
    log(`${queryCount} queries × ${candidateCount} candidates, ${round(meanPairTokens, 1)} tokens a pair, ${round(flopsPerQuery / 1e9)} GFLOP a query; ${threads} threads, batch ${batchSize}`);

    // Each floor is opened beside its model and timed in turns with it (timeInTurns).
    const floorTokens = Math.max(1, Math.round(meanQueryTokens));
    const floorFp32 = await openFloor(shape.hidden, shape.intermediate, floorTokens, threads, false, probeRuns, seed);
    await fp32.warm?.();
    const fp32Run = await timeInTurns(fp32, queries, floorFp32, floorRuns, warmup).finally(() => floorFp32.close());
    const fp32Times = fp32Run.model;
    const floor = floorFp32.flops / (median(fp32Run.floor) / 1000);
    log(`fp32: p50 ${median(fp32Times)} ms, p95 ${percentile(fp32Times, 95)} ms; floor on ${floorTokens} tokens in turns with it: ${round(floor / 1e9, 1)} GFLOP/s (in ${floorFp32.splits} runs)`);

    // What the floor lets a budget hold: its FLOP/s over a pair's FLOPs, at most 20 and the candidates.
    const flopsPerPair = flopsPerQuery / candidateCount;
    const allowed = (floorFlopsPerS: number) => Math.min(20, candidateCount, ((budgetMs / 1000) * floorFlopsPerS) / flopsPerPair);
    // The budget run straight after, on the same session, with the throughput it has measured.
    const budget = await budgetRun(createMaybeRerank({ reranker: fp32, budgetMs }), queries);
    const utilization = budget.reranked / queryCount / allowed(floor);
    log(`maybeRerank at ${budgetMs} ms: p50 ${median(budget.times)} ms, p95 ${percentile(budget.times, 95)} ms, ${round(budget.reranked / queryCount, 1)} reranked on average where the floor allows ${round(allowed(floor), 1)} (utilization ${round(utilization, 3)}), ${budget.fallbacks} fallbacks`);

    // Again beside a one-core busy loop, against the floor measured beside it: the estimate must
    // follow the slower model rather than overrun the budget or rerank too few.
    const busy = busyLoop();
    let busyRun: BudgetRun;
    let floorBusy: number;
    try {
      const floorBeside = await openFloor(shape.hidden, shape.intermediate, floorTokens, threads, false, probeRuns, seed);
      try {
        floorBusy = floorBeside.flops / (median(await floorBeside.time(probeRuns)) / 1000);
      } finally {
        await floorBeside.close();
      }
      // A few calls to let the estimate learn the new rate, as a server's first queries would.
      const maybe = createMaybeRerank({ reranker: fp32, budgetMs });
      await budgetRun(maybe, queries.slice(0, warmup));
      busyRun = await budgetRun(maybe, queries);
    } finally {
      await busy.stop();
    }
    const utilizationBusy = busyRun.reranked / queryCount / allowed(floorBusy);
    log(`beside a busy loop: floor ${round(floorBusy / 1e9, 1)} GFLOP/s, p50 ${median(busyRun.times)} ms, p95 ${percentile(busyRun.times, 95)} ms, ${round(busyRun.reranked / queryCount, 1)} reranked where the floor allows ${round(allowed(floorBusy), 1)} (utilization ${round(utilizationBusy, 3)}), ${busyRun.fallbacks} fallbacks`);
    await fp32.close?.();
    fp32 = undefined;

    int8 = await open(true);
    const floorInt8Run = await openFloor(shape.hidden, shape.intermediate, floorTokens, threads, true, probeRuns, seed);
    await int8.warm?.();
    const int8Run = await timeInTurns(int8, queries, floorInt8Run, floorRuns, warmup).finally(() => floorInt8Run.close());
    const int8Times = int8Run.model;
    const floorInt8 = floorInt8Run.flops / (median(int8Run.floor) / 1000);
    log(`int8: p50 ${median(int8Times)} ms, p95 ${percentile(int8Times, 95)} ms; int8 floor in turns with it: ${round(floorInt8 / 1e9, 1)} GFLOP/s (in ${floorInt8Run.splits} runs)`);
    await int8.close?.();
    int8 = undefined;
    const shares = await opShares((profilePrefix) => createOnnxReranker({ modelDir, maxLength, batchSize, threads, quantized: true, executionProviders: ['cpu'], profilePrefix }), queries.slice(0, 20), warmup);
    const outside = [...shares].reduce((sum, [op, share]) => (QUANTIZED_GEMMS.has(op) ? sum : sum + share), 0);
    log(`int8 operator time outside the quantized GEMMs: ${round(outside * 100, 1)}% (${[...shares].slice(0, 5).map(([op, share]) => `${op} ${round(share * 100, 1)}%`).join(', ')})`);

    const lexicalTimes = await timeReranks(createLexicalReranker(), queries, warmup);
    const { times: noneTimes } = await budgetRun(createMaybeRerank({ reranker: createLexicalReranker() }), queries, 'off');

    const efficiency = (ms: number, floorFlopsPerS: number) => round(flopsPerQuery / (ms / 1000) / floorFlopsPerS, 3);
    // The goal's keys first, in the order the issue lists them; the extras after.
    return {
      bench: 'rerank',
      p50_ms: median(fp32Times),
      p95_ms: percentile(fp32Times, 95),
      p95_ms_int8: percentile(int8Times, 95),
      candidates: candidateCount,
      efficiency: efficiency(median(fp32Times), floor),
      efficiency_int8: efficiency(median(int8Times), floorInt8),
      efficiency_int8_ceiling: round(1 - outside, 3),
      budget_p95_ms: percentile(budget.times, 95),
      reranked_mean: round(budget.reranked / queryCount, 2),
      budget_utilization: round(utilization, 3),
      budget_utilization_busy: round(utilizationBusy, 3),
      budget_p95_ms_busy: percentile(busyRun.times, 95),
      lexical_p95_ms: percentile(lexicalTimes, 95),
      threads,
      p50_ms_int8: median(int8Times),
      floor_gflops: round(floor / 1e9, 1),
      floor_gflops_int8: round(floorInt8 / 1e9, 1),
      floor_splits: floorFp32.splits,
      floor_splits_int8: floorInt8Run.splits,
      mean_pair_tokens: round(meanPairTokens, 1),
      gflop_per_query: round(flopsPerQuery / 1e9, 3),
      none_p95_ms: percentile(noneTimes, 95),
      budget_ms: budgetMs,
      budget_fallbacks: budget.fallbacks,
      floor_gflops_busy: round(floorBusy / 1e9, 1),
      int8_op_shares: Object.fromEntries([...shares].map(([op, share]) => [op, round(share, 3)])),
      batch_size: batchSize,
      queries: queryCount,
      model: modelName,
    };
  } finally {
    await fp32?.close?.();
    await int8?.close?.();
  }
}

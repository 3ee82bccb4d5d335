import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { loadConfig } from '../../src/config/index.ts';
import {
  createLexicalReranker,
  createMaybeRerank,
  rolloutBucket,
  type MaybeRerankOptions,
  type RerankCandidate,
  type RerankContext,
  type RerankFallbackReason,
  type RerankProvider,
  type RerankScore,
} from '../../src/rerank/index.ts';

interface Row extends RerankCandidate {
  createdAt: string;
}

const ROWS: Row[] = Array.from({ length: 6 }, (_, i) => ({ id: `r${i}`, text: `chunk ${i}`, score: 0.9 - i * 0.1, createdAt: `2025-01-0${i + 1}` }));
const CTX: RerankContext = { tenantId: 't1', userId: 'u1', mode: 'auto' };
const ids = (xs: readonly { id: string }[]) => xs.map((x) => x.id);

/** Scores reversing the search order (the last candidate is best), so a rerank is visible. */
function reverse(candidates: readonly RerankCandidate[]): RerankScore[] {
  return candidates.map((c, i) => ({ id: c.id, score: (i + 1) / (candidates.length + 1) })).reverse();
}

interface Recorder {
  fallbacks: RerankFallbackReason[];
  seconds: Array<[string, number]>;
  hooks: NonNullable<MaybeRerankOptions['hooks']>;
}

function recorder(): Recorder {
  const r: Recorder = {
    fallbacks: [],
    seconds: [],
    hooks: {
      fallback: (reason) => r.fallbacks.push(reason),
      seconds: (provider, s) => r.seconds.push([provider, s]),
    },
  };
  return r;
}

/** A provider written inline per test: `calls` records what each call was given. */
function provider(impl: (q: string, cs: readonly RerankCandidate[], signal: AbortSignal | undefined) => Promise<RerankScore[]> | RerankScore[], extra: Partial<RerankProvider> = {}) {
  const calls: Array<{ candidates: readonly RerankCandidate[]; signal: AbortSignal | undefined }> = [];
  const p: RerankProvider = {
    provider: 'onnx',
    id: 'test',
    rerank: (q, cs, o) => {
      calls.push({ candidates: cs, signal: o?.signal });
      return impl(q, cs, o?.signal) as Promise<RerankScore[]>;
    },
    ...extra,
  };
  return { p, calls };
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason as Error);
    });
  });
}

describe('maybeRerank: when to rerank', () => {
  it('reranks: reordered candidates keep their fields and gain rerankScore in [0, 1]; seconds observed', async () => {
    const rec = recorder();
    const { p } = provider((_q, cs) => reverse(cs));
    const maybe = createMaybeRerank({ reranker: p, hooks: rec.hooks });
    const out = await maybe('q', ROWS, CTX);
    assert.deepEqual(ids(out.candidates), ['r5', 'r4', 'r3', 'r2', 'r1', 'r0']);
    assert.equal(out.reranked, 6);
    assert.equal(out.fallback, undefined);
    assert.equal(out.candidates[0]!.createdAt, '2025-01-06');
    assert.equal(out.candidates[0]!.score, ROWS[5]!.score, 'the vector score is kept');
    for (const c of out.candidates) assert.ok(c.rerankScore! > 0 && c.rerankScore! < 1);
    assert.deepEqual(rec.fallbacks, []);
    assert.equal(rec.seconds.length, 1);
    assert.equal(rec.seconds[0]![0], 'onnx');
    assert.ok(rec.seconds[0]![1] >= 0 && rec.seconds[0]![1] < 0.1);
  });

  it('disabled (RELAY_RERANK=off): search order, `disabled` counted, even for mode on', async () => {
    const rec = recorder();
    const { p, calls } = provider((_q, cs) => reverse(cs));
    const maybe = createMaybeRerank({ reranker: p, enabled: false, hooks: rec.hooks });
    for (const mode of ['auto', 'on'] as const) {
      const out = await maybe('q', ROWS, { ...CTX, mode });
      assert.deepEqual(ids(out.candidates), ids(ROWS));
      assert.equal(out.fallback, 'disabled');
      assert.equal(out.reranked, 0);
    }
    assert.equal(calls.length, 0);
    assert.deepEqual(rec.fallbacks, ['disabled', 'disabled']);
  });

  it('mode off: search order, no call, and not a fallback', async () => {
    const rec = recorder();
    const { p, calls } = provider((_q, cs) => reverse(cs));
    const out = await createMaybeRerank({ reranker: p, hooks: rec.hooks })('q', ROWS, { ...CTX, mode: 'off' });
    assert.deepEqual(ids(out.candidates), ids(ROWS));
    assert.equal(out.fallback, undefined);
    assert.equal(calls.length, 0);
    assert.deepEqual(rec.fallbacks, []);
  });

  it('rollout: outside the percent is `disabled`; mode on forces a rerank', async () => {
    const rec = recorder();
    const { p, calls } = provider((_q, cs) => reverse(cs));
    const maybe = createMaybeRerank({ reranker: p, percent: 0, hooks: rec.hooks });
    const auto = await maybe('q', ROWS, CTX);
    assert.equal(auto.fallback, 'disabled');
    const on = await maybe('q', ROWS, { ...CTX, mode: 'on' });
    assert.equal(on.fallback, undefined);
    assert.equal(on.reranked, 6);
    assert.equal(calls.length, 1);
    assert.deepEqual(rec.fallbacks, ['disabled']);
  });

  it('rollout is consistent per user and reaches about `percent` of users', async () => {
    const { p } = provider((_q, cs) => reverse(cs));
    const maybe = createMaybeRerank({ reranker: p, percent: 30 });
    let inRollout = 0;
    const users = 2000;
    for (let u = 0; u < users; u++) {
      const ctx = { ...CTX, userId: `user-${u}` };
      const first = await maybe('q', ROWS, ctx);
      const again = await maybe('other query', ROWS, ctx);
      assert.equal(first.fallback, again.fallback, `user-${u} flipped`);
      if (first.fallback === undefined) inRollout++;
      assert.equal(first.fallback === undefined, rolloutBucket('t1', `user-${u}`) < 30);
    }
    const share = inRollout / users;
    assert.ok(share > 0.26 && share < 0.34, `share ${share}`);
  });

  it('rolloutBucket is pinned (the same in every process and release) and depends on the tenant', () => {
    assert.equal(rolloutBucket('t1', 'u1'), rolloutBucket('t1', 'u1'));
    const pinned = [rolloutBucket('acme', 'alice'), rolloutBucket('acme', 'bob'), rolloutBucket('globex', 'alice')];
    assert.deepEqual(pinned, PINNED_BUCKETS);
    for (const b of pinned) assert.ok(Number.isInteger(b) && b >= 0 && b < 100);
  });

  it('fewer than 2 candidates: `few_candidates`, no call', async () => {
    const rec = recorder();
    const { p, calls } = provider((_q, cs) => reverse(cs));
    const maybe = createMaybeRerank({ reranker: p, hooks: rec.hooks });
    assert.deepEqual(await maybe('q', [], CTX), { candidates: [], reranked: 0, fallback: 'few_candidates' });
    const one = await maybe('q', ROWS.slice(0, 1), CTX);
    assert.deepEqual(ids(one.candidates), ['r0']);
    assert.equal(one.fallback, 'few_candidates');
    assert.equal(calls.length, 0);
    assert.deepEqual(rec.fallbacks, ['few_candidates', 'few_candidates']);
  });

  it('takes its settings from RerankConfig by spreading it, with the lexical reranker end to end', async () => {
    const cfg = loadConfig({ RELAY_RERANK_PERCENT: '100', RELAY_RERANK_BUDGET_MS: '250' }).rerank;
    const maybe = createMaybeRerank({ ...cfg, reranker: createLexicalReranker() });
    const rows = [
      { id: 'a', text: 'the cat sat', score: 0.5 },
      { id: 'b', text: 'alice plays the cello', score: 0.4 },
    ];
    const out = await maybe('cello', rows, CTX);
    assert.deepEqual(ids(out.candidates), ['b', 'a']);
    assert.equal(maybe.breakerState(), 'closed');
  });

  it('refuses nonsense options at creation', () => {
    const { p } = provider((_q, cs) => reverse(cs));
    assert.throws(() => createMaybeRerank({ reranker: p, percent: 101 }), RangeError);
    assert.throws(() => createMaybeRerank({ reranker: p, budgetMs: 0 }), RangeError);
    assert.throws(() => createMaybeRerank({ reranker: p, safety: 0 }), RangeError);
    assert.throws(() => createMaybeRerank({ reranker: p, breaker: { failures: 0, cooldownMs: 10 } }), RangeError);
    assert.throws(() => createMaybeRerank({ reranker: p, probeEveryMs: -1 }), RangeError);
    assert.throws(() => createMaybeRerank({ reranker: p, probeEveryMs: Number.NaN }), RangeError);
  });
});

describe('maybeRerank: the latency budget', () => {
  // Speed is for the benchmarks: these assert what the budget did (cut the work, aborted its
  // signal, counted the fallback), with bounds that hold on a busy machine.
  it('a provider that sleeps past the budget: search order after the budget, its signal aborted, `timeout` counted', async () => {
    const rec = recorder();
    let finished = false;
    const { p, calls } = provider(async (_q, cs, signal) => {
      await sleep(10_000, signal);
      finished = true;
      return reverse(cs);
    });
    const maybe = createMaybeRerank({ reranker: p, budgetMs: 60, hooks: rec.hooks });
    const started = performance.now();
    const out = await maybe('q', ROWS, CTX);
    const elapsed = performance.now() - started;
    assert.deepEqual(ids(out.candidates), ids(ROWS));
    assert.equal(out.fallback, 'timeout');
    assert.equal(out.reranked, 0);
    assert.ok(elapsed >= 55, `returned before the budget: ${elapsed} ms`);
    // It did not wait for the provider's 10 s: the work was still unfinished when it returned.
    assert.ok(elapsed < 5_000, `took ${elapsed} ms`);
    assert.equal(calls[0]!.signal!.aborted, true, 'the late work was not cancelled');
    assert.equal((calls[0]!.signal!.reason as DOMException).name, 'TimeoutError');
    assert.equal(finished, false, 'the provider finished: the budget did not cut it');
    assert.deepEqual(rec.fallbacks, ['timeout']);
    assert.equal(rec.seconds.length, 1, 'a timed-out call is observed too');
    assert.ok(rec.seconds[0]![1] >= 0.05);
  });

  it('a provider that ignores its signal cannot hold the query past the budget', async () => {
    const { p } = provider(() => new Promise<RerankScore[]>(() => {}));
    const started = performance.now();
    const out = await createMaybeRerank({ reranker: p, budgetMs: 40 })('q', ROWS, CTX);
    // The provider never settles: returning at all is the budget's doing; the bound (50 × the
    // budget) only says it was this budget, not some far longer default.
    assert.equal(out.fallback, 'timeout');
    assert.ok(performance.now() - started < 2_000);
  });

  it('the budget timer fires 2 ms early (at most 2% early), so the fallback answer lands inside the budget', async () => {
    // Timed on node:test's mock clock: which instant the timer is set for, not how late a real
    // one fires.
    const flush = () => new Promise((resolve) => setImmediate(resolve));
    for (const [budgetMs, quiet, fired] of [[150, 147, 148], [40, 38, 40]] as const) {
      mock.timers.enable({ apis: ['setTimeout'] });
      try {
        const { p, calls } = provider(() => new Promise<RerankScore[]>(() => {}));
        const pending = createMaybeRerank({ reranker: p, budgetMs })('q', ROWS, CTX);
        await flush();
        assert.equal(calls.length, 1);
        mock.timers.tick(quiet);
        await flush();
        assert.equal(calls[0]!.signal!.aborted, false, `budget ${budgetMs}: aborted by ${quiet} ms`);
        mock.timers.tick(fired - quiet);
        const out = await pending;
        assert.equal(calls[0]!.signal!.aborted, true, `budget ${budgetMs}: not aborted by ${fired} ms`);
        assert.equal(out.fallback, 'timeout');
      } finally {
        mock.timers.reset();
      }
    }
  });

  it('estimateMs: reranks the best-ranked prefix that fits 0.8 × budget, the rest below in search order', async () => {
    const { p, calls } = provider((_q, cs) => reverse(cs), { estimateMs: (_q, cs) => cs.map(() => 19) });
    const out = await createMaybeRerank({ reranker: p, budgetMs: 100 })('q', ROWS, CTX);
    assert.deepEqual(ids(calls[0]!.candidates), ['r0', 'r1', 'r2', 'r3'], '4 × 19 ms fit in 0.8 × 100 ms, 5 do not');
    assert.equal(out.reranked, 4);
    assert.deepEqual(ids(out.candidates), ['r3', 'r2', 'r1', 'r0', 'r4', 'r5']);
    assert.equal(out.candidates[4]!.rerankScore, undefined);
    assert.equal(out.fallback, undefined);
  });

  it('estimateMs of uneven cost: the prefix stops at the first candidate that does not fit', async () => {
    const { p, calls } = provider((_q, cs) => reverse(cs), { estimateMs: () => [10, 30, 30, 20, 1, 1] });
    const out = await createMaybeRerank({ reranker: p, budgetMs: 100, safety: 0.75 })('q', ROWS, CTX);
    assert.deepEqual(ids(calls[0]!.candidates), ['r0', 'r1', 'r2']);
    assert.equal(out.reranked, 3);
  });

  it('when fewer than 2 fit: no call, `timeout`, and the breaker is not charged, but once per probeEveryMs the best 2 go as a probe', async () => {
    const rec = recorder();
    const { p, calls } = provider((_q, cs) => reverse(cs), { estimateMs: (_q, cs) => cs.map(() => 50) });
    let t = 0;
    const maybe = createMaybeRerank({ reranker: p, budgetMs: 100, breaker: { failures: 1, cooldownMs: 60_000 }, hooks: rec.hooks, probeEveryMs: 1000, now: () => t });
    // Nothing sent yet: the estimate was never measured here, so the best 2 are sent.
    const probe = await maybe('q', ROWS, CTX);
    assert.equal(probe.fallback, undefined);
    assert.equal(probe.reranked, 2);
    assert.deepEqual(ids(probe.candidates), [ROWS[1]!.id, ROWS[0]!.id, ...ids(ROWS.slice(2))]);
    assert.deepEqual(calls.map((c) => ids(c.candidates)), [ids(ROWS.slice(0, 2))]);
    for (const at of [1, 999]) {
      t = at;
      const out = await maybe('q', ROWS, CTX);
      assert.equal(out.fallback, 'timeout');
      assert.equal(out.reranked, 0);
      assert.deepEqual(ids(out.candidates), ids(ROWS));
    }
    assert.equal(calls.length, 1, 'no call within probeEveryMs of the last one');
    assert.equal(rec.seconds.length, 1);
    assert.deepEqual(rec.fallbacks, ['timeout', 'timeout']);
    assert.equal(maybe.breakerState(), 'closed');
    t = 1000;
    assert.equal((await maybe('q', ROWS, CTX)).reranked, 2);
    assert.equal(calls.length, 2, 'probed again once probeEveryMs passed');
  });

  it('a probe that overruns the budget: search order at the budget, `timeout`, and the next probe waits probeEveryMs', async () => {
    const { p, calls } = provider((_q, cs, signal) => sleep(5_000, signal).then(() => reverse(cs)), { estimateMs: (_q, cs) => cs.map(() => 50) });
    const maybe = createMaybeRerank({ reranker: p, budgetMs: 30, probeEveryMs: 60_000 });
    const out = await maybe('q', ROWS, CTX);
    assert.equal(out.fallback, 'timeout');
    assert.deepEqual(ids(out.candidates), ids(ROWS));
    assert.equal(calls[0]!.signal!.aborted, true, 'the late probe was cancelled');
    assert.equal((await maybe('q', ROWS, CTX)).fallback, 'timeout');
    assert.equal(calls.length, 1);
  });

  it('with estimateMs, an overrun is the estimate missing, not the provider failing: `timeout`, the breaker stays closed, the next call goes', async () => {
    const rec = recorder();
    let slow = true;
    // The estimate says everything fits; the provider (a CPU that slowed down) overruns anyway.
    const { p, calls } = provider(
      async (_q, cs, signal) => {
        if (slow) await sleep(1000, signal);
        return reverse(cs);
      },
      { estimateMs: (_q, cs) => cs.map(() => 1) },
    );
    const maybe = createMaybeRerank({ reranker: p, budgetMs: 20, breaker: { failures: 2, cooldownMs: 60_000 }, hooks: rec.hooks });
    for (let i = 0; i < 4; i++) {
      const out = await maybe('q', ROWS, CTX);
      assert.equal(out.fallback, 'timeout');
      assert.deepEqual(ids(out.candidates), ids(ROWS));
      assert.equal(calls[i]!.signal!.aborted, true, 'the overrun call was cancelled');
    }
    assert.equal(maybe.breakerState(), 'closed');
    assert.deepEqual(rec.fallbacks, ['timeout', 'timeout', 'timeout', 'timeout']);
    assert.equal(calls.length, 4, 'every call went to the provider');
    slow = false;
    assert.equal((await maybe('q', ROWS, CTX)).reranked, 6);
    // Errors still count, estimate or not.
    const failing = provider(() => Promise.reject(new Error('model crashed')), { estimateMs: (_q, cs) => cs.map(() => 1) });
    const broken = createMaybeRerank({ reranker: failing.p, budgetMs: 20, breaker: { failures: 2, cooldownMs: 60_000 } });
    await broken('q', ROWS, CTX);
    assert.equal((await broken('q', ROWS, CTX)).fallback, 'error');
    assert.equal(broken.breakerState(), 'open');
  });

  it('unusable estimates (wrong length, NaN, a throw) are ignored: everything is reranked', async () => {
    for (const estimateMs of [() => [1, 2], () => ROWS.map(() => Number.NaN), (): number[] => { throw new Error('no stats yet'); }]) {
      const { p } = provider((_q, cs) => reverse(cs), { estimateMs });
      const out = await createMaybeRerank({ reranker: p })('q', ROWS, CTX);
      assert.equal(out.reranked, 6);
    }
  });

  it("the caller's abort cancels the work and returns the search order without a fallback", async () => {
    const rec = recorder();
    const { p, calls } = provider(async (_q, cs, signal) => {
      await sleep(30_000, signal);
      return reverse(cs);
    });
    const maybe = createMaybeRerank({ reranker: p, budgetMs: 20_000, breaker: { failures: 1, cooldownMs: 60_000 }, hooks: rec.hooks });
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('client gone')), 30);
    const started = performance.now();
    const out = await maybe('q', ROWS, { ...CTX, signal: ac.signal });
    // Neither the provider's 30 s nor the 20 s budget: the abort ended it.
    assert.ok(performance.now() - started < 10_000);
    assert.deepEqual(ids(out.candidates), ids(ROWS));
    assert.equal(out.fallback, undefined);
    assert.equal(calls[0]!.signal!.aborted, true);
    assert.deepEqual(rec.fallbacks, []);
    assert.equal(maybe.breakerState(), 'closed', 'a client leaving is not the provider failing');
  });

  it('a reranker still loading counts against the budget; the load continues for later queries', async () => {
    const { p } = provider((_q, cs) => reverse(cs));
    let loads = 0;
    const loading = sleep(150).then(() => p);
    const maybe = createMaybeRerank({
      reranker: () => {
        loads++;
        return loading;
      },
      budgetMs: 40,
      breaker: { failures: 1, cooldownMs: 60_000 },
    });
    const first = await maybe('q', ROWS, CTX);
    assert.equal(first.fallback, 'timeout');
    assert.equal(maybe.breakerState(), 'closed', 'waiting for a load is not a failure');
    await loading;
    const later = await maybe('q', ROWS, CTX);
    assert.equal(later.reranked, 6);
    assert.equal(loads, 2);
  });
});

describe('maybeRerank: circuit breaker', () => {
  const failing = () => provider(() => Promise.reject(new Error('boom')));

  it('closed → open after N consecutive failures → half-open after the cool-down → closed on a good probe', async () => {
    const rec = recorder();
    let healthy = false;
    let t = 0;
    const { p, calls } = provider(async (_q, cs) => {
      if (!healthy) throw new Error('down');
      await sleep(30);
      return reverse(cs);
    });
    const maybe = createMaybeRerank({ reranker: p, breaker: { failures: 3, cooldownMs: 1000 }, hooks: rec.hooks, now: () => t });
    for (let i = 0; i < 3; i++) assert.equal((await maybe('q', ROWS, CTX)).fallback, 'error');
    assert.equal(maybe.breakerState(), 'open');
    const skipped = await maybe('q', ROWS, CTX);
    assert.equal(skipped.fallback, 'circuit_open');
    assert.deepEqual(ids(skipped.candidates), ids(ROWS));
    assert.equal(calls.length, 3, 'an open breaker does not call');
    t = 999;
    assert.equal((await maybe('q', ROWS, CTX)).fallback, 'circuit_open');
    t = 1000;
    assert.equal(maybe.breakerState(), 'half_open');
    healthy = true;
    const [probe, other] = await Promise.all([maybe('q', ROWS, CTX), maybe('q', ROWS, CTX)]);
    assert.equal(probe.reranked, 6, 'the probe goes through');
    assert.equal(other.fallback, 'circuit_open', 'only one probe at a time');
    assert.equal(calls.length, 4);
    assert.equal(maybe.breakerState(), 'closed');
    assert.equal((await maybe('q', ROWS, CTX)).reranked, 6);
    assert.deepEqual(rec.fallbacks, ['error', 'error', 'error', 'circuit_open', 'circuit_open', 'circuit_open']);
  });

  it('a failed probe reopens it and restarts the cool-down', async () => {
    let t = 0;
    const { p, calls } = failing();
    const maybe = createMaybeRerank({ reranker: p, breaker: { failures: 2, cooldownMs: 100 }, now: () => t });
    await maybe('q', ROWS, CTX);
    await maybe('q', ROWS, CTX);
    assert.equal(maybe.breakerState(), 'open');
    t = 150;
    assert.equal((await maybe('q', ROWS, CTX)).fallback, 'error', 'the probe ran and failed');
    assert.equal(calls.length, 3);
    assert.equal(maybe.breakerState(), 'open');
    t = 249;
    assert.equal((await maybe('q', ROWS, CTX)).fallback, 'circuit_open');
    t = 250;
    assert.equal(maybe.breakerState(), 'half_open');
  });

  it('timeouts count as failures (a provider without estimateMs); a success resets the count (failures must be consecutive)', async () => {
    let mode: 'ok' | 'slow' = 'slow';
    const { p } = provider(async (_q, cs, signal) => {
      if (mode === 'slow') await sleep(1000, signal);
      return reverse(cs);
    });
    const maybe = createMaybeRerank({ reranker: p, budgetMs: 20, breaker: { failures: 3, cooldownMs: 60_000 } });
    await maybe('q', ROWS, CTX);
    await maybe('q', ROWS, CTX);
    mode = 'ok';
    assert.equal((await maybe('q', ROWS, CTX)).reranked, 6);
    mode = 'slow';
    await maybe('q', ROWS, CTX);
    await maybe('q', ROWS, CTX);
    assert.equal(maybe.breakerState(), 'closed');
    assert.equal((await maybe('q', ROWS, CTX)).fallback, 'timeout');
    assert.equal(maybe.breakerState(), 'open');
  });

  it('a reranker whose load fails is an error that the breaker counts, and a later load is tried', async () => {
    const { p } = provider((_q, cs) => reverse(cs));
    let attempts = 0;
    const maybe = createMaybeRerank({
      reranker: () => {
        if (++attempts === 1) throw new Error('model file missing');
        return Promise.resolve(p);
      },
      breaker: { failures: 2, cooldownMs: 60_000 },
    });
    assert.equal((await maybe('q', ROWS, CTX)).fallback, 'error');
    assert.equal((await maybe('q', ROWS, CTX)).reranked, 6);
  });
});

describe('maybeRerank never throws', () => {
  const garbage: Array<[string, (cs: readonly RerankCandidate[]) => unknown]> = [
    ['unknown ids', (cs) => cs.map((c, i) => ({ id: `${c.id}-x`, score: i / 10 }))],
    ['a repeated id', (cs) => cs.map((_c, i) => ({ id: cs[0]!.id, score: i / 10 }))],
    ['too few scores', (cs) => reverse(cs).slice(1)],
    ['a NaN score', (cs) => cs.map((c) => ({ id: c.id, score: Number.NaN }))],
    ['not an array', () => ({ scores: [] })],
    ['null entries', (cs) => cs.map(() => null)],
    ['undefined', () => undefined],
  ];
  for (const [what, answer] of garbage) {
    it(`a provider answering ${what}: search order, \`error\``, async () => {
      const rec = recorder();
      const { p } = provider((_q, cs) => answer(cs) as RerankScore[]);
      const out = await createMaybeRerank({ reranker: p, hooks: rec.hooks })('q', ROWS, CTX);
      assert.deepEqual(ids(out.candidates), ids(ROWS));
      assert.equal(out.fallback, 'error');
      assert.deepEqual(rec.fallbacks, ['error']);
      assert.equal(rec.seconds.length, 1);
    });
  }

  it('a provider that throws synchronously: search order, `error`', async () => {
    const p: RerankProvider = {
      provider: 'http',
      id: 'sync-thrower',
      rerank: () => {
        throw new TypeError('not even a promise');
      },
    };
    const out = await createMaybeRerank({ reranker: p })('q', ROWS, CTX);
    assert.equal(out.fallback, 'error');
    assert.deepEqual(ids(out.candidates), ids(ROWS));
  });

  it('scores outside [0, 1] are clamped into it', async () => {
    const { p } = provider((_q, cs) => cs.map((c, i) => ({ id: c.id, score: i === 0 ? 7 : -3 - i })));
    const out = await createMaybeRerank({ reranker: p })('q', ROWS, CTX);
    assert.equal(out.candidates[0]!.id, 'r0');
    assert.equal(out.candidates[0]!.rerankScore, 1);
    for (const c of out.candidates) assert.ok(c.rerankScore! >= 0 && c.rerankScore! <= 1);
  });

  it('hooks that throw do not reach the query', async () => {
    const { p } = provider((_q, cs) => reverse(cs));
    const hooks = {
      seconds: () => {
        throw new Error('registry broken');
      },
      fallback: () => {
        throw new Error('registry broken');
      },
    };
    const maybe = createMaybeRerank({ reranker: p, hooks });
    assert.equal((await maybe('q', ROWS, CTX)).reranked, 6);
    assert.equal((await maybe('q', [], CTX)).fallback, 'few_candidates');
  });
});

/** Computed once by this implementation; a change here reshuffles every user's rollout. */
const PINNED_BUCKETS = [49, 26, 77];

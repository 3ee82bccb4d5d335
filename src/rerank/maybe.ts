import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { RerankCandidate, RerankProvider, RerankScore } from './types.ts';

/** Why `maybeRerank` kept the search order: the label of `relay_rerank_fallbacks_total{reason}`. */
export type RerankFallbackReason = 'disabled' | 'timeout' | 'error' | 'circuit_open' | 'few_candidates';

/** The query's `rerank` field: `auto` follows the rollout, `on` reranks outside it too, `off` never. */
export type RerankMode = 'auto' | 'on' | 'off';

export interface RerankContext {
  tenantId: string;
  /** Only hashed, for the rollout bucket. */
  userId: string;
  mode: RerankMode;
  /** The request's signal: when it aborts, the rerank is cancelled and the search order returned. */
  signal?: AbortSignal;
}

/** Metric hooks; `metrics.rerank` fits. Each is optional; one that throws is ignored. */
export interface RerankHooks {
  /** Every provider call, also failed and timed-out ones (then the time until it was given up). */
  seconds?(provider: string, seconds: number): void;
  /** Every fallback. */
  fallback?(reason: RerankFallbackReason): void;
}

/** Field names follow `RerankConfig`, so `{ ...config.rerank, reranker, hooks }` is a valid value. */
export interface MaybeRerankOptions {
  /** The reranker, or a function giving it (such as `() => getCrossEncoder(cfg)`): awaited inside the budget. */
  reranker: RerankProvider | (() => RerankProvider | Promise<RerankProvider>);
  /** False (RELAY_RERANK=off): never rerank, every query counts a `disabled` fallback. Default true. */
  enabled?: boolean;
  /** Share of users (0..100) whose `auto` queries are reranked, stable per tenant and user. Default 100. */
  percent?: number;
  /** Milliseconds a rerank may take before the search order is kept and the work cancelled. Default 100. */
  budgetMs?: number;
  /** Opens after `failures` consecutive failures, probes again after `cooldownMs`. Default 5 and 30,000. */
  breaker?: { failures: number; cooldownMs: number };
  /** Share of the budget the provider's `estimateMs` prediction may fill (the rest absorbs misprediction). Default 0.8. */
  safety?: number;
  /**
   * When the prediction fits fewer than 2 candidates, the best 2 are still sent if nothing was
   * sent for this many ms: a provider measures its speed only on work it runs, so an estimate
   * learned under a passing load would otherwise keep reranking off for good. Default 1,000.
   */
  probeEveryMs?: number;
  hooks?: RerankHooks;
  /** Clock of the breaker's cool-down, in ms. Default `performance.now`. */
  now?: () => number;
}

export type Ranked<T> = T & { rerankScore?: number };

export interface MaybeRerankResult<T> {
  /**
   * Every candidate once: the reranked ones first, best first, each with `rerankScore` in [0, 1];
   * below them the rest in search order, without one.
   */
  candidates: Array<Ranked<T>>;
  /** How many candidates the reranker scored (0 when it did not run). */
  reranked: number;
  /** Set when the search order was kept for a reason counted in the fallback metric. */
  fallback?: RerankFallbackReason;
}

export interface MaybeRerank {
  /** Never throws, never rejects. */
  <T extends RerankCandidate>(query: string, candidates: readonly T[], ctx: RerankContext): Promise<MaybeRerankResult<T>>;
  /** For /readyz and metrics: `half_open` once the cool-down has passed or a probe is in flight. */
  breakerState(): BreakerState;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

/** What `admit` lets through: an ordinary call, the half-open probe, or nothing. */
type Ticket = 'call' | 'probe' | null;

/**
 * A circuit breaker counted in consecutive failures. Open: every call is skipped until the
 * cool-down passes; then half-open: exactly one probe goes through while the rest keep
 * skipping, and the probe's outcome alone closes or reopens it. Outcomes of ordinary calls that
 * finish after it opened are ignored: they started before the verdict and say nothing newer.
 */
class Breaker {
  private state: 'closed' | 'open' = 'closed';
  private failures = 0;
  private openedAt = 0;
  private probing = false;

  constructor(
    private readonly limit: number,
    private readonly cooldownMs: number,
    private readonly now: () => number,
  ) {}

  current(): BreakerState {
    if (this.state === 'closed') return 'closed';
    return this.probing || this.now() - this.openedAt >= this.cooldownMs ? 'half_open' : 'open';
  }

  admit(): Ticket {
    const state = this.current();
    if (state === 'closed') return 'call';
    if (state === 'open' || this.probing) return null;
    this.probing = true;
    return 'probe';
  }

  success(ticket: Ticket): void {
    if (ticket === 'probe' || this.state === 'closed') {
      this.state = 'closed';
      this.failures = 0;
      this.probing = false;
    }
  }

  failure(ticket: Ticket): void {
    if (ticket === 'probe') {
      this.probing = false;
      this.open();
    } else if (this.state === 'closed' && ++this.failures >= this.limit) {
      this.open();
    }
  }

  /** The call ended with no verdict on the provider (the client left, nothing was sent): free the probe slot. */
  release(ticket: Ticket): void {
    if (ticket === 'probe') this.probing = false;
  }

  private open(): void {
    this.state = 'open';
    this.openedAt = this.now();
  }
}

/**
 * The user's rollout bucket, 0..99: the same in every process and release. The salt keeps it
 * independent of other per-user rollouts (the canary's), so rerank users are not the canary's users.
 */
export function rolloutBucket(tenantId: string, userId: string): number {
  return createHash('sha256').update(`relay-rerank\0${tenantId}\0${userId}`).digest().readUInt32BE(0) % 100;
}

/** A provider that answered, but not with one finite score for each candidate it was given. */
class Garbage extends Error {}

/** `p`, or the signal's reason once it aborts, whichever comes first (a provider may ignore the signal). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  p.catch(() => {}); // a late rejection after we gave up is expected, not unhandled
  if (signal.aborted) return Promise.reject(signal.reason as unknown);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as unknown);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Per-candidate cost predictions, or undefined when the provider has none or they are unusable. */
function estimates(provider: RerankProvider, query: string, candidates: readonly RerankCandidate[]): number[] | undefined {
  if (!provider.estimateMs) return undefined;
  try {
    const est = provider.estimateMs(query, candidates);
    const ok = Array.isArray(est) && est.length === candidates.length && est.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0);
    return ok ? est : undefined;
  } catch {
    return undefined;
  }
}

/** The provider's answer as ranked candidates, best first; ties keep the provider's order. */
function ranked<T extends RerankCandidate>(scores: unknown, subset: readonly T[]): Array<Ranked<T>> {
  if (!Array.isArray(scores) || scores.length !== subset.length) throw new Garbage('wrong number of scores');
  const byId = new Map<string, T>();
  for (const c of subset) byId.set(c.id, c);
  const seen = new Set<string>();
  const out = (scores as unknown[]).map((s) => {
    const { id, score } = (s ?? {}) as Partial<RerankScore>;
    const c = typeof id === 'string' ? byId.get(id) : undefined;
    if (!c || seen.has(c.id)) throw new Garbage('unknown or repeated id');
    if (typeof score !== 'number' || Number.isNaN(score)) throw new Garbage('score is not a number');
    seen.add(c.id);
    return { ...c, rerankScore: Math.min(1, Math.max(0, score)) };
  });
  return out.sort((a, b) => b.rerankScore - a.rerankScore);
}

/** How much earlier than the budget its timer fires (at most 2% of the budget). */
const TIMER_SLACK_MS = 2;

/**
 * The query path's reranking step: decides whether to rerank, holds the budget, keeps a circuit
 * breaker, counts every fallback, and never fails the query. The order of checks: mode `off`
 * (no fallback), disabled, rollout, fewer than 2 candidates, breaker, budget fit. Budget fit:
 * with `estimateMs`, only the best-ranked prefix whose predicted cost fits `safety × budget` is
 * reranked; if fewer than 2 fit, nothing is sent and the fallback is `timeout` (the budget is why),
 * without counting against the breaker, unless nothing was sent for `probeEveryMs`: then the best
 * 2 go as a probe, so that the provider measures its speed again. A call so sized that overruns
 * the budget is a `timeout` the breaker is not charged for either. A request whose own signal
 * aborts gets the search order back with no fallback counted: nobody will read it.
 */
export function createMaybeRerank(opts: MaybeRerankOptions): MaybeRerank {
  const enabled = opts.enabled ?? true;
  const percent = opts.percent ?? 100;
  const budgetMs = opts.budgetMs ?? 100;
  const safety = opts.safety ?? 0.8;
  const probeEveryMs = opts.probeEveryMs ?? 1000;
  const { failures, cooldownMs } = opts.breaker ?? { failures: 5, cooldownMs: 30_000 };
  if (!(percent >= 0 && percent <= 100)) throw new RangeError(`maybeRerank: percent must be in [0, 100], got ${percent}`);
  if (!(budgetMs > 0 && Number.isFinite(budgetMs))) throw new RangeError(`maybeRerank: budgetMs must be a positive number, got ${budgetMs}`);
  if (!(safety > 0 && safety <= 1)) throw new RangeError(`maybeRerank: safety must be in (0, 1], got ${safety}`);
  if (!(Number.isInteger(failures) && failures >= 1)) throw new RangeError(`maybeRerank: breaker.failures must be an integer ≥ 1, got ${failures}`);
  if (!(cooldownMs >= 0)) throw new RangeError(`maybeRerank: breaker.cooldownMs must be ≥ 0, got ${cooldownMs}`);
  if (!(probeEveryMs >= 0)) throw new RangeError(`maybeRerank: probeEveryMs must be ≥ 0, got ${probeEveryMs}`);
  // The budget's timer is set a little short of the budget: a timer fires after its delay, late
  // by the event loop's turn (up to ~1.3 ms at p95 beside a busy core in bench rerank), and the
  // fallback is answered after it fires; the answer, not the timer, is what the budget bounds.
  const timerMs = budgetMs - Math.min(TIMER_SLACK_MS, budgetMs * 0.02);
  const now = opts.now ?? (() => performance.now());
  const breaker = new Breaker(failures, cooldownMs, now);
  // When work was last sent to the provider (for probeEveryMs).
  let lastSent = -Infinity;
  const source = opts.reranker;
  const getProvider = typeof source === 'function' ? source : () => source;

  function hook(call: () => void): void {
    try {
      call();
    } catch {
      // metrics must not decide a query's fate
    }
  }

  async function run<T extends RerankCandidate>(query: string, candidates: readonly T[], ctx: RerankContext): Promise<MaybeRerankResult<T>> {
    const keep = (fallback?: RerankFallbackReason): MaybeRerankResult<T> => {
      if (fallback) hook(() => opts.hooks?.fallback?.(fallback));
      return fallback ? { candidates: candidates.slice(), reranked: 0, fallback } : { candidates: candidates.slice(), reranked: 0 };
    };
    if (ctx.mode === 'off') return keep();
    if (!enabled) return keep('disabled');
    if (ctx.mode !== 'on' && percent < 100 && rolloutBucket(ctx.tenantId, ctx.userId) >= percent) return keep('disabled');
    if (candidates.length < 2) return keep('few_candidates');
    if (ctx.signal?.aborted) return keep();
    const ticket: Ticket = breaker.admit();
    if (!ticket) return keep('circuit_open');

    const started = performance.now();
    // One controller for the budget and the caller's own signal (linked by a listener, not
    // AbortSignal.any, whose dependent signals are weak references for the GC to chase on
    // every query); `ctx.signal.aborted` tells the two causes apart below.
    const budget = new AbortController();
    const signal = budget.signal;
    const timer = setTimeout(() => budget.abort(new DOMException(`rerank budget of ${budgetMs} ms exceeded`, 'TimeoutError')), timerMs);
    const onCallerAbort = () => budget.abort(ctx.signal?.reason);
    ctx.signal?.addEventListener('abort', onCallerAbort, { once: true });
    try {
      let provider: RerankProvider;
      try {
        provider = await untilAborted(Promise.resolve().then(getProvider), signal);
      } catch {
        // Waiting for a model to load says nothing about its health; a load that fails does.
        if (signal.aborted) {
          breaker.release(ticket);
          return keep(ctx.signal?.aborted ? undefined : 'timeout');
        }
        breaker.failure(ticket);
        return keep('error');
      }

      let subset: readonly T[] = candidates;
      const est = estimates(provider, query, candidates);
      if (est) {
        const allowance = safety * (budgetMs - (performance.now() - started));
        let n = 0;
        let total = 0;
        while (n < candidates.length && total + est[n]! <= allowance) total += est[n++]!;
        if (n < 2) {
          if (now() - lastSent < probeEveryMs) {
            breaker.release(ticket);
            return keep('timeout');
          }
          n = 2; // a probe: the budget's timer still ends the wait
        }
        if (n < candidates.length) subset = candidates.slice(0, n);
      }

      const callStart = performance.now();
      lastSent = now();
      try {
        const scores = await untilAborted(Promise.resolve().then(() => provider.rerank(query, subset, { signal })), signal);
        hook(() => opts.hooks?.seconds?.(provider.provider, (performance.now() - callStart) / 1000));
        const top = ranked(scores, subset);
        breaker.success(ticket);
        return { candidates: [...top, ...candidates.slice(subset.length)], reranked: subset.length };
      } catch (err) {
        if (!(err instanceof Garbage)) hook(() => opts.hooks?.seconds?.(provider.provider, (performance.now() - callStart) / 1000));
        if (ctx.signal?.aborted) {
          breaker.release(ticket);
          return keep();
        }
        // A call sized by the provider's own estimate that overran the budget is the estimate's
        // miss (a CPU that slowed under a neighbour's load), which the provider learns from on
        // its next call: charged to the breaker, five in a row would turn reranking off for the
        // cool-down where the next call would have fitted fewer candidates.
        if (signal.aborted && est) {
          breaker.release(ticket);
          return keep('timeout');
        }
        breaker.failure(ticket);
        return keep(signal.aborted ? 'timeout' : 'error');
      }
    } finally {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onCallerAbort);
    }
  }

  const maybeRerank = async <T extends RerankCandidate>(query: string, candidates: readonly T[], ctx: RerankContext): Promise<MaybeRerankResult<T>> => {
    try {
      return await run(query, candidates, ctx);
    } catch {
      // Unreachable by design; the promise of never failing a query is kept even if not.
      hook(() => opts.hooks?.fallback?.('error'));
      return { candidates: [...candidates], reranked: 0, fallback: 'error' };
    }
  };
  return Object.assign(maybeRerank, { breakerState: () => breaker.current() });
}

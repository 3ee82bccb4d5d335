import { RelayError, RelayNetworkError, RelayStreamError } from './errors.ts';

/** When and how long to retry. */
export interface RetryOptions {
  /** Retries after the first attempt (0: none). Default 2. */
  retries?: number;
  /** First backoff step in ms; each retry doubles it. Default 250. */
  baseDelayMs?: number;
  /**
   * Longest wait before a retry, in ms. Backoff stops growing here; a `Retry-After` longer than
   * this ends the retries (the error carries `retryAfterMs`). Default 10,000.
   */
  maxDelayMs?: number;
}

export type RetryPolicy = Required<RetryOptions>;

export function retryPolicy(opts: RetryOptions = {}): RetryPolicy {
  const policy = { retries: opts.retries ?? 2, baseDelayMs: opts.baseDelayMs ?? 250, maxDelayMs: opts.maxDelayMs ?? 10_000 };
  if (!(Number.isInteger(policy.retries) && policy.retries >= 0)) throw new RangeError(`retries must be an integer ≥ 0, got ${policy.retries}`);
  if (!(policy.baseDelayMs >= 0) || !(policy.maxDelayMs >= 0)) throw new RangeError('retry delays must be ≥ 0');
  return policy;
}

/**
 * Whether another attempt may succeed: no answer at all, a stream cut off, 429, or a gateway or
 * overload status. `embedder_failed` (502) is the embedding API refusing the request, which a
 * retry repeats (docs/errors.md); every other 4xx is the request's own fault.
 */
export function isRetryable(err: unknown): boolean {
  if (err instanceof RelayNetworkError) return true;
  if (err instanceof RelayStreamError && err.code === 'stream_incomplete') return true;
  if (!(err instanceof RelayError) || err.code === 'embedder_failed') return false;
  return err.status === 429 || err.status === 502 || err.status === 503 || err.status === 504;
}

/**
 * The wait before retry number `retry` (0-based) after `err`, or undefined for no retry:
 * exponential backoff with jitter (half fixed, half random, so retries of many clients spread
 * out), or the server's `Retry-After` when it sent one.
 */
export function retryDelay(policy: RetryPolicy, err: unknown, retry: number, random: () => number = Math.random): number | undefined {
  if (retry >= policy.retries || !isRetryable(err)) return undefined;
  const after = err instanceof RelayError ? err.retryAfterMs : undefined;
  if (after !== undefined) return after <= policy.maxDelayMs ? after : undefined;
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return step / 2 + random() * (step / 2);
}

/** Waits `ms`, or rejects with the signal's reason the moment it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

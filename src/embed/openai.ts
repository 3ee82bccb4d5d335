import { EmbedderError } from './errors.ts';
import type { Embedder } from './types.ts';
import { normalized } from './vector.ts';

export interface OpenAIEmbedderOptions {
  /** Without a trailing slash, e.g. `https://api.openai.com/v1`; requests go to `{baseUrl}/embeddings`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` when set (a local server may need none). */
  apiKey?: string;
  model: string;
  /** D: sent as `dimensions`, and every returned vector must have it. */
  dimensions: number;
  /** Texts per request. */
  batchSize: number;
  /** Limit on one HTTP request, response body included. */
  timeoutMs: number;
  /** Further attempts after a 408/425/429/5xx, a network error or a timeout. */
  retries: number;
  /** First backoff delay; it doubles each attempt, with full jitter. Default 250 ms. */
  backoffBaseMs?: number;
  /** Ceiling of one backoff delay. Default 8,000 ms. */
  backoffMaxMs?: number;
  /** Ceiling on a `Retry-After` the server asks for. Default 30,000 ms. */
  retryAfterMaxMs?: number;
  /** Told of each retry before its wait (for logs and metrics). Default none. */
  onRetry?: (info: RetryInfo) => void;
}

export interface RetryInfo {
  /** The attempt that failed, from 1. */
  attempt: number;
  delayMs: number;
  /** `http_429`, `http_503`, `timeout`, `network`, … */
  reason: string;
}

const RETRYABLE_STATUS = new Set([408, 425, 429]);

/** A failure worth another attempt; what the last one was becomes the final error. */
class Transient extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly statusCode?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Waits `ms`, or rejects with the signal's reason the moment it aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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

/** The upstream's error `code`/`type`, only when it looks like an identifier: free text might echo the input. */
function upstreamCode(body: unknown): string {
  const err = (body as { error?: { code?: unknown; type?: unknown } } | null)?.error;
  const code = [err?.code, err?.type].find((v): v is string => typeof v === 'string' && /^[\w.-]{1,64}$/.test(v));
  return code ? ` (${code})` : '';
}

/**
 * Any OpenAI-compatible embeddings API (`POST {baseUrl}/embeddings`). Its id is
 * `openai/<model>/d<D>`: the same model at the same D gives the same vectors whoever serves it.
 */
export function createOpenAIEmbedder(opts: OpenAIEmbedderOptions): Embedder {
  const url = `${opts.baseUrl}/embeddings`;
  // Errors name the host only: a base URL may carry credentials in its user-info part.
  const host = new URL(url).host;
  const base = opts.backoffBaseMs ?? 250;
  const cap = opts.backoffMaxMs ?? 8000;
  const retryAfterCap = opts.retryAfterMaxMs ?? 30_000;
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;

  function parse(body: unknown, count: number): Float32Array[] {
    const data = (body as { data?: unknown } | null)?.data;
    const bad = (why: string) => new EmbedderError('embedder_failed', `embeddings response from ${host} is malformed: ${why}`);
    if (!Array.isArray(data)) throw bad('no data array');
    if (data.length !== count) throw bad(`${data.length} embeddings for ${count} inputs`);
    const out = new Array<Float32Array | undefined>(count);
    for (const item of data as Array<{ index?: unknown; embedding?: unknown }>) {
      const { index, embedding } = item ?? {};
      if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= count || out[index]) throw bad('bad or repeated index');
      if (!Array.isArray(embedding) || !embedding.every((x) => typeof x === 'number')) throw bad('embedding is not an array of numbers');
      if (embedding.length !== opts.dimensions) throw bad(`embedding has ${embedding.length} dimensions, expected ${opts.dimensions}`);
      const unit = normalized(embedding as number[]);
      if (!unit) throw bad('zero or non-finite embedding');
      out[index] = unit;
    }
    return out as Float32Array[];
  }

  async function attempt(batch: readonly string[], caller: AbortSignal | undefined): Promise<Float32Array[]> {
    const timeout = AbortSignal.timeout(opts.timeoutMs);
    const signal = caller ? AbortSignal.any([caller, timeout]) : timeout;
    let res: Response;
    let body: unknown;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ model: opts.model, input: batch, dimensions: opts.dimensions, encoding_format: 'float' }),
        signal,
      });
      const text = await res.text();
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        body = undefined;
      }
    } catch (err) {
      if (caller?.aborted) throw caller.reason;
      if (timeout.aborted) throw new Transient('timeout', `embeddings request to ${host} timed out after ${opts.timeoutMs} ms`);
      const cause = (err as { cause?: { code?: unknown } }).cause?.code;
      throw new Transient('network', `embeddings request to ${host} failed${typeof cause === 'string' ? `: ${cause}` : ''}`);
    }
    if (res.status >= 500 || RETRYABLE_STATUS.has(res.status)) {
      throw new Transient(`http_${res.status}`, `${host} answered ${res.status}${upstreamCode(body)}`, res.status, parseRetryAfter(res.headers.get('retry-after')));
    }
    if (!res.ok) {
      throw new EmbedderError('embedder_failed', `${host} refused the embeddings request: ${res.status}${upstreamCode(body)}`, { statusCode: res.status });
    }
    if (body === undefined) throw new EmbedderError('embedder_failed', `embeddings response from ${host} is not JSON`, { statusCode: res.status });
    return parse(body, batch.length);
  }

  async function withRetries(batch: readonly string[], signal: AbortSignal | undefined): Promise<Float32Array[]> {
    for (let n = 1; ; n++) {
      try {
        return await attempt(batch, signal);
      } catch (err) {
        if (!(err instanceof Transient)) throw err;
        if (n > opts.retries) {
          throw new EmbedderError('embedder_unavailable', `${err.message}; gave up after ${n} attempts`, { retryable: true, statusCode: err.statusCode });
        }
        const delayMs = err.retryAfterMs !== undefined ? Math.min(err.retryAfterMs, retryAfterCap) : Math.round(Math.random() * Math.min(cap, base * 2 ** (n - 1)));
        opts.onRetry?.({ attempt: n, delayMs, reason: err.reason });
        await sleep(delayMs, signal);
      }
    }
  }

  return {
    id: `openai/${opts.model}/d${opts.dimensions}`,
    dimensions: opts.dimensions,
    async embed(texts, embedOpts) {
      const signal = embedOpts?.signal;
      signal?.throwIfAborted();
      const out: Float32Array[] = [];
      for (let i = 0; i < texts.length; i += opts.batchSize) {
        out.push(...(await withRetries(texts.slice(i, i + opts.batchSize), signal)));
      }
      return out;
    },
  };
}

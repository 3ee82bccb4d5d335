import { ConsistencyTracker } from './consistency.ts';
import { errorFromResponse, RelayError, RelayNetworkError } from './errors.ts';
import { retryDelay, sleep, type RetryPolicy } from './retry.ts';

/** A bearer token, or a function that returns the current one (called for every attempt). */
export type TokenSource = string | (() => string | Promise<string>);

export interface TransportOptions {
  baseUrl: string;
  token: TokenSource;
  fetch?: typeof fetch;
  retry: RetryPolicy;
  headers?: Record<string, string>;
  /** Keeps the newest Relay-Consistency token answered, and sends it on reads. */
  consistency: ConsistencyTracker;
}

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string | undefined>;
  signal?: AbortSignal;
  /** Sent as `x-request-id`; the server uses it for the request and its log lines. */
  requestId: string;
  /** Whether another attempt is safe: reads, deletes, and writes with an Idempotency-Key. */
  retry: boolean;
  /** Overrides the client's retry count for this call. */
  retries?: number;
  /** A read that must see this client's writes: sends the newest Relay-Consistency token. */
  read?: boolean;
}

/** A request id for the server's log; random UUIDs where the platform has them. */
export function newRequestId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  // randomUUID needs a secure context in browsers; this id only correlates logs.
  return Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
}

/** Calls the API over `fetch`: auth, request ids, errors as RelayError, retries where they are safe. */
export class Transport {
  private readonly base: string;
  private readonly doFetch: (input: string, init: RequestInit) => Promise<Response>;

  constructor(private readonly opts: TransportOptions) {
    const url = new URL(opts.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`baseUrl must be http(s), got ${url.protocol}`);
    this.base = url.href.replace(/\/+$/, '');
    const impl = opts.fetch ?? globalThis.fetch;
    if (typeof impl !== 'function') throw new TypeError('no fetch: pass one as the fetch option');
    // Called as a plain function: a browser's fetch refuses another `this` ("Illegal invocation").
    this.doFetch = (input, init) => impl(input, init);
  }

  url(path: string, query: HttpRequest['query'] = {}): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return `${this.base}${path}${qs ? `?${qs}` : ''}`;
  }

  /** One attempt: the response when it is 2xx; otherwise a RelayError (the caller's abort reason as is). */
  async attempt(req: HttpRequest, accept: string): Promise<Response> {
    const token = typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token;
    const headers: Record<string, string> = { ...this.opts.headers, accept, authorization: `Bearer ${token}`, 'x-request-id': req.requestId };
    if (req.body !== undefined) headers['content-type'] = 'application/json';
    const consistency = req.read ? this.opts.consistency.latest : undefined;
    if (consistency !== undefined) headers['relay-consistency'] = consistency;
    for (const [k, v] of Object.entries(req.headers ?? {})) if (v !== undefined) headers[k] = v;
    let res: Response;
    try {
      res = await this.doFetch(this.url(req.path, req.query), {
        method: req.method,
        headers,
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        signal: req.signal,
      });
    } catch (err) {
      if (req.signal?.aborted) throw req.signal.reason;
      throw new RelayNetworkError(`${req.method} ${req.path} got no answer: ${(err as Error)?.message ?? String(err)}`, {
        code: 'network_error',
        requestId: req.requestId,
        cause: err,
      });
    }
    if (res.ok) {
      const answered = res.headers.get('relay-consistency');
      if (answered) this.opts.consistency.observe(answered);
      return res;
    }
    throw await errorFromResponse(res, req.requestId);
  }

  /** Attempts until one answers 2xx, a failure is not worth retrying, or the retries run out. */
  async send(req: HttpRequest, accept = 'application/json'): Promise<Response> {
    const policy = { ...this.opts.retry, retries: req.retry ? (req.retries ?? this.opts.retry.retries) : 0 };
    for (let n = 0; ; n++) {
      try {
        return await this.attempt(req, accept);
      } catch (err) {
        if (err instanceof RelayError) err.attempts = n + 1;
        const wait = retryDelay(policy, err, n);
        if (wait === undefined) throw err;
        await sleep(wait, req.signal);
      }
    }
  }

  /** `send`, then the body as JSON (a body that is not is `bad_response`). */
  async json<T>(req: HttpRequest): Promise<{ body: T; res: Response }> {
    const res = await this.send(req);
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      if (req.signal?.aborted) throw req.signal.reason;
      throw new RelayNetworkError(`${req.method} ${req.path}: the answer broke off`, { code: 'network_error', status: res.status, requestId: req.requestId, cause: err });
    }
    try {
      return { body: JSON.parse(text) as T, res };
    } catch (err) {
      throw new RelayError(`${req.method} ${req.path}: the answer is not JSON`, {
        code: 'bad_response',
        status: res.status,
        requestId: res.headers.get('x-request-id') ?? req.requestId,
        cause: err,
      });
    }
  }
}

import { ConsistencyTracker } from './consistency.ts';
import { RelayError, RelayNetworkError } from './errors.ts';
import { retryPolicy, type RetryOptions, type RetryPolicy } from './retry.ts';
import { QueryStream } from './stream.ts';
import { newRequestId, Transport, type HttpRequest, type TokenSource } from './transport.ts';
import type {
  AddInput,
  AddResult,
  EraseResult,
  ListPage,
  ListParams,
  MemoryChunk,
  QueryInput,
  QueryResult,
  UpdatedChunk,
  UpdateInput,
} from './types.ts';

export interface RelayClientOptions extends RetryOptions {
  /** Where the service listens, e.g. `http://127.0.0.1:8080` (a path prefix is kept). */
  baseUrl: string;
  /** The bearer token (docs/auth.md), or a function returning the current one, called per attempt. */
  token: TokenSource;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /**
   * A Relay-Consistency token to start from: another process's `consistencyToken`, so this
   * client's reads see that process's writes too (docs/client.md).
   */
  consistencyToken?: string;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the call (and its retries): it rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Sent as `x-request-id` (default: a random UUID); errors carry it as `requestId`. */
  requestId?: string;
  /** Overrides the client's `retries` for this call. */
  retries?: number;
}

export interface AddOptions extends CallOptions {
  /**
   * Sent as `Idempotency-Key`: a repeat within 24 h returns the first answer and writes nothing,
   * which is what makes a write safe to retry. Without one, a write is never retried.
   */
  idempotencyKey?: string;
}

export interface ItemOptions extends CallOptions {
  /** The user whose chunk it is (service tokens). */
  user_id?: string;
}

export interface UpdateOptions extends CallOptions {
  /** The version the change is based on (`If-Match`); another is `412 version_mismatch`. */
  ifVersion?: number;
}

const MEMORY = '/api/v1/memory';

/**
 * A typed client of the Relay Memory HTTP API (docs/client.md). Uses only `fetch`, streams and
 * `AbortSignal`: runs on Node 20 and in browsers.
 */
export class RelayClient {
  private readonly transport: Transport;
  private readonly policy: RetryPolicy;
  private readonly consistency: ConsistencyTracker;

  constructor(opts: RelayClientOptions) {
    if (!opts.token) throw new TypeError('RelayClient needs a token');
    this.policy = retryPolicy(opts);
    this.consistency = new ConsistencyTracker(opts.consistencyToken);
    this.transport = new Transport({ baseUrl: opts.baseUrl, token: opts.token, fetch: opts.fetch, retry: this.policy, headers: opts.headers, consistency: this.consistency });
  }

  /**
   * The newest Relay-Consistency token a write of this client was answered with (undefined
   * before the first). This client sends it on every read by itself; pass it to another process
   * (its `consistencyToken` option) for that process's reads to see these writes.
   */
  get consistencyToken(): string | undefined {
    return this.consistency.latest;
  }

  private request(opts: CallOptions, req: Omit<HttpRequest, 'requestId' | 'signal' | 'retries'>): HttpRequest {
    return { ...req, requestId: opts.requestId ?? newRequestId(), signal: opts.signal, retries: opts.retries };
  }

  /** Stores text (split into chunks) or chunks: `POST /api/v1/memory`. Retried only with an `idempotencyKey`. */
  async add(input: AddInput, opts: AddOptions = {}): Promise<AddResult> {
    const key = opts.idempotencyKey;
    const { body, res } = await this.transport.json<{ ids: string[] }>(
      this.request(opts, { method: 'POST', path: MEMORY, body: input, headers: { 'idempotency-key': key }, retry: key !== undefined }),
    );
    return { ids: body.ids, replayed: res.headers.get('idempotent-replayed') === 'true' };
  }

  /** One chunk: `GET /api/v1/memory/:id`; not in the caller's scope is `not_found`. */
  async get(id: string, opts: ItemOptions = {}): Promise<MemoryChunk> {
    const { body } = await this.transport.json<MemoryChunk>(
      this.request(opts, { method: 'GET', path: `${MEMORY}/${encodeURIComponent(id)}`, query: { user_id: opts.user_id }, retry: true, read: true }),
    );
    return body;
  }

  /** Changes a chunk's text and/or metadata: `PATCH /api/v1/memory/:id`. Never retried. */
  async update(id: string, input: UpdateInput, opts: UpdateOptions = {}): Promise<UpdatedChunk> {
    const ifMatch = opts.ifVersion === undefined ? undefined : `"${opts.ifVersion}"`;
    const { body } = await this.transport.json<UpdatedChunk>(
      this.request(opts, { method: 'PATCH', path: `${MEMORY}/${encodeURIComponent(id)}`, body: input, headers: { 'if-match': ifMatch }, retry: false }),
    );
    return body;
  }

  /**
   * Deletes a chunk: `DELETE /api/v1/memory/:id`. A chunk that is not there is `not_found`, except
   * on a retry, where an earlier attempt may have deleted it already.
   */
  async delete(id: string, opts: ItemOptions = {}): Promise<void> {
    try {
      const res = await this.transport.send(
        this.request(opts, { method: 'DELETE', path: `${MEMORY}/${encodeURIComponent(id)}`, query: { user_id: opts.user_id }, retry: true }),
      );
      await res.body?.cancel();
    } catch (err) {
      if (err instanceof RelayError && err.code === 'not_found' && err.attempts > 1) return;
      throw err;
    }
  }

  /**
   * The caller's chunks a page at a time, newest first, following the server's cursor:
   * `for await (const page of client.list({ user_id }))`. Each page is its own (retried) request.
   */
  async *list(params: ListParams = {}, opts: CallOptions = {}): AsyncGenerator<ListPage, void, undefined> {
    let cursor = params.cursor;
    do {
      const { body } = await this.transport.json<ListPage>(
        this.request(opts, { method: 'GET', path: MEMORY, query: { user_id: params.user_id, limit: params.limit, cursor }, retry: true, read: true }),
      );
      yield body;
      cursor = body.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /**
   * Erasure: every chunk of `userId` in the token's tenant (expired ones too) and the user's
   * idempotency keys: `DELETE /api/v1/users/:user_id/memory`.
   */
  async eraseUser(userId: string, opts: CallOptions = {}): Promise<EraseResult> {
    const { body } = await this.transport.json<EraseResult>(
      this.request(opts, { method: 'DELETE', path: `/api/v1/users/${encodeURIComponent(userId)}/memory`, retry: true }),
    );
    return body;
  }

  /**
   * Every live chunk of `userId`, decrypted, one at a time as the server streams them (NDJSON):
   * `GET /api/v1/users/:user_id/memory/export`, for a data-access request. `for await (const c of
   * client.exportMemories('alice'))`. Only the request is retried; an answer that breaks off is a
   * `RelayNetworkError` (never a short export taken for a whole one). Stopping early cancels it.
   */
  async *exportMemories(userId: string, opts: CallOptions = {}): AsyncGenerator<MemoryChunk, void, undefined> {
    const req = this.request(opts, { method: 'GET', path: `/api/v1/users/${encodeURIComponent(userId)}/memory/export`, retry: true });
    const res = await this.transport.send(req, 'application/x-ndjson');
    if (!res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    const record = (line: string): MemoryChunk => {
      try {
        return JSON.parse(line) as MemoryChunk;
      } catch (err) {
        throw new RelayError(`${req.method} ${req.path}: a line of the export is not JSON`, { code: 'bad_response', status: res.status, requestId: req.requestId, cause: err });
      }
    };
    try {
      for (;;) {
        let next: Awaited<ReturnType<typeof reader.read>>;
        try {
          next = await reader.read();
        } catch (err) {
          if (req.signal?.aborted) throw req.signal.reason;
          throw new RelayNetworkError(`${req.method} ${req.path}: the export broke off`, { code: 'network_error', status: res.status, requestId: req.requestId, cause: err });
        }
        if (next.done) break;
        const lines = (buffered + decoder.decode(next.value, { stream: true })).split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) if (line.trim()) yield record(line);
      }
      buffered += decoder.decode();
      if (buffered.trim()) yield record(buffered);
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }

  /**
   * Recall, streamed: `for await (const hit of client.query({ query }))` yields each result as it
   * arrives; `stream.done` then holds the summary (count, skipped, ttfv_ms, timings).
   */
  query(input: QueryInput, opts: CallOptions = {}): QueryStream {
    const req = this.request(opts, { method: 'POST', path: `${MEMORY}/query`, body: input, retry: true, read: true });
    const retries = opts.retries ?? this.policy.retries;
    return new QueryStream(this.transport, req, { ...this.policy, retries });
  }

  /** Recall in one answer (`Accept: application/json`): every result and the summary. */
  async queryAll(input: QueryInput, opts: CallOptions = {}): Promise<QueryResult> {
    const { body } = await this.transport.json<QueryResult>(this.request(opts, { method: 'POST', path: `${MEMORY}/query`, body: input, retry: true, read: true }));
    return body;
  }
}

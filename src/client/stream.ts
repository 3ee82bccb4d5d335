import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { RelayError, RelayStreamError, streamErrorEvent } from './errors.ts';
import { retryDelay, sleep, type RetryPolicy } from './retry.ts';
import type { HttpRequest, Transport } from './transport.ts';
import type { QueryHit, QuerySummary } from './types.ts';

/** More than any one event the API sends (a 16,000-character chunk with 16 KiB of metadata). */
const MAX_EVENT_BYTES = 4 * 1024 * 1024;

/** An AbortController that also aborts when `outer` does; `unlink` stops listening. */
function linked(outer: AbortSignal | undefined): { controller: AbortController; unlink: () => void } {
  const controller = new AbortController();
  if (!outer) return { controller, unlink: () => {} };
  const onAbort = () => controller.abort(outer.reason);
  if (outer.aborted) onAbort();
  else outer.addEventListener('abort', onAbort, { once: true });
  return { controller, unlink: () => outer.removeEventListener('abort', onAbort) };
}

function parseData<T>(e: EventSourceMessage, requestId: string): T {
  try {
    return JSON.parse(e.data) as T;
  } catch (err) {
    throw new RelayError(`the query stream sent a ${e.event ?? 'message'} event that is not JSON`, { code: 'bad_response', status: 200, requestId, cause: err });
  }
}

/**
 * The results of one query as they stream: `for await (const hit of stream)`. The request starts
 * when iteration does and can be iterated once. A stream that ends without its `done` event is a
 * `RelayStreamError` (`stream_incomplete`), never a short list; an `error` event is one with the
 * server's code. Failures before the first result is yielded are retried like any read; after
 * it, never (the caller has seen part of an answer).
 */
export class QueryStream implements AsyncIterable<QueryHit> {
  /** The `done` event's data; settles when iteration ends (rejects as the iteration does). */
  readonly done: Promise<QuerySummary>;
  private settle!: { resolve: (s: QuerySummary) => void; reject: (e: unknown) => void };
  private started = false;
  private summary: QuerySummary | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly request: HttpRequest,
    private readonly policy: RetryPolicy,
  ) {
    this.done = new Promise<QuerySummary>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Awaiting `done` is optional: its rejection must not be reported as unhandled.
    this.done.catch(() => {});
  }

  /** The `x-request-id` this query is sent with (the same for every attempt). */
  get requestId(): string {
    return this.request.requestId;
  }

  [Symbol.asyncIterator](): AsyncIterator<QueryHit> {
    if (this.started) throw new TypeError('a query stream can be iterated only once; call query() again');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<QueryHit, void, undefined> {
    let received = 0;
    let outcome: { summary: QuerySummary } | { error: unknown } | undefined;
    try {
      for (let n = 0; ; n++) {
        try {
          for await (const hit of this.attempt(() => received)) {
            received++;
            yield hit;
          }
          outcome = { summary: this.summary! };
          this.settle.resolve(this.summary!);
          return;
        } catch (err) {
          if (err instanceof RelayError) err.attempts = n + 1;
          const wait = received === 0 && !this.request.signal?.aborted ? retryDelay(this.policy, err, n) : undefined;
          if (wait === undefined) throw err;
          await sleep(wait, this.request.signal);
        }
      }
    } catch (err) {
      outcome = { error: err };
      throw err;
    } finally {
      if (!outcome) {
        // The caller stopped iterating (break, return, throw in the loop body).
        outcome = { error: new RelayError('the query stream was closed before its end', { code: 'stream_closed', requestId: this.requestId }) };
      }
      if ('error' in outcome) this.settle.reject(outcome.error);
    }
  }

  /** One request: yields its results, sets `summary` on `done`, throws on anything else. */
  private async *attempt(received: () => number): AsyncGenerator<QueryHit, void, undefined> {
    // Our own controller, so that leaving early closes the connection (the server then stops the work).
    const { controller, unlink } = linked(this.request.signal);
    const signal = controller.signal;
    const requestId = this.request.requestId;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let finished = false;
    try {
      const res = await this.transport.attempt({ ...this.request, signal }, 'text/event-stream');
      const type = res.headers.get('content-type') ?? '';
      if (!/^text\/event-stream\b/i.test(type) || !res.body) {
        throw new RelayError(`expected an event stream, got ${type || 'no content type'}`, { code: 'bad_response', status: res.status, requestId });
      }
      const events: EventSourceMessage[] = [];
      let parseError: RelayError | undefined;
      const parser = createParser({
        maxBufferSize: MAX_EVENT_BYTES,
        onEvent: (e) => events.push(e),
        onError: (e) => {
          if (e.type === 'max-buffer-size-exceeded') parseError = new RelayError('the query stream sent an oversized event', { code: 'bad_response', status: 200, requestId });
        },
      });
      reader = res.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const chunk: { done: boolean; value?: Uint8Array } = await reader.read().catch((err: unknown) => {
          if (signal.aborted) throw this.request.signal?.reason ?? err;
          throw new RelayStreamError('the query stream broke off before its done event', { code: 'stream_incomplete', status: 200, requestId, received: received(), cause: err });
        });
        parser.feed(chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true }));
        if (parseError) throw parseError;
        while (events.length > 0) {
          const e = events.shift()!;
          if (signal.aborted) throw this.request.signal?.reason ?? signal.reason;
          if (e.event === 'result') yield parseData<QueryHit>(e, requestId);
          else if (e.event === 'done') {
            this.summary = parseData<QuerySummary>(e, requestId);
            finished = true;
            return;
          } else if (e.event === 'error') throw streamErrorEvent(e.data, requestId, received());
          // Other events are for later versions of the API.
        }
        if (chunk.done) {
          throw new RelayStreamError('the query stream ended before its done event', { code: 'stream_incomplete', status: 200, requestId, received: received() });
        }
      }
    } finally {
      unlink();
      // Failed or abandoned: close the connection, so the server stops the work.
      if (!finished && !signal.aborted) controller.abort(new RelayError('query stream closed', { code: 'stream_closed', requestId }));
      reader?.cancel().catch(() => {});
    }
  }
}

import http from 'node:http';

/** How one request went, seen from the client. */
export interface Outcome {
  /** HTTP 200 and the stream ended after a `done` event (no `error` event). */
  ok: boolean;
  status: number;
  /** Request written → first `result` (or `done`, when there is none) fully received; null if neither came. */
  ttfvMs: number | null;
  totalMs: number;
  error?: string;
  /** The API's error code, from a JSON error body (`{error: {code}}`) or an `event: error` frame. */
  code?: string;
}

/** `{error: {code}}` (an error body) or `{code}` (an `event: error` frame), if `text` is either. */
export function errorCode(text: string): string | undefined {
  try {
    const v = JSON.parse(text) as { code?: unknown; error?: { code?: unknown } };
    const code = v.error?.code ?? v.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

export interface SseTarget {
  url: URL;
  headers: Record<string, string>;
}

/** One SSE event as the spec frames it: fields until a blank line. */
export interface Frame {
  event: string;
  data: string;
}

/**
 * Incremental SSE parser: feed it text as it arrives (frames may split anywhere, lines may end
 * in CRLF, LF or CR); it calls `onFrame` for each complete event. Comments are skipped.
 */
export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];

  constructor(private readonly onFrame: (f: Frame) => void) {}

  push(text: string): void {
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.buffer);
      // A lone CR at the very end may be the first half of CRLF: wait for more.
      if (!m || (m[0] === '\r' && m.index === this.buffer.length - 1)) return;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0 || this.event) this.onFrame({ event: this.event || 'message', data: this.data.join('\n') });
      this.event = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
  }
}

/** POSTs `body` and reads the answer as SSE; never rejects (failures are outcomes). */
export function sseRequest(agent: http.Agent, target: SseTarget, body: string, timeoutMs = 10_000): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    let ttfv: number | null = null;
    let done = false;
    let failed: string | undefined;
    let status = 0;
    let settled = false;
    let code: string | undefined;
    let errBody = '';
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const err = error ?? failed;
      if (status !== 200 && status !== 0) code ??= errorCode(errBody);
      resolve({
        ok: !err && status === 200 && done,
        status,
        ttfvMs: ttfv,
        totalMs: performance.now() - started,
        ...(err || !done ? { error: err ?? 'stream ended without done' } : {}),
        ...(code ? { code } : {}),
      });
    };
    const parser = new SseParser((f) => {
      if ((f.event === 'result' || f.event === 'done') && ttfv === null) ttfv = performance.now() - started;
      if (f.event === 'done') done = true;
      if (f.event === 'error') {
        failed = `error event: ${f.data.slice(0, 200)}`;
        code ??= errorCode(f.data);
      }
    });
    const req = http.request(
      target.url,
      { method: 'POST', agent, headers: { ...target.headers, 'content-type': 'application/json', accept: 'text/event-stream', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (status === 200 ? parser.push(chunk) : (errBody = (errBody + chunk).slice(0, 4096))));
        res.on('end', () => finish(status === 200 ? undefined : `HTTP ${status}`));
        res.on('error', (e) => finish(e.message));
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error('timeout'));
      finish(`timeout after ${timeoutMs} ms`);
    }, timeoutMs);
    req.on('error', (e) => finish(e.message));
    req.end(body);
  });
}

/** POSTs `body` as JSON and reads the whole answer; ok on a 2xx. Never rejects (failures are outcomes). */
export function postJson(agent: http.Agent, target: SseTarget, body: string, timeoutMs = 10_000): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    let settled = false;
    const finish = (status: number, text: string, error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const ok = !error && status >= 200 && status < 300;
      const code = ok ? undefined : errorCode(text);
      const totalMs = performance.now() - started;
      resolve({ ok, status, ttfvMs: null, totalMs, ...(ok ? {} : { error: error ?? `HTTP ${status}` }), ...(code ? { code } : {}) });
    };
    const req = http.request(
      target.url,
      { method: 'POST', agent, headers: { ...target.headers, 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text = (text + chunk).slice(0, 4096)));
        res.on('end', () => finish(res.statusCode ?? 0, text));
        res.on('error', (e) => finish(res.statusCode ?? 0, text, e.message));
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error('timeout'));
      finish(0, '', `timeout after ${timeoutMs} ms`);
    }, timeoutMs);
    req.on('error', (e) => finish(0, '', e.message));
    req.end(body);
  });
}

export type Fire = () => Promise<Outcome>;

/**
 * Open loop: `rate × durationS` requests, each started on its own schedule (t0 + i / rate),
 * whether or not earlier ones have answered; the schedule is kept against the clock, so timer
 * drift does not lower the rate. Resolves when every request has finished.
 */
export async function openLoop(opts: { rate: number; durationS: number; fire: Fire }): Promise<Outcome[]> {
  const total = Math.round(opts.rate * opts.durationS);
  const t0 = performance.now();
  const pending: Array<Promise<Outcome>> = [];
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / opts.rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(opts.fire());
  }
  return Promise.all(pending);
}

/** Closed loop: `clients` loops, each firing its next request when the last one answered, for `durationS`. */
export async function closedLoop(opts: { clients: number; durationS: number; fire: Fire }): Promise<{ outcomes: Outcome[]; seconds: number }> {
  const outcomes: Outcome[] = [];
  const t0 = performance.now();
  const end = t0 + opts.durationS * 1000;
  await Promise.all(
    Array.from({ length: opts.clients }, async () => {
      while (performance.now() < end) outcomes.push(await opts.fire());
    }),
  );
  return { outcomes, seconds: (performance.now() - t0) / 1000 };
}

/**
 * The same closed loop against two targets taking turns in `slices` slices of `sliceS` seconds,
 * in ABBA order (a, b, b, a, …), so that drift on a shared machine hits both alike.
 */
export async function abbaClosedLoops(opts: { clients: number; slices: number; sliceS: number; a: Fire; b: Fire }): Promise<Record<'a' | 'b', { outcomes: Outcome[]; seconds: number }>> {
  const out = { a: { outcomes: [] as Outcome[], seconds: 0 }, b: { outcomes: [] as Outcome[], seconds: 0 } };
  for (let i = 0; i < opts.slices; i++) {
    const side = i % 4 === 0 || i % 4 === 3 ? 'a' : 'b';
    const slice = await closedLoop({ clients: opts.clients, durationS: opts.sliceS, fire: opts[side] });
    // Not push(...outcomes): a fast floor answers well over 100,000 requests in one slice, more
    // arguments than a call takes (RangeError: Maximum call stack size exceeded).
    for (const outcome of slice.outcomes) out[side].outcomes.push(outcome);
    out[side].seconds += slice.seconds;
  }
  return out;
}

/** Nearest-rank percentile of `values` (sorted here), in the same unit, two decimals. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round(sorted[rank]! * 100) / 100;
}

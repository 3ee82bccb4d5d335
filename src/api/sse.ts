import type { ServerResponse } from 'node:http';

export interface SseEvent {
  event?: string;
  id?: string;
  /** Text; several lines become several `data:` lines, as the spec reassembles them. */
  data: string;
}

/** The stream's response headers. X-Accel-Buffering stops nginx from holding events back. */
export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
} as const;

/** A line break inside `event` or `id` would end the field early and let data forge fields. */
function field(name: string, value: string): string {
  if (/[\r\n\0]/.test(value)) throw new TypeError(`SSE ${name} must not contain CR, LF or NUL`);
  return `${name}: ${value}\n`;
}

/** One event, framed: fields, `data:` per line of data, and the blank line that dispatches it. */
export function formatEvent(e: SseEvent): string {
  let out = '';
  if (e.event !== undefined) out += field('event', e.event);
  if (e.id !== undefined) out += field('id', e.id);
  for (const line of e.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A comment line (heartbeat); the same line-break rule. */
export function formatComment(text: string): string {
  return text
    .split(/\r\n|\r|\n/)
    .map((l) => `: ${l}\n`)
    .join('')
    .concat('\n');
}

/**
 * Writes one SSE response. Headers go out with the first write, so a request that fails before
 * anything is ready can still be answered with a plain HTTP error. Writes after the client left
 * are dropped; `close` is safe to call more than once.
 */
export class SseWriter {
  private started = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly headers: Record<string, string> = {},
  ) {}

  get headersSent(): boolean {
    return this.started;
  }

  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  send(e: SseEvent): void {
    this.write(formatEvent(e));
  }

  comment(text: string): void {
    this.write(formatComment(text));
  }

  close(): void {
    if (!this.open) return;
    this.start();
    this.res.end();
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, { ...SSE_HEADERS, ...this.headers });
    // Headers now, not with the first body chunk: the client sees the stream open at once.
    this.res.flushHeaders();
  }

  private write(chunk: string): void {
    if (!this.open) return;
    this.start();
    this.res.write(chunk);
  }
}

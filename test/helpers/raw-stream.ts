/**
 * A query stream read as raw bytes, so a test can act at an exact point of it (after the first
 * heartbeat, after the first result) and then see precisely how it ended.
 */
export interface RawStream {
  status: number;
  headers: Headers;
  /** Everything received so far. */
  text(): string;
  /** Resolves once what was received satisfies `pred`; rejects if the stream ends first. */
  until(pred: (text: string) => boolean): Promise<string>;
  /** Resolves with the whole body once the server has ended it (or the connection dropped: `dropped`). */
  end(): Promise<{ text: string; dropped: boolean }>;
}

export async function openQueryStream(url: string, token: string, body: unknown, signal?: AbortSignal): Promise<RawStream> {
  const res = await fetch(`${url}/api/v1/memory/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(body),
    signal,
  });
  let text = '';
  let ended = false;
  let dropped = false;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const pump = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        wake();
      }
    } catch {
      dropped = true;
    } finally {
      ended = true;
      wake();
    }
  })();
  return {
    status: res.status,
    headers: res.headers,
    text: () => text,
    until: (pred) =>
      new Promise((resolve, reject) => {
        const look = () => {
          if (pred(text)) {
            waiters.delete(look);
            resolve(text);
          } else if (ended) {
            waiters.delete(look);
            reject(new Error(`the stream ended before the awaited point:\n${text}`));
          }
        };
        waiters.add(look);
        look();
      }),
    end: async () => {
      await pump;
      return { text, dropped };
    },
  };
}

/** The events of an SSE body: `{event, data}` per block (comments and heartbeats left out). */
export function sseEvents(text: string): Array<{ event: string; data: string }> {
  const out: Array<{ event: string; data: string }> = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length > 0) out.push({ event, data: data.join('\n') });
  }
  return out;
}

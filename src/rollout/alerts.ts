export interface AlertResult {
  url: string;
  /** HTTP status, or null when it did not answer. */
  status: number | null;
  ok: boolean;
  error?: string;
}

/** Where a webhook URL may be shown: scheme, host and path only (a Slack URL's path is its secret, so it is cut). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 ? '/…' : '/'}`;
  } catch {
    return 'invalid-url';
  }
}

/**
 * POSTs one JSON alert to every webhook: a Slack-style `text` (what happened, in a sentence) and
 * the structured `event`. One retry after a failure; never throws (the rollback has happened).
 */
export async function sendAlerts(webhooks: readonly string[], text: string, event: Record<string, unknown>, timeoutMs: number): Promise<AlertResult[]> {
  const body = JSON.stringify({ text, event });
  return Promise.all(
    webhooks.map(async (url) => {
      let last: AlertResult = { url: redactUrl(url), status: null, ok: false };
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(timeoutMs) });
          await res.body?.cancel();
          last = { url: redactUrl(url), status: res.status, ok: res.ok };
          if (res.ok) return last;
        } catch (err) {
          last = { url: redactUrl(url), status: null, ok: false, error: (err as Error).message };
        }
      }
      return last;
    }),
  );
}

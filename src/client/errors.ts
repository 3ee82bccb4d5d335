/** The server's stable error codes (docs/errors.md) and the HTTP status each comes with. */
export const SERVER_ERROR_STATUS = {
  bad_request: 400,
  invalid_json: 400,
  validation_failed: 400,
  invalid_filter: 400,
  invalid_cursor: 400,
  invalid_consistency_token: 400,
  invalid_header: 400,
  unauthorized: 401,
  forbidden_scope: 403,
  not_found: 404,
  not_acceptable: 406,
  tenant_shredded: 410,
  version_mismatch: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_reused: 422,
  rate_limited: 429,
  internal: 500,
  embedder_failed: 502,
  embedder_unavailable: 503,
  store_unavailable: 503,
  rate_limit_unavailable: 503,
} as const;

export type ServerErrorCode = keyof typeof SERVER_ERROR_STATUS;

/**
 * Codes the client gives failures the server did not name: `network_error` (no answer at all),
 * `stream_incomplete` (a query stream that ended without its `done` event), `stream_closed`
 * (the caller stopped iterating before the end), `bad_response` (an answer that is not what
 * the API sends, e.g. from a proxy).
 */
export type ClientErrorCode = 'network_error' | 'stream_incomplete' | 'stream_closed' | 'bad_response';

/** Any code a `RelayError` carries; unknown server codes pass through as strings. */
export type RelayErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

export interface RelayErrorInit {
  code: RelayErrorCode;
  /** The HTTP status; for an SSE `error` event, the status its code has as a plain HTTP error. */
  status?: number;
  /** The answer's `x-request-id`, or the one the client sent when there was no answer. */
  requestId?: string;
  /** From `Retry-After`, in milliseconds. */
  retryAfterMs?: number;
  /** Attempts made for this call, retries included. */
  attempts?: number;
  cause?: unknown;
}

/** A failed call: the server's `code` and status, and the request id to find it in the server's log. */
export class RelayError extends Error {
  override name = 'RelayError';
  readonly code: RelayErrorCode;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  readonly retryAfterMs: number | undefined;
  attempts: number;

  constructor(message: string, init: RelayErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status;
    this.requestId = init.requestId;
    this.retryAfterMs = init.retryAfterMs;
    this.attempts = init.attempts ?? 1;
  }
}

/** No HTTP answer: DNS, refused or reset connection, TLS, CORS. */
export class RelayNetworkError extends RelayError {
  override name = 'RelayNetworkError';
}

/** A query stream that failed after it opened: an `error` event, or the end without `done`. */
export class RelayStreamError extends RelayError {
  override name = 'RelayStreamError';
  /** Results the caller had already received from this stream. */
  readonly received: number;

  constructor(message: string, init: RelayErrorInit & { received: number }) {
    super(message, init);
    this.received = init.received;
  }
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The server's `{error: {code, message}}` out of a body, if it is one. */
export function errorPayload(body: unknown): { code: string; message: string } | undefined {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (!e || typeof e.code !== 'string') return undefined;
  return { code: e.code, message: typeof e.message === 'string' ? e.message : e.code };
}

/** A non-2xx answer as a RelayError (reads the body). */
export async function errorFromResponse(res: Response, sentRequestId: string): Promise<RelayError> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // the body broke off; the status still says what happened
  }
  let payload: { code: string; message: string } | undefined;
  try {
    payload = errorPayload(JSON.parse(text));
  } catch {
    // not JSON: a proxy or another server answered
  }
  return new RelayError(payload?.message ?? `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, {
    code: payload?.code ?? 'bad_response',
    status: res.status,
    requestId: res.headers.get('x-request-id') ?? sentRequestId,
    retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
  });
}

/** An SSE `error` event's data as a RelayStreamError. */
export function streamErrorEvent(data: string, requestId: string, received: number): RelayStreamError {
  let payload: { code: string; message: string } | undefined;
  try {
    const parsed = JSON.parse(data) as { code?: unknown; message?: unknown };
    if (typeof parsed?.code === 'string') payload = { code: parsed.code, message: typeof parsed.message === 'string' ? parsed.message : parsed.code };
  } catch {
    // a malformed error event is still an error
  }
  const code = payload?.code ?? 'bad_response';
  return new RelayStreamError(payload?.message ?? 'the query stream failed', {
    code,
    status: (SERVER_ERROR_STATUS as Record<string, number>)[code],
    requestId,
    received,
  });
}

import { ErrorCode } from './errors.ts';

export interface ErrorCodeDoc {
  /** The HTTP status the code is answered with. */
  status: number;
  /** When it is answered, for docs/errors.md (Markdown, one line). */
  when: string;
}

/**
 * Every API error code with its status and meaning: the one source of docs/errors.md's table
 * (`npm run docs` writes it; a test fails when the file differs) and of the OpenAPI document.
 * Typed by `ErrorCode`, so a new code does not compile until it is described here.
 */
export const ERROR_CATALOG: { readonly [C in ErrorCode]: ErrorCodeDoc } = {
  [ErrorCode.BadRequest]: { status: 400, when: 'a malformed request the codes below do not cover, such as a path that is not valid percent-encoded UTF-8' },
  [ErrorCode.InvalidJson]: { status: 400, when: 'the body is not valid JSON, or is empty' },
  [ErrorCode.ValidationFailed]: {
    status: 400,
    when: 'a field is missing, of the wrong type, out of range, unknown, or a text is blank; a body nested deeper than 32 levels or with a `__proto__` key; the message names each field and what it takes (at most three)',
  },
  [ErrorCode.InvalidFilter]: { status: 400, when: "the query's `filter` is not a valid metadata filter ([filters.md](filters.md)); the message names the JSON path" },
  [ErrorCode.InvalidConsistencyToken]: { status: 400, when: 'a `Relay-Consistency` header this API did not give out to this tenant: edited, truncated, made up, or another tenant\'s' },
  [ErrorCode.InvalidCursor]: { status: 400, when: 'a list `cursor` this API did not give out to this user and tenant: edited, truncated, made up, or another user\'s or tenant\'s' },
  [ErrorCode.InvalidHeader]: { status: 400, when: 'a malformed `Idempotency-Key` or `If-Match`' },
  [ErrorCode.Unauthorized]: {
    status: 401,
    when: 'no bearer token, or a malformed, expired, not-yet-valid, badly signed or wrongly-claimed one ([auth.md](auth.md)); with `WWW-Authenticate: Bearer`',
  },
  [ErrorCode.ForbiddenScope]: {
    status: 403,
    when: "the request names a tenant other than the token's, or a user token names another user; counted in `relay_cross_tenant_attempts_total`",
  },
  [ErrorCode.NotFound]: { status: 404, when: "no such route, or no such chunk in the caller's scope (also: not a UUID, expired, or does not open)" },
  [ErrorCode.NotAcceptable]: { status: 406, when: "the query's `Accept` allows neither `text/event-stream` nor `application/json` (q-values and `text/*`, `application/*` count, [api.md](api.md))" },
  [ErrorCode.TenantShredded]: {
    status: 410,
    when: "the tenant's keys were destroyed (`relay keys shred`): nothing of it can be read or written again, by anyone; erasure still answers 200 and deletes what is left ([crypto.md](crypto.md))",
  },
  [ErrorCode.VersionMismatch]: { status: 412, when: '`If-Match` names a version the chunk no longer has' },
  [ErrorCode.PayloadTooLarge]: { status: 413, when: 'body over `RELAY_BODY_LIMIT_BYTES` (1 MiB)' },
  [ErrorCode.UnsupportedMediaType]: { status: 415, when: 'a body that is not `application/json` in UTF-8 (`text/plain` and `application/*+json` included) on a route that takes one' },
  [ErrorCode.IdempotencyKeyReused]: { status: 422, when: 'an `Idempotency-Key` already used for a different request' },
  [ErrorCode.RateLimited]: { status: 429, when: 'over `RELAY_RATE_LIMIT_PER_MIN` requests for the tenant; with `Retry-After`' },
  [ErrorCode.Internal]: { status: 500, when: 'anything unexpected; details only in the log' },
  [ErrorCode.EmbedderFailed]: {
    status: 502,
    when: 'the embedding API answered but refused the request (a 4xx other than 429) or sent a malformed answer; a retry will not help',
  },
  [ErrorCode.EmbedderUnavailable]: { status: 503, when: 'the embedding model or API is down or failed after its retries; with `Retry-After`' },
  [ErrorCode.StoreUnavailable]: { status: 503, when: 'the database cannot be reached, a statement timed out, no connection was free, or a write reached a server that is not a writable primary (a failover or switchover under way); with `Retry-After`' },
  [ErrorCode.RateLimitUnavailable]: {
    status: 503,
    when: 'the Redis that counts the rate limit (`RELAY_REDIS_URL`) cannot be reached and `RELAY_RATE_LIMIT_REQUIRED=true`; with `Retry-After`. Without that setting the request is served uncounted ([scaling.md](scaling.md))',
  },
};

/** docs/errors.md's table of API error codes, as `npm run docs` writes it. */
export function errorCodeTable(): string {
  const rows = Object.entries(ERROR_CATALOG).map(([code, d]) => `| \`${code}\` | ${d.status} | ${d.when} |`);
  return ['| code | status | when |', '|---|---|---|', ...rows].join('\n');
}

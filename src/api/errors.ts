/** Stable error codes of the HTTP API; docs/errors.md lists every one. */
export const ErrorCode = {
  BadRequest: 'bad_request',
  InvalidJson: 'invalid_json',
  ValidationFailed: 'validation_failed',
  InvalidFilter: 'invalid_filter',
  InvalidCursor: 'invalid_cursor',
  InvalidConsistencyToken: 'invalid_consistency_token',
  InvalidHeader: 'invalid_header',
  Unauthorized: 'unauthorized',
  ForbiddenScope: 'forbidden_scope',
  NotFound: 'not_found',
  NotAcceptable: 'not_acceptable',
  VersionMismatch: 'version_mismatch',
  TenantShredded: 'tenant_shredded',
  PayloadTooLarge: 'payload_too_large',
  UnsupportedMediaType: 'unsupported_media_type',
  IdempotencyKeyReused: 'idempotency_key_reused',
  RateLimited: 'rate_limited',
  RateLimitUnavailable: 'rate_limit_unavailable',
  Internal: 'internal',
  EmbedderFailed: 'embedder_failed',
  EmbedderUnavailable: 'embedder_unavailable',
  StoreUnavailable: 'store_unavailable',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** An error the API answers as is: its status, its stable code, a message safe for the client. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
    /** Extra response headers (Retry-After, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function errorBody(code: ErrorCode, message: string): { error: { code: ErrorCode; message: string } } {
  return { error: { code, message } };
}

export const badRequest = (code: ErrorCode, message: string) => new ApiError(400, code, message);
export const notFound = (what = 'memory') => new ApiError(404, ErrorCode.NotFound, `${what} not found`);
export const forbiddenScope = (message: string) => new ApiError(403, ErrorCode.ForbiddenScope, message);

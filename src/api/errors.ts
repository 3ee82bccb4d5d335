/** Stable error codes of the HTTP API; docs/errors.md lists every one. */
export const ErrorCode = {
  BadRequest: 'bad_request',
  NotFound: 'not_found',
  PayloadTooLarge: 'payload_too_large',
  Internal: 'internal',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function errorBody(code: ErrorCode, message: string): { error: { code: ErrorCode; message: string } } {
  return { error: { code, message } };
}

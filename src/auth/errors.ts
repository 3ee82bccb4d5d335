/**
 * Why a bearer token was refused. Messages are fixed strings per reason (plus, at most, the
 * name of a claim): they never carry the token, a secret or a claim's value, so they are safe
 * to log and to return to the caller.
 */
export type AuthErrorReason = 'missing' | 'malformed' | 'expired' | 'not_yet_valid' | 'bad_signature' | 'bad_claims';

export const AUTH_ERROR_REASONS: readonly AuthErrorReason[] = ['missing', 'malformed', 'expired', 'not_yet_valid', 'bad_signature', 'bad_claims'];

const MESSAGES: Record<AuthErrorReason, string> = {
  missing: 'an Authorization: Bearer token is required',
  malformed: 'the bearer token is malformed',
  expired: 'the bearer token has expired',
  not_yet_valid: 'the bearer token is not valid yet',
  bad_signature: 'the bearer token is not signed by an accepted key',
  bad_claims: 'the bearer token claims are invalid',
};

/** A request's bearer token was missing or refused: HTTP 401, code `unauthorized`. */
export class AuthError extends Error {
  readonly code = 'unauthorized';
  readonly statusCode = 401;
  readonly reason: AuthErrorReason;

  /** `detail` must be a fixed phrase chosen by the caller, never text taken from the token. */
  constructor(reason: AuthErrorReason, detail?: string) {
    super(detail ? `${MESSAGES[reason]}: ${detail}` : MESSAGES[reason]);
    this.name = 'AuthError';
    this.reason = reason;
  }
}

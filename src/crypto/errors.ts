/**
 * Errors of the crypto layer. Messages are fixed strings per reason or code: they never
 * carry key bytes, plaintext, ciphertext, wrapped keys or user ids, so they are safe to
 * log and to return to a caller.
 */

/** Why a sealed value did not open (the label of `relay_open_failures_total{reason}`). */
export type OpenFailureReason = 'bad_format' | 'unknown_key' | 'key_shredded' | 'wrong_context_or_tampered';

export const OPEN_FAILURE_REASONS: readonly OpenFailureReason[] = [
  'bad_format',
  'unknown_key',
  'key_shredded',
  'wrong_context_or_tampered',
];

/** Called once for every value that failed to open, with the reason; must not throw. */
export type OpenFailureHook = (reason: OpenFailureReason) => void;

const OPEN_MESSAGES: Record<OpenFailureReason, string> = {
  bad_format: 'sealed value is not in a known format',
  unknown_key: 'sealed value names a key this keyring does not have',
  key_shredded: "the tenant's keys were destroyed (crypto-shredded)",
  wrong_context_or_tampered: 'sealed value does not open in this context (wrong tenant, user, chunk, purpose or key, or tampered)',
};

/**
 * A value failed to open (or a seal was refused because the tenant was shredded).
 * Callers on the read path skip the value; they never see partial plaintext.
 */
export class CryptoError extends Error {
  readonly code = 'crypto_open_failed';
  readonly reason: OpenFailureReason;

  constructor(reason: OpenFailureReason) {
    super(OPEN_MESSAGES[reason]);
    this.name = 'CryptoError';
    this.reason = reason;
  }
}

export type KeyErrorCode =
  /** RELAY_MASTER_KEY / the key file is not base64 of exactly 32 bytes, or both sources are set. */
  | 'invalid_master_key'
  /** The master key file is readable or writable by group or others. */
  | 'master_key_file_permissions'
  /** A wrapped key did not unwrap: another master key wrapped it, or it was altered. */
  | 'unwrap_failed'
  /** A wrapped key names a provider this keyring was not given. */
  | 'unknown_provider';

/**
 * A problem with the key hierarchy itself (master key, wrapping). Unlike `CryptoError`
 * it is not about one value: every value of the tenant would fail the same way, so it is
 * raised to the caller instead of being counted and skipped.
 */
export class KeyError extends Error {
  readonly code: KeyErrorCode;

  constructor(code: KeyErrorCode, message: string) {
    super(message);
    this.name = 'KeyError';
    this.code = code;
  }
}

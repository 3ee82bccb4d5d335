/**
 * PLACEHOLDER — THIS IS NOT ENCRYPTION.
 *
 * The foundation stores memory text through these functions so the write and read
 * paths have their final shape (a `ciphertext` bytea column, a `key_id`, a user
 * pseudonym) before the crypto part exists. `placeholderSeal` only frames the UTF-8
 * bytes; anyone who can read the table can read the text. The encryption-at-rest
 * issue replaces all three with AES-256-GCM `seal`/`openSealed` and a keyed `hmacUser`.
 */
import { createHash } from 'node:crypto';

/** Marks rows written by the placeholder, so the real crypto can find and re-seal them. */
export const PLACEHOLDER_KEY_ID = 'placeholder-unencrypted';
const MAGIC = Buffer.from('RLY0', 'ascii');

export function placeholderSeal(text: string): Buffer {
  return Buffer.concat([MAGIC, Buffer.from(text, 'utf8')]);
}

export function placeholderOpen(sealed: Buffer): string {
  if (sealed.length < MAGIC.length || !sealed.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new Error('not a placeholder-sealed value');
  }
  return sealed.subarray(MAGIC.length).toString('utf8');
}

/**
 * An unkeyed stand-in for `hmacUser`: keeps the plain user id out of the database,
 * but is not a secret pseudonym (anyone can recompute it from a guessed id).
 */
export function placeholderUserHash(tenantId: string, userId: string): Buffer {
  return createHash('sha256').update(`${tenantId.length}:${tenantId}${userId.length}:${userId}`, 'utf8').digest();
}

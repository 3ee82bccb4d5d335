/**
 * The AES-256-GCM primitive every layer above goes through (seal/open, key wrapping, the
 * Wycheproof tests and the benchmark): 96-bit nonces and 128-bit tags only.
 */
import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import { CryptoError } from './errors.ts';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

/** A raw 32-byte key or a secret `KeyObject` made from one. */
export type AesKey = Buffer | KeyObject;

function checkNonce(nonce: Uint8Array): void {
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`AES-GCM nonce must be ${NONCE_BYTES} bytes`);
}

/**
 * Encrypts `plaintext` and writes ciphertext then tag into `out` at `offset`
 * (`plaintext.length + 16` bytes). Returns the offset after the tag.
 */
export function gcmEncryptInto(
  key: AesKey,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  out: Buffer,
  offset: number,
): number {
  checkNonce(nonce);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  let o = offset;
  if (plaintext.length > 0) o += cipher.update(plaintext).copy(out, o);
  o += cipher.final().copy(out, o);
  return o + cipher.getAuthTag().copy(out, o);
}

export function gcmEncrypt(key: AesKey, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): { ciphertext: Buffer; tag: Buffer } {
  const out = Buffer.allocUnsafe(plaintext.length + TAG_BYTES);
  gcmEncryptInto(key, nonce, plaintext, aad, out, 0);
  return { ciphertext: out.subarray(0, plaintext.length), tag: out.subarray(plaintext.length) };
}

/**
 * Decrypts and verifies. On a bad tag it throws `CryptoError('wrong_context_or_tampered')`
 * and wipes what it had decrypted: no partial plaintext ever leaves this function.
 */
export function gcmDecrypt(key: AesKey, nonce: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, aad: Uint8Array): Buffer {
  checkNonce(nonce);
  if (tag.length !== TAG_BYTES) throw new CryptoError('wrong_context_or_tampered');
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const head = ciphertext.length > 0 ? decipher.update(ciphertext) : Buffer.alloc(0);
  try {
    const tail = decipher.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    head.fill(0);
    throw new CryptoError('wrong_context_or_tampered');
  }
}

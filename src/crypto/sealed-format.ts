/**
 * Byte layout of a sealed value, format 1 (docs/crypto.md has the table):
 *
 *   "RLY" (3) | format 0x01 (1) | key id length L (1) | key id ASCII (L)
 *   | key version uint32 BE (4) | nonce (12) | key commitment (32)   ← header, 53 + L bytes
 *   | ciphertext (n) | GCM tag (16)
 *
 * The key id names a key *slot* independent of the tenant (the tenant comes from the
 * context), e.g. `dk` for a tenant data key; with the version it finds the key. The whole
 * header is part of the GCM additional data, so none of its bytes can change unnoticed.
 * The foundation's unencrypted placeholder framing ("RLY0…", never released) reads as format 0x30 and is refused as `bad_format`.
 */
import { CryptoError } from './errors.ts';
import { NONCE_BYTES, TAG_BYTES } from './gcm.ts';

export const SEALED_MAGIC = Buffer.from('RLY', 'ascii');
export const SEALED_FORMAT_V1 = 1;
export const COMMITMENT_BYTES = 32;
export const MAX_KEY_ID_BYTES = 32;
const KEY_ID_RE = /^[a-z0-9._-]{1,32}$/;

export interface SealedParts {
  formatVersion: number;
  keyId: string;
  keyVersion: number;
  /** Views into the sealed buffer (not copies). */
  header: Buffer;
  nonce: Buffer;
  commitment: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export function checkKeyId(keyId: string): void {
  if (!KEY_ID_RE.test(keyId)) throw new RangeError('key id must be 1-32 characters of [a-z0-9._-]');
}

export function checkKeyVersion(version: number): void {
  if (!Number.isInteger(version) || version < 1 || version > 0xffff_ffff) {
    throw new RangeError('key version must be an integer in 1..2^32-1');
  }
}

/** Header bytes before the nonce: magic, format, key id, key version (constant per key). */
export function headerPrefix(keyId: string, keyVersion: number): Buffer {
  checkKeyId(keyId);
  checkKeyVersion(keyVersion);
  const out = Buffer.allocUnsafe(SEALED_MAGIC.length + 2 + keyId.length + 4);
  let o = SEALED_MAGIC.copy(out, 0);
  o = out.writeUInt8(SEALED_FORMAT_V1, o);
  o = out.writeUInt8(keyId.length, o);
  o += out.write(keyId, o, 'ascii');
  out.writeUInt32BE(keyVersion, o);
  return out;
}

export function headerLength(prefixLength: number): number {
  return prefixLength + NONCE_BYTES + COMMITMENT_BYTES;
}

/** Splits a sealed value into views; `bad_format` for anything that is not format 1. */
export function parseSealed(sealed: Buffer): SealedParts {
  if (!Buffer.isBuffer(sealed)) throw new CryptoError('bad_format');
  const m = SEALED_MAGIC.length;
  if (sealed.length < m + 2 || sealed[0] !== SEALED_MAGIC[0] || sealed[1] !== SEALED_MAGIC[1] || sealed[2] !== SEALED_MAGIC[2]) {
    throw new CryptoError('bad_format');
  }
  const formatVersion = sealed[m] as number;
  if (formatVersion !== SEALED_FORMAT_V1) throw new CryptoError('bad_format');
  const idLen = sealed[m + 1] as number;
  const prefixLen = m + 2 + idLen + 4;
  const headerLen = headerLength(prefixLen);
  if (idLen === 0 || idLen > MAX_KEY_ID_BYTES || sealed.length < headerLen + TAG_BYTES) throw new CryptoError('bad_format');
  const keyId = sealed.toString('latin1', m + 2, m + 2 + idLen);
  if (!KEY_ID_RE.test(keyId)) throw new CryptoError('bad_format');
  const keyVersion = sealed.readUInt32BE(m + 2 + idLen);
  if (keyVersion === 0) throw new CryptoError('bad_format');
  const nonceAt = prefixLen;
  const commitAt = nonceAt + NONCE_BYTES;
  const tagAt = sealed.length - TAG_BYTES;
  return {
    formatVersion,
    keyId,
    keyVersion,
    header: sealed.subarray(0, headerLen),
    nonce: sealed.subarray(nonceAt, commitAt),
    commitment: sealed.subarray(commitAt, headerLen),
    ciphertext: sealed.subarray(headerLen, tagAt),
    tag: sealed.subarray(tagAt),
  };
}

/** What a sealed value names, without opening it (e.g. to fill a `key_id` column). */
export function describeSealed(sealed: Buffer): { formatVersion: number; keyId: string; keyVersion: number } {
  const { formatVersion, keyId, keyVersion } = parseSealed(sealed);
  return { formatVersion, keyId, keyVersion };
}

/**
 * The synchronous seal/open primitives over one prepared data key. The keyring picks the
 * key; these do the bytes. Exported so the benchmark and the tests exercise exactly the
 * code the keyring runs.
 *
 * Key commitment: from the tenant's random 256-bit data key K we derive, once, when the key
 * is unwrapped, an encryption key and a 32-byte commitment with HKDF-SHA256 (distinct
 * `info` labels). The commitment is written into every header and compared (constant time)
 * before decrypting, so a value only opens under the K it was sealed with, even though
 * AES-GCM alone is not key-committing. Being a per-key constant it costs nothing per seal;
 * a per-message HMAC(K, nonce) measured at about half the throughput of bare AES-GCM at 1 KiB
 * (see docs/crypto.md).
 */
import { createSecretKey, hkdfSync, randomFillSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { contextLength, writeContext, type SealContext } from './aad.ts';
import { CryptoError } from './errors.ts';
import { gcmDecrypt, gcmEncryptInto, KEY_BYTES, NONCE_BYTES, TAG_BYTES } from './gcm.ts';
import { COMMITMENT_BYTES, headerLength, headerPrefix, parseSealed, SEALED_FORMAT_V1, type SealedParts } from './sealed-format.ts';

const ENC_INFO = Buffer.from('relay/data-key/enc/v1', 'ascii');
const COMMIT_INFO = Buffer.from('relay/data-key/commit/v1', 'ascii');
const VECTOR_INFO = Buffer.from('relay/data-key/vector/v1', 'ascii');

/** An unwrapped data key, ready to use. Holds no copy of the root key bytes. */
export interface DataKey {
  readonly keyId: string;
  readonly version: number;
  readonly encKey: KeyObject;
  readonly commitment: Buffer;
  /** Magic, format, key id and version: the header bytes before the nonce. */
  readonly prefix: Buffer;
  /** Keys the vector transforms of rows under this key (`VectorTransform.derive`, salted per user). */
  readonly vectorSeed: Buffer;
}

/** Derives the encryption key, the commitment and the vector seed from a root data key (32 bytes). */
export function prepareDataKey(rootKey: Buffer, keyId: string, version: number): DataKey {
  if (!Buffer.isBuffer(rootKey) || rootKey.length !== KEY_BYTES) throw new RangeError(`data key must be ${KEY_BYTES} bytes`);
  const prefix = headerPrefix(keyId, version);
  const enc = Buffer.from(hkdfSync('sha256', rootKey, Buffer.alloc(0), ENC_INFO, KEY_BYTES));
  const encKey = createSecretKey(enc);
  enc.fill(0);
  const commitment = Buffer.from(hkdfSync('sha256', rootKey, Buffer.alloc(0), COMMIT_INFO, COMMITMENT_BYTES));
  const vectorSeed = Buffer.from(hkdfSync('sha256', rootKey, Buffer.alloc(0), VECTOR_INFO, 32));
  return { keyId, version, encKey, commitment, prefix, vectorSeed };
}

// Nonces come from a CSPRNG pool refilled 340 nonces at a time: one randomBytes(12) per
// seal cost as much as a third of the AES-GCM work at 1 KiB. Each slice is used once;
// nonces are public, so the pool holds nothing secret.
const POOL_NONCES = 340;
const noncePool = Buffer.alloc(NONCE_BYTES * POOL_NONCES);
let poolAt = noncePool.length;

function takeNonce(out: Buffer, offset: number): void {
  if (poolAt === noncePool.length) {
    randomFillSync(noncePool);
    poolAt = 0;
  }
  noncePool.copy(out, offset, poolAt, poolAt + NONCE_BYTES);
  poolAt += NONCE_BYTES;
}

/** Seals `plaintext` for `ctx` under `key` with a fresh random nonce. */
export function sealWithKey(key: DataKey, plaintext: Uint8Array, ctx: SealContext): Buffer {
  const prefixLen = key.prefix.length;
  const headerLen = headerLength(prefixLen);
  const aad = Buffer.allocUnsafe(headerLen + contextLength(ctx));
  key.prefix.copy(aad, 0);
  takeNonce(aad, prefixLen);
  key.commitment.copy(aad, prefixLen + NONCE_BYTES);
  writeContext(aad, headerLen, SEALED_FORMAT_V1, ctx);
  const out = Buffer.allocUnsafe(headerLen + plaintext.length + TAG_BYTES);
  aad.copy(out, 0, 0, headerLen);
  gcmEncryptInto(key.encKey, aad.subarray(prefixLen, prefixLen + NONCE_BYTES), plaintext, aad, out, headerLen);
  return out;
}

/** Opens a value already parsed with `parseSealed` (the keyring parses once to find the key). */
export function openParsed(key: DataKey, parts: SealedParts, ctx: SealContext): Buffer {
  if (parts.keyId !== key.keyId || parts.keyVersion !== key.version) throw new CryptoError('unknown_key');
  if (!timingSafeEqual(parts.commitment, key.commitment)) throw new CryptoError('wrong_context_or_tampered');
  const headerLen = parts.header.length;
  const aad = Buffer.allocUnsafe(headerLen + contextLength(ctx));
  parts.header.copy(aad, 0);
  writeContext(aad, headerLen, SEALED_FORMAT_V1, ctx);
  return gcmDecrypt(key.encKey, parts.nonce, parts.ciphertext, parts.tag, aad);
}

/** Opens `sealed` for `ctx` under `key`, or throws `CryptoError` with a reason. */
export function openWithKey(key: DataKey, sealed: Buffer, ctx: SealContext): Buffer {
  return openParsed(key, parseSealed(sealed), ctx);
}

/**
 * Key providers wrap (encrypt) and unwrap tenant keys under a master key (the KEK). Only
 * the local provider is implemented. A KMS adapter implements the same three members:
 *
 * - AWS KMS: `id = "aws-kms:" + keyArn`; `wrap(key, aad)` → `Encrypt({ KeyId: keyArn,
 *   Plaintext: key, EncryptionContext })` and `unwrap(wrapped, aad)` → `Decrypt({ KeyId: keyArn,
 *   CiphertextBlob: wrapped, EncryptionContext })`, where `EncryptionContext` is
 *   `{ tenant_id, key_kind, key_version }` from `decodeKeyAad(aad)`: KMS binds the context
 *   like GCM binds AAD, and CloudTrail then logs which tenant each decrypt was for.
 * - Vault transit: `id = "vault-transit:" + mount + "/" + keyName`; `wrap` → `POST
 *   {mount}/encrypt/{keyName}` with `plaintext` = base64(key) and `context` = base64(aad)
 *   (the transit key needs `derived: true`); `unwrap` → `POST {mount}/decrypt/{keyName}`.
 *
 * Both are async and remote, which is why the keyring caches unwrapped keys.
 */
import { createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { CryptoError, KeyError } from './errors.ts';
import { gcmDecrypt, gcmEncryptInto, KEY_BYTES, NONCE_BYTES, TAG_BYTES } from './gcm.ts';

export interface KeyProvider {
  /** Stable id stored beside each wrapped key, so rows can be matched to their provider. */
  readonly id: string;
  wrap(key: Buffer, aad: Buffer): Promise<Buffer>;
  unwrap(wrapped: Buffer, aad: Buffer): Promise<Buffer>;
}

const WRAP_MAGIC = Buffer.from('RKW', 'ascii');
const WRAP_FORMAT_V1 = 1;
const KEK_ID_BYTES = 8;
/** "RKW" | 0x01 | KEK id (8) | nonce (12); the wrapped key and the tag follow. */
const WRAP_HEADER_BYTES = WRAP_MAGIC.length + 1 + KEK_ID_BYTES + NONCE_BYTES;

/**
 * AES-256-GCM key wrapping under a 32-byte master key held in this process. The wrapping
 * key and the KEK id are derived from the master key with HKDF, so the master key itself
 * is never used directly. Layout of a wrapped key (72 bytes for a 32-byte key):
 *
 *   "RKW" (3) | format 0x01 (1) | KEK id (8) | nonce (12) | encrypted key (n) | tag (16)
 *
 * The GCM additional data is that 24-byte header followed by the caller's `aad`.
 */
export class LocalKeyProvider implements KeyProvider {
  readonly id: string;
  readonly #kekId: Buffer;
  readonly #wrapKey: KeyObject;

  constructor(masterKey: Buffer) {
    if (!Buffer.isBuffer(masterKey) || masterKey.length !== KEY_BYTES) {
      throw new KeyError('invalid_master_key', `master key must be ${KEY_BYTES} bytes`);
    }
    const empty = Buffer.alloc(0);
    this.#kekId = Buffer.from(hkdfSync('sha256', masterKey, empty, 'relay/kek/id/v1', KEK_ID_BYTES));
    const wrapKey = Buffer.from(hkdfSync('sha256', masterKey, empty, 'relay/kek/wrap/v1', KEY_BYTES));
    this.#wrapKey = createSecretKey(wrapKey);
    wrapKey.fill(0);
    this.id = `local:${this.#kekId.toString('hex')}`;
  }

  async wrap(key: Buffer, aad: Buffer): Promise<Buffer> {
    const out = Buffer.allocUnsafe(WRAP_HEADER_BYTES + key.length + TAG_BYTES);
    let o = WRAP_MAGIC.copy(out, 0);
    o = out.writeUInt8(WRAP_FORMAT_V1, o);
    o += this.#kekId.copy(out, o);
    randomBytes(NONCE_BYTES).copy(out, o);
    const header = out.subarray(0, WRAP_HEADER_BYTES);
    gcmEncryptInto(this.#wrapKey, out.subarray(o, o + NONCE_BYTES), key, Buffer.concat([header, aad]), out, WRAP_HEADER_BYTES);
    return out;
  }

  async unwrap(wrapped: Buffer, aad: Buffer): Promise<Buffer> {
    if (
      !Buffer.isBuffer(wrapped) ||
      wrapped.length < WRAP_HEADER_BYTES + TAG_BYTES ||
      !wrapped.subarray(0, WRAP_MAGIC.length).equals(WRAP_MAGIC) ||
      wrapped[WRAP_MAGIC.length] !== WRAP_FORMAT_V1
    ) {
      throw new KeyError('unwrap_failed', 'wrapped key is not in the local provider format');
    }
    const kekId = wrapped.subarray(WRAP_MAGIC.length + 1, WRAP_MAGIC.length + 1 + KEK_ID_BYTES);
    if (!kekId.equals(this.#kekId)) {
      throw new KeyError('unwrap_failed', `key was wrapped by another master key (local:${kekId.toString('hex')}, this is ${this.id})`);
    }
    const nonceAt = WRAP_HEADER_BYTES - NONCE_BYTES;
    const header = wrapped.subarray(0, WRAP_HEADER_BYTES);
    try {
      return gcmDecrypt(
        this.#wrapKey,
        wrapped.subarray(nonceAt, WRAP_HEADER_BYTES),
        wrapped.subarray(WRAP_HEADER_BYTES, wrapped.length - TAG_BYTES),
        wrapped.subarray(wrapped.length - TAG_BYTES),
        Buffer.concat([header, aad]),
      );
    } catch (err) {
      if (err instanceof CryptoError) {
        throw new KeyError('unwrap_failed', 'wrapped key did not authenticate: altered, or bound to another tenant, kind or version');
      }
      throw err;
    }
  }
}

/**
 * Encryption at rest: `Keyring#seal` / `#openSealed` / `#hmacUser` over per-tenant keys
 * wrapped by a master key (docs/crypto.md). The primitives below the keyring are exported
 * for the benchmark and the tests, which must run exactly what the keyring runs.
 */
export { encodeContext, encodeKeyAad, decodeKeyAad, type SealContext, type KeyBinding } from './aad.ts';
export {
  CryptoError,
  KeyError,
  OPEN_FAILURE_REASONS,
  type OpenFailureReason,
  type OpenFailureHook,
  type KeyErrorCode,
} from './errors.ts';
export { gcmEncrypt, gcmDecrypt, gcmEncryptInto, KEY_BYTES, NONCE_BYTES, TAG_BYTES, type AesKey } from './gcm.ts';
export { describeSealed, parseSealed, SEALED_FORMAT_V1, type SealedParts } from './sealed-format.ts';
export { prepareDataKey, sealWithKey, openWithKey, type DataKey } from './seal.ts';
export { LocalKeyProvider, type KeyProvider } from './key-provider.ts';
export { loadMasterKey, decodeMasterKey, type LoadMasterKeyOptions, type MasterKey } from './master-key.ts';
export {
  MemoryKeyRepository,
  type TenantKeyKind,
  type WrappedKey,
  type TenantKeyRepository,
  type SerializedKeyRepository,
} from './key-repository.ts';
export { Keyring, DATA_KEY_ID, DEFAULT_ROTATE_AFTER, type KeyringOptions, type KeyChangeFeed } from './keyring.ts';
export { makeMasterKeyCheck, opensMasterKeyCheck, type MasterKeyCheckValue } from './master-key-check.ts';
export { runCryptoBench, type CryptoBenchOptions, type CryptoBenchResult } from './bench.ts';
export { createPrivateFile, looseMode } from './private-file.ts';
export { VectorTransform, TRANSFORM_ROUNDS } from './vector-transform.ts';

/**
 * The master key check: a random value wrapped by the master key with a fixed AAD and stored
 * beside the key catalog. Unwrapping it proves that a process's master key is the one that
 * wraps the catalog, before it serves a request (a wrong key would otherwise pass /readyz and
 * fail every data request). The value itself protects nothing.
 */
import { randomBytes } from 'node:crypto';
import { KeyError } from './errors.ts';
import { KEY_BYTES } from './gcm.ts';
import type { KeyProvider } from './key-provider.ts';

const CHECK_AAD = Buffer.from('relay/master-key-check/v1', 'ascii');

export interface MasterKeyCheckValue {
  providerId: string;
  wrapped: Buffer;
}

/** A new check value wrapped by `provider`. */
export async function makeMasterKeyCheck(provider: KeyProvider): Promise<MasterKeyCheckValue> {
  const value = randomBytes(KEY_BYTES);
  try {
    return { providerId: provider.id, wrapped: await provider.wrap(value, CHECK_AAD) };
  } finally {
    value.fill(0);
  }
}

/**
 * True when `provider` opens the stored check. False when another master key wrapped it (or it
 * was altered); other failures (a KMS down) are thrown.
 */
export async function opensMasterKeyCheck(provider: KeyProvider, stored: MasterKeyCheckValue): Promise<boolean> {
  if (stored.providerId !== provider.id) return false;
  try {
    const value = await provider.unwrap(stored.wrapped, CHECK_AAD);
    const ok = value.length === KEY_BYTES;
    value.fill(0);
    return ok;
  } catch (err) {
    if (err instanceof KeyError && err.code === 'unwrap_failed') return false;
    throw err;
  }
}

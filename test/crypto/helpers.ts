import { randomBytes } from 'node:crypto';
import {
  CryptoError,
  Keyring,
  LocalKeyProvider,
  MemoryKeyRepository,
  type KeyringOptions,
  type OpenFailureReason,
  type SealContext,
} from '../../src/crypto/index.ts';

export interface Rig {
  keyring: Keyring;
  repo: MemoryKeyRepository;
  provider: LocalKeyProvider;
  masterKey: Buffer;
  failures: OpenFailureReason[];
}

export function makeRig(opts: Partial<KeyringOptions> & { masterKey?: Buffer; repo?: MemoryKeyRepository } = {}): Rig {
  const masterKey = opts.masterKey ?? randomBytes(32);
  const provider = new LocalKeyProvider(masterKey);
  const repo = opts.repo ?? new MemoryKeyRepository();
  const failures: OpenFailureReason[] = [];
  const keyring = new Keyring({ provider, repository: repo, onOpenFailure: (r) => failures.push(r), ...opts });
  return { keyring, repo, provider, masterKey, failures };
}

export function ctxFor(tenantId = 'tenant-a', over: Partial<SealContext> = {}): SealContext {
  return { tenantId, userHash: Buffer.alloc(32, 7), chunkId: 'chunk-1', purpose: 'chunk.text', ...over };
}

/** Resolves to the CryptoError reason the promise (or function) failed with. */
export async function reasonOf(run: Promise<unknown> | (() => unknown)): Promise<OpenFailureReason> {
  try {
    await (typeof run === 'function' ? run() : run);
  } catch (err) {
    if (err instanceof CryptoError) return err.reason;
    throw err;
  }
  throw new Error('expected a CryptoError, but it succeeded');
}

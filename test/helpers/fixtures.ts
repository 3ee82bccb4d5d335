import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { openWithKey, prepareDataKey, sealWithKey, type SealContext } from '../../src/crypto/index.ts';
import type { NewChunk, Scope } from '../../src/store/index.ts';
import { ClusteredSpace } from '../../src/bench/index.ts';

/** A tenant id of this test run only, so suites sharing a server database never see each other. */
export function testTenant(label: string): string {
  return `test-${label}-${randomUUID()}`;
}

/**
 * Store suites test the store, not the keyring: their rows are sealed with the real primitive
 * under one key of this process, and their user hashes are plain SHA-256 (the keyed
 * `hmacUser` and the key catalog are tested in sealed-memory and crypto suites).
 */
const FIXTURE_KEY = prepareDataKey(randomBytes(32), 'dk', 1);
const ctxOf = (id: string): SealContext => ({ tenantId: 'fixture', userHash: Buffer.alloc(32), chunkId: id, purpose: 'fixture.text' });

export function openFixture(id: string, sealed: Buffer): string {
  return openWithKey(FIXTURE_KEY, sealed, ctxOf(id)).toString('utf8');
}

export function scopeOf(tenantId: string, userId: string): Scope {
  return { tenantId, userHash: createHash('sha256').update(`${tenantId.length}:${tenantId}${userId}`).digest() };
}

/** A unit vector pointing along axis `i` (plus a little of axis i+1), easy to reason about. */
export function axis(dim: number, i: number, lean = 0): Float32Array {
  const v = new Float32Array(dim);
  v[i % dim] = 1;
  v[(i + 1) % dim] = lean;
  return v;
}

export function chunk(text: string, embedding: ArrayLike<number>, extra: Partial<NewChunk> = {}): NewChunk {
  const id = extra.id ?? randomUUID();
  return {
    id,
    ciphertext: sealWithKey(FIXTURE_KEY, Buffer.from(text), ctxOf(id)),
    keyId: 'dk:1',
    embedding,
    embedderId: 'test',
    ...extra,
  };
}

export { ClusteredSpace };

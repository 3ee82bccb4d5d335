import { randomUUID } from 'node:crypto';
import { PLACEHOLDER_KEY_ID, placeholderSeal, placeholderUserHash } from '../../src/crypto/index.ts';
import type { NewChunk, Scope } from '../../src/store/index.ts';
import { ClusteredSpace } from '../../src/bench/index.ts';

/** A tenant id of this test run only, so suites sharing a server database never see each other. */
export function testTenant(label: string): string {
  return `test-${label}-${randomUUID()}`;
}

export function scopeOf(tenantId: string, userId: string): Scope {
  return { tenantId, userHash: placeholderUserHash(tenantId, userId) };
}

/** A unit vector pointing along axis `i` (plus a little of axis i+1), easy to reason about. */
export function axis(dim: number, i: number, lean = 0): Float32Array {
  const v = new Float32Array(dim);
  v[i % dim] = 1;
  v[(i + 1) % dim] = lean;
  return v;
}

export function chunk(text: string, embedding: ArrayLike<number>, extra: Partial<NewChunk> = {}): NewChunk {
  return {
    id: randomUUID(),
    ciphertext: placeholderSeal(text),
    keyId: PLACEHOLDER_KEY_ID,
    embedding,
    embedderId: 'test',
    ...extra,
  };
}

export { ClusteredSpace };

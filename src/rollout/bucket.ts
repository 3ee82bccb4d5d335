import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';

/**
 * The stickiness key of a request: tenant and subject of its bearer token, else the client
 * address. The token is only decoded, not verified: the router is not the auth authority and
 * needs only a stable bucket (a forged token still meets the service's 401).
 */
export function stickyKey(authorization: string | undefined, clientAddress: string): string {
  const m = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization) : null;
  if (m) {
    try {
      const claims = decodeJwt(m[1]!);
      if (typeof claims.tid === 'string' && typeof claims.sub === 'string') return `user\u0000${claims.tid}\u0000${claims.sub}`;
    } catch {
      // Not a JWT: bucketed by address like a request without a token.
    }
  }
  return `addr\u0000${clientAddress}`;
}

/** A key's bucket in [0, 100), from SHA-256: uniform, and the same in every controller process. */
export function bucketOf(key: string): number {
  const digest = createHash('sha256').update(key).digest();
  return (digest.readUInt32BE(0) / 0x1_0000_0000) * 100;
}

/**
 * Candidate iff the bucket is below the weight: raising the weight only moves users from stable
 * to the candidate (a bucket below 5 is below 50), never back.
 */
export function routeToCandidate(key: string, weight: number): boolean {
  return bucketOf(key) < weight;
}

import { SignJWT } from 'jose';
import { idProblem, SUBJECT_MAX, TENANT_ID_MAX } from './claims.ts';
import { MIN_SECRET_CHARS } from './verifier.ts';

/** Longest lifetime `parseTtl` and `mintToken` accept. */
export const MAX_TTL_S = 365 * 86_400;

const UNIT_S: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 };

/** "30s", "15m", "1h", "7d" or plain seconds → seconds, within 1 s..365 d; anything else throws a RangeError. */
export function parseTtl(text: string): number {
  const match = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!match) throw new RangeError(`ttl must look like 30s, 15m, 1h, 7d or a number of seconds, got ${JSON.stringify(text.slice(0, 40))}`);
  const seconds = Number(match[1]) * UNIT_S[match[2]!]!;
  if (seconds < 1 || seconds > MAX_TTL_S) throw new RangeError(`ttl must be between 1s and 365d, got ${JSON.stringify(text.slice(0, 40))}`);
  return seconds;
}

export interface MintTokenOptions {
  /** The HS256 secret (at least 32 characters), as `signingSecret` returns it. */
  secret: string;
  /** The `tid` claim: 1..128 characters, no control characters. */
  tenant: string;
  /** The `sub` claim: 1..256 characters, no control characters. Exactly one of `user` and `service`. */
  user?: string;
  /** A service token (`sub` "service", `scope` "service"): may act for any user of its tenant; default false. */
  service?: boolean;
  /** Lifetime in seconds, 1..365 days. */
  ttlSeconds: number;
  /** The `iss` claim; default: none. */
  issuer?: string;
  /** The `aud` claim; default: none. */
  audience?: string;
}

/** Signs an HS256 token that `createTokenVerifier` accepts with the same secret. Bad options throw a RangeError. */
export async function mintToken(opts: MintTokenOptions): Promise<string> {
  if (opts.secret.length < MIN_SECRET_CHARS) throw new RangeError(`the JWT secret must be at least ${MIN_SECRET_CHARS} characters`);
  if (Boolean(opts.user !== undefined) === Boolean(opts.service)) throw new RangeError('a token is for exactly one of a user or the service');
  const tenantProblem = idProblem(opts.tenant, TENANT_ID_MAX);
  if (tenantProblem) throw new RangeError(`tenant ${tenantProblem}`);
  const subject = opts.service ? 'service' : opts.user!;
  const userProblem = idProblem(subject, SUBJECT_MAX);
  if (userProblem) throw new RangeError(`user ${userProblem}`);
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 1 || opts.ttlSeconds > MAX_TTL_S) {
    throw new RangeError('ttlSeconds must be a whole number between 1 and 31536000 (365 days)');
  }
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(opts.service ? { tid: opts.tenant, scope: 'service' } : { tid: opts.tenant })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(subject)
    .setIssuedAt(now)
    .setExpirationTime(now + opts.ttlSeconds);
  if (opts.issuer) jwt.setIssuer(opts.issuer);
  if (opts.audience) jwt.setAudience(opts.audience);
  return jwt.sign(new TextEncoder().encode(opts.secret));
}

import type { KeyObject } from 'node:crypto';
import { webcrypto } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { decodeProtectedHeader, errors, jwtVerify, type CryptoKey, type JWSAlgorithm, type JWTPayload, type JWTVerifyOptions, type LocalJWKSet } from 'jose';
import type { AuthConfig } from '../config/index.ts';
import { ConfigError } from '../config/index.ts';
import { principalFromClaims, type Principal } from './claims.ts';
import { AuthError } from './errors.ts';
import { JWKS_ALGORITHMS, loadJwksFile, loadPublicKeyFile } from './keys.ts';

/** Longest token accepted; anything longer is refused before any parsing or crypto. */
export const MAX_TOKEN_BYTES = 8 * 1024;
/** Clock skew allowed on `exp` and `nbf` between the token's issuer and this server. */
export const CLOCK_TOLERANCE_S = 30;
/** Shortest HS256 secret accepted (RELAY_JWT_SECRET enforces the same). */
export const MIN_SECRET_CHARS = 32;
/** Longest a verified token is taken on trust before its signature is checked again. */
export const VERIFIED_TTL_MS = 60_000;
/** Verified tokens remembered at once (the least recently used go first)… */
export const VERIFIED_MAX = 10_000;
/** …and their total length, in characters: tokens may be up to 8 KB each. */
export const VERIFIED_MAX_CHARS = 8 * 1024 * 1024;

export interface TokenVerifier {
  verify(authorizationHeader: string | undefined): Promise<Principal>;
}

export interface CreateTokenVerifierOptions {
  /**
   * The embedded store's secret (from `signingSecret`), used for HS256 when `cfg.secret` is
   * unset; default: none.
   */
  devSecret?: string;
}

/** One way in: a key (or key resolver) and the only algorithms it may be used with. */
interface KeySource {
  algorithms: JWSAlgorithm[];
  verify(token: string, options: JWTVerifyOptions): Promise<JWTPayload>;
}

const BEARER = /^bearer +([^ ]+)$/i;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function tokenFrom(header: string | undefined): string {
  const value = header?.trim();
  if (!value) throw new AuthError('missing');
  // Checked before the pattern so an oversized header costs nothing more than its length.
  if (value.length > MAX_TOKEN_BYTES + 16) throw new AuthError('malformed', `longer than ${MAX_TOKEN_BYTES} bytes`);
  const match = BEARER.exec(value);
  if (!match) {
    // Another scheme (Basic, a bare token...) is no bearer credential at all (RFC 6750 §3.1).
    if (!/^bearer(?: |$)/i.test(value)) throw new AuthError('missing', 'expected the Bearer scheme');
    throw new AuthError('malformed');
  }
  const token = match[1]!;
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw new AuthError('malformed', `longer than ${MAX_TOKEN_BYTES} bytes`);
  if (!COMPACT_JWS.test(token)) throw new AuthError('malformed');
  return token;
}

/** The HMAC key is imported once: handed the raw bytes, jose would import them on every verify. */
async function secretSource(secret: string): Promise<KeySource> {
  const key = await webcrypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  return { algorithms: ['HS256'], verify: async (token, options) => (await jwtVerify(token, key, { ...options, algorithms: ['HS256'] })).payload };
}

function publicKeySource(key: KeyObject, algorithms: JWSAlgorithm[]): KeySource {
  return { algorithms, verify: async (token, options) => (await jwtVerify(token, key, { ...options, algorithms })).payload };
}

function jwksSource(jwks: LocalJWKSet): KeySource {
  const algorithms = [...JWKS_ALGORITHMS];
  return {
    algorithms,
    async verify(token, options) {
      const pinned = { ...options, algorithms };
      try {
        return (await jwtVerify(token, jwks, pinned)).payload;
      } catch (err) {
        // Several keys fit a token without a kid (say, during a rotation): try each, as jose suggests.
        if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
        for await (const key of err as AsyncIterable<CryptoKey>) {
          try {
            return (await jwtVerify(token, key, pinned)).payload;
          } catch (inner) {
            if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
          }
        }
        throw new errors.JWSSignatureVerificationFailed();
      }
    },
  };
}

/** Signature-level failures: another configured source may still accept the token. */
function isWrongKey(err: unknown): boolean {
  return err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWKSNoMatchingKey;
}

function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  if (err instanceof errors.JWTExpired) return new AuthError('expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' && err.reason === 'check_failed') return new AuthError('not_yet_valid');
    return new AuthError('bad_claims', `claim "${err.claim}" ${err.reason === 'missing' ? 'is missing' : 'is not accepted'}`);
  }
  if (isWrongKey(err) || err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JWKSMultipleMatchingKeys) return new AuthError('bad_signature');
  // JWSInvalid, JWTInvalid, JOSENotSupported, a TypeError from a key that does not fit: the
  // token is unusable either way, and a request must never turn it into a 500.
  return new AuthError('malformed');
}

/**
 * Verifies `Authorization: Bearer <JWT>` headers. Each configured key is pinned to its own
 * algorithms (secret: HS256; public key: its type's; JWKS: RS256, ES256, EdDSA), so a token
 * can never pick how it is checked (`alg: none`, or HS256 keyed with a public key's text).
 * Throws `ConfigError` when nothing is configured to verify with, or a key file is unusable.
 */
export async function createTokenVerifier(cfg: AuthConfig, opts: CreateTokenVerifierOptions = {}): Promise<TokenVerifier> {
  const sources: KeySource[] = [];
  const secret = cfg.secret ?? opts.devSecret;
  if (secret !== undefined) {
    if (secret.length < MIN_SECRET_CHARS) throw new ConfigError(`the JWT secret must be at least ${MIN_SECRET_CHARS} characters`);
    sources.push(await secretSource(secret));
  }
  if (cfg.publicKeyFile) {
    const { key, algorithms } = await loadPublicKeyFile(cfg.publicKeyFile);
    sources.push(publicKeySource(key, algorithms));
  }
  if (cfg.jwksFile) sources.push(jwksSource(await loadJwksFile(cfg.jwksFile)));
  if (sources.length === 0) {
    throw new ConfigError('no way to verify tokens: set RELAY_JWT_SECRET, RELAY_JWT_PUBLIC_KEY_FILE or RELAY_JWT_JWKS_FILE');
  }

  const options: JWTVerifyOptions = { clockTolerance: CLOCK_TOLERANCE_S, requiredClaims: ['exp'] };
  if (cfg.issuer) options.issuer = cfg.issuer;
  if (cfg.audience) options.audience = cfg.audience;

  // Tokens that passed, by their exact text: a client sends the same token with every request,
  // and its signature need not be checked each time (an HMAC through WebCrypto was ~6% of a
  // query's CPU). An entry lasts until the token's exp (plus the clock tolerance, as jose counts
  // it) and never longer than VERIFIED_TTL_MS; past that the token is verified afresh, and an
  // expired one refused as before. Failures are never remembered.
  const verified = new LRUCache<string, { principal: Principal; untilMs: number }>({ max: VERIFIED_MAX, maxSize: VERIFIED_MAX_CHARS, sizeCalculation: (_v, token) => token.length });

  return {
    async verify(authorizationHeader) {
      const token = tokenFrom(authorizationHeader);
      const hit = verified.get(token);
      if (hit) {
        if (Date.now() < hit.untilMs) return hit.principal;
        verified.delete(token);
      }
      let alg: unknown;
      try {
        alg = decodeProtectedHeader(token).alg;
      } catch {
        throw new AuthError('malformed');
      }
      const candidates = sources.filter((s) => typeof alg === 'string' && (s.algorithms as string[]).includes(alg));
      if (candidates.length === 0) throw new AuthError('bad_signature', 'its algorithm is not accepted');
      for (const source of candidates) {
        let payload: JWTPayload;
        try {
          payload = await source.verify(token, options);
        } catch (err) {
          if (isWrongKey(err)) continue;
          throw toAuthError(err);
        }
        const principal = Object.freeze(principalFromClaims(payload));
        // requiredClaims makes exp present; jose refuses a token once now ≥ exp + tolerance.
        const untilMs = Math.min(Date.now() + VERIFIED_TTL_MS, ((payload.exp ?? 0) + CLOCK_TOLERANCE_S) * 1000);
        verified.set(token, { principal, untilMs });
        return principal;
      }
      throw new AuthError('bad_signature');
    },
  };
}

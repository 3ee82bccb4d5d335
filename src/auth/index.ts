export { AuthError, AUTH_ERROR_REASONS, type AuthErrorReason } from './errors.ts';
export { idProblem, SUBJECT_MAX, TENANT_ID_MAX, type Principal } from './claims.ts';
export {
  CLOCK_TOLERANCE_S,
  createTokenVerifier,
  MAX_TOKEN_BYTES,
  MIN_SECRET_CHARS,
  type CreateTokenVerifierOptions,
  type TokenVerifier,
} from './verifier.ts';
export { JWKS_ALGORITHMS } from './keys.ts';
export { MAX_TTL_S, mintToken, parseTtl, type MintTokenOptions } from './mint.ts';
export { SECRET_FILE, signingSecret, type SigningSecret } from './secret.ts';

import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, type JSONWebKeySet, type JWSAlgorithm, type LocalJWKSet } from 'jose';
import { ConfigError } from '../config/index.ts';

/** Algorithms a JWKS file may sign with; which key verifies is then jose's pick by kid/alg/kty. */
export const JWKS_ALGORITHMS: readonly JWSAlgorithm[] = ['RS256', 'ES256', 'EdDSA'];

export interface PublicKey {
  key: KeyObject;
  /** The only algorithms this key verifies: those of its type, so an HS256 token can never use it. */
  algorithms: JWSAlgorithm[];
}

async function readConfigured(path: string, variable: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`cannot read ${variable} ${path} (${code})`);
  }
}

function algorithmsFor(key: KeyObject, path: string): JWSAlgorithm[] {
  const type = key.asymmetricKeyType;
  if (type === 'rsa') {
    // jose refuses shorter moduli at verify time; saying so at start names the real problem.
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      throw new ConfigError(`RELAY_JWT_PUBLIC_KEY_FILE ${path}: an RSA key must have at least 2048 bits`);
    }
    return ['RS256', 'PS256'];
  }
  if (type === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return ['ES256'];
  if (type === 'ed25519') return ['EdDSA'];
  const what = type === 'ec' ? `an EC key on curve ${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'}` : `a key of type ${type ?? 'unknown'}`;
  throw new ConfigError(`RELAY_JWT_PUBLIC_KEY_FILE ${path} holds ${what}; supported: RSA (RS256, PS256), EC P-256 (ES256), Ed25519 (EdDSA)`);
}

/** Reads a PEM public key (SPKI) and the algorithms its type allows. */
export async function loadPublicKeyFile(path: string): Promise<PublicKey> {
  const pem = await readConfigured(path, 'RELAY_JWT_PUBLIC_KEY_FILE');
  // createPublicKey would quietly derive the public half, but a signing key has no business
  // on a server that only verifies: refuse it so it gets moved somewhere safer.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new ConfigError(`RELAY_JWT_PUBLIC_KEY_FILE ${path} holds a private key; give the server the public key only`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new ConfigError(`RELAY_JWT_PUBLIC_KEY_FILE ${path} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)`);
  }
  return { key, algorithms: algorithmsFor(key, path) };
}

/** Reads a local JWKS file (`{"keys": [...]}`, public keys only) into a key resolver. */
export async function loadJwksFile(path: string): Promise<LocalJWKSet> {
  const text = await readConfigured(path, 'RELAY_JWT_JWKS_FILE');
  let jwks: unknown;
  try {
    jwks = JSON.parse(text);
  } catch {
    throw new ConfigError(`RELAY_JWT_JWKS_FILE ${path} is not valid JSON`);
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))) {
    throw new ConfigError(`RELAY_JWT_JWKS_FILE ${path} must be a JSON Web Key Set: {"keys": [ ...one or more keys ]}`);
  }
  // "d" is the private part of RSA, EC and OKP keys, "k" a symmetric key: signing material
  // that must not sit on a verifying server.
  if (keys.some((k: Record<string, unknown>) => 'd' in k || 'k' in k)) {
    throw new ConfigError(`RELAY_JWT_JWKS_FILE ${path} holds private or symmetric key material; publish public keys only`);
  }
  try {
    return createLocalJWKSet(jwks as JSONWebKeySet);
  } catch {
    throw new ConfigError(`RELAY_JWT_JWKS_FILE ${path} is not a valid JSON Web Key Set`);
  }
}

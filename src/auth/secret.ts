/**
 * The HS256 secret shared by the server and `relay token`, in order:
 *  1. `RELAY_JWT_SECRET`;
 *  2. with a public key or JWKS configured instead: none (tokens come from whoever holds the
 *     private key; a second, local way in would be a surprise);
 *  3. embedded store: `<dataDir>/jwt.secret`, 32 random bytes as base64url, created 0600 on
 *     first use; `memory://` gets a random secret that dies with the process;
 *  4. server store: an error, since replicas behind a load balancer must share one secret.
 *
 * A secret file that group or others may access is refused, as the master key file is: anyone
 * who can read it can mint a token for any tenant.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/index.ts';
import { ConfigError } from '../config/index.ts';
import { createPrivateFile, looseMode } from '../crypto/index.ts';
import { MIN_SECRET_CHARS } from './verifier.ts';

export const SECRET_FILE = 'jwt.secret';

export interface SigningSecret {
  secret: string | null;
  /** True when the secret is new: the file was made now, or it is ephemeral (nobody else holds it, so print a dev token). */
  created: boolean;
  source: 'env' | 'file' | 'ephemeral' | 'none';
  /** The secret file, for `file`. */
  path?: string;
}

function checkPermissions(path: string): void {
  const mode = looseMode(path);
  if (mode) throw new ConfigError(`JWT secret file ${path} has mode ${mode}: group or others can access it; run chmod 600 (refusing to use it)`);
}

function readSecretFile(path: string): string {
  let text: string;
  try {
    checkPermissions(path);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`cannot read JWT secret file ${path} (${code})`);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret.length < MIN_SECRET_CHARS || /\s/.test(secret)) {
    throw new ConfigError(`JWT secret file ${path} must hold one line of at least ${MIN_SECRET_CHARS} characters; delete it to get a new one`);
  }
  return secret;
}

/** The HS256 secret the server and `relay token` share for this configuration (see the file comment). */
export function signingSecret(config: Config): SigningSecret {
  const auth = config.auth;
  if (auth.secret) return { secret: auth.secret, created: false, source: 'env' };
  if (auth.publicKeyFile || auth.jwksFile) return { secret: null, created: false, source: 'none' };
  if (config.store.kind === 'pg') {
    throw new ConfigError(
      'a server store needs RELAY_JWT_SECRET (32+ characters), RELAY_JWT_PUBLIC_KEY_FILE or RELAY_JWT_JWKS_FILE to verify tokens; try: openssl rand -base64 32',
    );
  }
  const dir = config.store.dataDir;
  if (dir === 'memory://') return { secret: randomBytes(32).toString('base64url'), created: true, source: 'ephemeral' };
  const path = join(dir, SECRET_FILE);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const created = createPrivateFile(path, `${randomBytes(32).toString('base64url')}\n`);
  return { secret: readSecretFile(path), created, source: 'file', path };
}

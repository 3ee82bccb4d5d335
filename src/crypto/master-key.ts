/**
 * Where the master key (KEK) comes from, in order:
 *  1. `RELAY_MASTER_KEY`: base64 of exactly 32 bytes;
 *  2. `RELAY_MASTER_KEY_FILE`: a file holding that base64 text (a trailing newline is fine);
 *  3. the embedded default `<dataDir>/master.key`, created (mode 0600) on first use, with a
 *     loud warning: it sits next to the data it protects, so it is for development only.
 * Setting both 1 and 2 is an error (which one wins would be a guess).
 *
 * A key file that group or others may read or write is refused, not just warned about: a
 * warning in a log nobody reads would leave every tenant's data one `cat` away. In Kubernetes,
 * mount the secret with `defaultMode: 0400` (the default 0644 is refused).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyError } from './errors.ts';
import { KEY_BYTES } from './gcm.ts';
import { createPrivateFile, looseMode } from './private-file.ts';

export interface LoadMasterKeyOptions {
  /** Environment to read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Data folder for the embedded default key file; default `./.relay` (as RELAY_DATA_DIR). */
  dataDir?: string;
  /** Receives the development-key warning (it is also returned); default: none. */
  warn?: (message: string) => void;
}

export interface MasterKey {
  key: Buffer;
  source: 'env' | 'file' | 'embedded_default';
  /** The key file, for `file` and `embedded_default`. */
  path?: string;
  /** True when this call created the embedded default key file. */
  created: boolean;
  warnings: string[];
}

const B64_32 = /^[A-Za-z0-9+/]{43}=$/;

/** Decodes base64 text of exactly 32 bytes; `what` names the source in the error, never the value. */
export function decodeMasterKey(text: string, what: string): Buffer {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) {
    throw new KeyError('invalid_master_key', `${what} is not valid base64 (expected 44 characters encoding 32 bytes)`);
  }
  const key = Buffer.from(t, 'base64');
  if (key.length !== KEY_BYTES || !B64_32.test(t)) {
    throw new KeyError('invalid_master_key', `${what} must decode to ${KEY_BYTES} bytes, got ${key.length}`);
  }
  return key;
}

function checkPermissions(path: string): void {
  const mode = looseMode(path);
  if (mode) {
    throw new KeyError('master_key_file_permissions', `master key file ${path} has mode ${mode}: group or others can access it; run chmod 600 (refusing to use it)`);
  }
}

function readKeyFile(path: string, what: string): Buffer {
  let text: string;
  try {
    checkPermissions(path);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof KeyError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new KeyError('invalid_master_key', `cannot read ${what} ${path} (${code})`);
  }
  return decodeMasterKey(text, `${what} ${path}`);
}

export function loadMasterKey(opts: LoadMasterKeyOptions = {}): MasterKey {
  const env = opts.env ?? process.env;
  const fromEnv = env.RELAY_MASTER_KEY;
  const file = env.RELAY_MASTER_KEY_FILE;
  if (fromEnv && file) {
    throw new KeyError('invalid_master_key', 'set RELAY_MASTER_KEY or RELAY_MASTER_KEY_FILE, not both');
  }
  if (fromEnv) return { key: decodeMasterKey(fromEnv, 'RELAY_MASTER_KEY'), source: 'env', created: false, warnings: [] };
  if (file) return { key: readKeyFile(file, 'RELAY_MASTER_KEY_FILE'), source: 'file', path: file, created: false, warnings: [] };

  const dir = opts.dataDir ?? env.RELAY_DATA_DIR ?? './.relay';
  const path = join(dir, 'master.key');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const created = createPrivateFile(path, `${randomBytes(KEY_BYTES).toString('base64')}\n`);
  const key = readKeyFile(path, 'master key file');
  const warning =
    `DEVELOPMENT ONLY: ${created ? 'created' : 'using'} the embedded master key ${path}. ` +
    'It lies next to the data it protects: anyone who can read the data folder can read every tenant\'s memory, ' +
    'and losing the file loses all of it. Set RELAY_MASTER_KEY or RELAY_MASTER_KEY_FILE (or a KMS) in production.';
  opts.warn?.(warning);
  return { key, source: 'embedded_default', path, created, warnings: [warning] };
}

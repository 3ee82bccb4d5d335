import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, linkSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';

/**
 * The file's mode as four octal digits when group or others may access it, else null: a
 * secret file others can read is refused by its callers, not warned about. Null on Windows,
 * which has no such bits.
 */
export function looseMode(path: string): string | null {
  if (process.platform === 'win32') return null;
  const mode = statSync(path).mode & 0o777;
  return (mode & 0o077) !== 0 ? mode.toString(8).padStart(4, '0') : null;
}

/**
 * Creates a 0600 file holding `contents`, complete or not at all: written to a private
 * temporary file, then hard-linked into place (which fails if the name exists). False when
 * the file already exists (another process may have won the race).
 */
export function createPrivateFile(path: string, contents: string): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      fchmodSync(fd, 0o600); // the umask may have taken bits away, never added; make it exact
      writeSync(fd, contents);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

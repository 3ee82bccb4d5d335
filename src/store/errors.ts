/**
 * SQLSTATE of a database error, from pg or PGlite. A Node system error's code is an errno name,
 * not a SQLSTATE, even when it has five capitals (`EPIPE`, from a write to a connection the
 * server dropped): it has a `syscall`, which database errors never have.
 */
export function sqlState(err: unknown): string | undefined {
  const e = err as { code?: unknown; syscall?: unknown } | null;
  if (typeof e?.syscall === 'string') return undefined;
  const code = e?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Errors the database raises when a statement reaches outside its scope:
 * a row that fails a policy's WITH CHECK (42501 "violates row-level security policy")
 * and a scope setting that is not valid hex (22023, from decode()).
 */
export function isRlsError(err: unknown): boolean {
  const state = sqlState(err);
  if (state === '42501') return /row-level security/i.test(String((err as Error).message));
  if (state === '22023') return /hexadecimal|invalid hex/i.test(String((err as Error).message));
  return false;
}

/**
 * pg's own errors for a connection that broke under a checked-out client (the server stopped
 * between two statements of a transaction), and pg-pool's for a connection it could not open in
 * time: they carry neither a SQLSTATE nor an errno.
 */
const PG_CONNECTION_LOST = /^(Connection terminated|Client has encountered a connection error and is not queryable|Client was closed and is not queryable)/;
const PG_POOL_CONNECT_TIMEOUT = /timeout exceeded when trying to connect/i;

/** The store could not be reached or the connection broke. */
export function isConnectionError(err: unknown): boolean {
  const state = sqlState(err);
  if (!state) {
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND)$/.test(code)) return true;
    return err instanceof Error && (PG_CONNECTION_LOST.test(err.message) || PG_POOL_CONNECT_TIMEOUT.test(err.message));
  }
  // 57P01 admin_shutdown, 57P02 crash_shutdown (another backend crashed: the postmaster ends every
  // connection), 57P03 cannot_connect_now (starting up, in recovery).
  return state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03';
}

import { mkdirSync } from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite/vector';
import { lockDataDir } from './dir-lock.ts';
import { setConfigStatement, type Driver, type Listening, type Row, type Settings, type SqlClient } from './sql-client.ts';

export interface PgliteDriverOptions {
  /** Data folder; `memory://` (or undefined) keeps everything in memory. */
  dataDir?: string;
  /** The role app transactions switch to. Default `app_user`. */
  appRole?: string;
}

function wrap(tx: Transaction | PGlite): SqlClient {
  return {
    async query<R extends Row>(text: string, params?: readonly unknown[]) {
      const res = await tx.query<R>(text, params as unknown[] | undefined);
      // As pg reports it: rows returned for a SELECT (PGlite says 0 affected), rows changed otherwise.
      return { rows: res.rows, rowCount: Math.max(res.rows.length, res.affectedRows ?? 0) };
    },
    async exec(text: string) {
      await tx.exec(text);
    },
  };
}

/** Like `wrap`, but each statement first checks that the caller is still there. */
function wrapAbortable(tx: Transaction, signal: AbortSignal): SqlClient {
  const inner = wrap(tx);
  return {
    query(text, params, opts) {
      signal.throwIfAborted();
      return inner.query(text, params, opts);
    },
    exec(text) {
      signal.throwIfAborted();
      return inner.exec(text);
    },
  };
}

/**
 * PGlite is one superuser connection. Superusers bypass RLS even when it is FORCEd,
 * so every app transaction first becomes `app_user` (`set_config('role', …, true)`,
 * i.e. SET LOCAL ROLE) in the same statement that sets the scope; the policies then
 * bite exactly as on a server. Transactions are serialised by PGlite itself.
 */
export async function createPgliteDriver(opts: PgliteDriverOptions = {}): Promise<Driver> {
  const dataDir = opts.dataDir && opts.dataDir !== 'memory://' ? opts.dataDir : undefined;
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const unlock = dataDir ? lockDataDir(dataDir) : () => undefined;
  const options = { extensions: { vector } };
  let db: PGlite;
  try {
    db = dataDir ? await PGlite.create(dataDir, options) : await PGlite.create(options);
  } catch (err) {
    unlock();
    throw err;
  }
  const appRole = opts.appRole ?? 'app_user';
  if (!/^[a-z_][a-z0-9_]*$/.test(appRole)) throw new Error(`invalid app role name: ${appRole}`);
  // The embedded database plays both roles: its superuser is the owner, app_user is created here.
  await db.exec(`DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${appRole}') THEN
      CREATE ROLE ${appRole} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
  END $$;`);

  return {
    kind: 'pglite',
    async appTransaction(settings: Settings, fn, txOpts) {
      const signal = txOpts?.signal;
      signal?.throwIfAborted();
      const first = setConfigStatement([['role', appRole], ...settings]);
      // Transactions queue for the one connection; one whose caller left while it waited
      // ends before its first statement instead of running for nobody.
      return db.transaction(async (tx) => {
        signal?.throwIfAborted();
        await tx.query(first.text, first.params);
        return fn(signal ? wrapAbortable(tx, signal) : wrap(tx));
      });
    },
    async ownerTransaction(fn) {
      return db.transaction(async (tx) => fn(wrap(tx)));
    },
    async ownerSession(fn) {
      return fn(wrap(db));
    },
    async listen(channel: string, onPayload: (payload: string) => void): Promise<Listening> {
      // One process, one connection: notifications of its own transactions, delivered after commit.
      const unlisten = await db.listen(channel, onPayload);
      let settle: (cause: Error | null) => void = () => undefined;
      const closed = new Promise<Error | null>((resolve) => (settle = resolve));
      return {
        closed,
        backendPid: null,
        async close() {
          await unlisten().catch(() => undefined);
          settle(null);
        },
      };
    },
    poolStats() {
      // One connection: it is either inside a transaction or free.
      return { size: 1, busy: db.isInTransaction() ? 1 : 0, waiting: 0 };
    },
    async close() {
      try {
        await db.close();
      } finally {
        unlock();
      }
    },
  };
}

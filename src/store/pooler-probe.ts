import pg from 'pg';

/** How connections through a URL reach PostgreSQL's backends. */
export type Pooling = 'session' | 'transaction' | 'statement';

/** What sits between the service and PostgreSQL (RELAY_DB_POOLER). */
export type Pooler = 'none' | 'transaction';

export class PoolerError extends Error {
  readonly code = 'pooler_mismatch';
}

const ROUNDS = 3;

/**
 * Finds out whether a client through `url` keeps one backend (PostgreSQL itself, or a session
 * pool) or not (a transaction or statement pool), with two clients A and B:
 *
 *   A: SELECT pg_backend_pid()            → a1   (in transaction pooling A's server goes back to the pool here)
 *   B: BEGIN; SELECT pg_backend_pid()     → b    (B keeps its server until ROLLBACK)
 *   A: SELECT pg_backend_pid()            → a2
 *   B: ROLLBACK
 *
 * PostgreSQL or a session pool: A owns its backend for as long as it is connected, so a1 = a2
 * and b ≠ a1, every time, and A never waits. A transaction pool: with PgBouncer's defaults
 * (server_round_robin = 0) the server A just released is the first one handed out again, so B
 * gets it and b = a1: two clients on one backend, which no session ever shows. Where another
 * client took it in between (a busy pool, or server_round_robin = 1), B holds another server and
 * A's second statement runs on whichever server is free, ≠ a1 unless that one came back in
 * time; with none free (default_pool_size = 1, or the pool busy) A waits for B's ROLLBACK, and a
 * wait longer than `waitMs` counts as pooling too, since a session never waits to run a statement
 * on the backend it owns. Three rounds on the same two clients; any one that shows pooling
 * decides. A statement pool refuses B's BEGIN.
 */
export async function probePooling(url: string, opts: { waitMs?: number } = {}): Promise<Pooling> {
  const waitMs = opts.waitMs ?? 5000;
  const open = async (queryTimeout?: number) => {
    const c = new pg.Client({ connectionString: url, application_name: 'relay-memory-probe', connectionTimeoutMillis: 10_000, query_timeout: queryTimeout });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  const pid = async (c: pg.Client) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const a = await open(waitMs);
  let b: pg.Client | undefined;
  let inTransaction = false;
  try {
    b = await open();
    const first = await pid(a);
    for (let round = 0; round < ROUNDS; round++) {
      let held: number;
      try {
        inTransaction = true;
        await b.query('BEGIN');
        held = await pid(b);
      } catch (err) {
        if (/statement pool/i.test((err as Error).message)) return 'statement';
        throw err;
      }
      if (held === first) return 'transaction';
      let again: number;
      try {
        again = await pid(a);
      } catch (err) {
        if ((err as Error).message === 'Query read timeout') return 'transaction';
        throw err;
      }
      if (again !== first) return 'transaction';
      await b.query('ROLLBACK');
      inTransaction = false;
    }
    return 'session';
  } finally {
    if (inTransaction) await b?.query('ROLLBACK').catch(() => undefined);
    await Promise.all([a.end().catch(() => undefined), b?.end().catch(() => undefined)]);
  }
}

/**
 * Refuses at start what would fail under load: named prepared statements and session settings
 * (RELAY_DB_POOLER unset) through a transaction pool, any statement pool, and LISTEN through
 * anything but a session. `listenUrl` is probed when it is not `appUrl`.
 */
export async function checkPooler(opts: { appUrl: string; pooler: Pooler; listenUrl?: string }): Promise<void> {
  const app = await probePooling(opts.appUrl);
  if (app === 'statement') {
    throw new PoolerError(
      'DATABASE_URL leads through a statement pooler (PgBouncer pool_mode = statement), which refuses transactions of more than one statement, and every request runs one: use pool_mode = transaction with RELAY_DB_POOLER=transaction, or session (docs/scaling.md)',
    );
  }
  if (app === 'transaction' && opts.pooler !== 'transaction') {
    throw new PoolerError(
      'DATABASE_URL leads through a transaction pooler (PgBouncer pool_mode = transaction: the start-up probe saw two clients share one PostgreSQL backend, or one client move to another). ' +
        'Without RELAY_DB_POOLER=transaction this process keeps statements prepared on its connections and they would fail under load (prepared statement "…" does not exist). ' +
        'Set RELAY_DB_POOLER=transaction and RELAY_DB_LISTEN_URL (a direct connection, for LISTEN), or point DATABASE_URL at PostgreSQL or a session-mode pool (docs/scaling.md)',
    );
  }
  // LISTEN connects to listenUrl (appUrl when unset); appUrl was just probed.
  const listen = opts.listenUrl === undefined || opts.listenUrl === opts.appUrl ? app : await probePooling(opts.listenUrl);
  if (listen !== 'session') {
    throw new PoolerError(
      (opts.listenUrl === undefined ? 'RELAY_DB_LISTEN_URL is not set and DATABASE_URL' : 'RELAY_DB_LISTEN_URL') +
        ' leads through a transaction or statement pooler: LISTEN needs a session of its own and would silently stop hearing key events there. Point RELAY_DB_LISTEN_URL at PostgreSQL directly or at a session-mode pool (docs/scaling.md)',
    );
  }
}

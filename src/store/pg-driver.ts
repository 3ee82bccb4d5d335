import { createHash } from 'node:crypto';
import pg from 'pg';
import { isConnectionError } from './errors.ts';
import { setConfigStatement, type Driver, type Listening, type PoolStats, type QueryOptions, type Row, type Settings, type SqlClient } from './sql-client.ts';

export interface PgDriverOptions {
  /** Login of the application role (`app_user`). */
  appUrl: string;
  /** Login of the migration owner; needed only to migrate. */
  ownerUrl?: string;
  /** Pool size for the application role. Default 10. */
  poolMax?: number;
  /** Server-side statement timeout in ms. Default 5000. */
  statementTimeoutMs?: number;
}

const names = new Map<string, string>();
/** A stable name per statement text, so each pooled connection prepares it once. */
function statementName(text: string): string {
  let name = names.get(text);
  if (!name) {
    name = `relay_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

function wrap(client: pg.PoolClient | pg.Client, signal?: AbortSignal): SqlClient {
  return {
    async query<R extends Row>(text: string, params?: readonly unknown[], opts?: QueryOptions) {
      signal?.throwIfAborted();
      const values = params as unknown[] | undefined;
      const res = opts?.prepare
        ? await client.query<R>({ name: statementName(text), text, values })
        : await client.query<R>(text, values);
      return { rows: res.rows, rowCount: res.rowCount ?? res.rows.length };
    },
    async exec(text: string) {
      signal?.throwIfAborted();
      await client.query(text);
    },
  };
}

/** The client's socket, to cork: pg keeps it on `connection.stream` (not in its types). */
function socketOf(client: pg.PoolClient | pg.Client): { cork(): void; uncork(): void } | undefined {
  const stream = (client as unknown as { connection?: { stream?: { cork?: unknown; uncork?: unknown } } }).connection?.stream;
  return stream && typeof stream.cork === 'function' && typeof stream.uncork === 'function' ? (stream as { cork(): void; uncork(): void }) : undefined;
}

/**
 * BEGIN, the scope statement, `fn`'s statements, COMMIT. The pool's clients pipeline (pg's
 * `pipeline: true`): BEGIN and the scope statement are sent without waiting for their answers,
 * and the socket stays corked until `fn` has queued its first statement, so all three leave in
 * one write (a read is then one round trip and two writes, not four). PostgreSQL runs them in
 * order: the first statement never runs before the scope is set, and when setting it fails the
 * transaction is aborted, everything after it fails, and the scope statement's own error is
 * the one thrown.
 */
async function inTransaction<T>(
  client: pg.PoolClient | pg.Client,
  first: { text: string; params: string[] } | null,
  fn: (sql: SqlClient) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const socket = client.pipeline ? socketOf(client) : undefined;
  socket?.cork();
  let started: Promise<unknown>;
  try {
    started = Promise.all([client.query('BEGIN'), first ? client.query(first.text, first.params) : null]);
  } finally {
    if (socket) setImmediate(() => socket.uncork());
  }
  // Waited for below; without this, its rejection would count as unhandled while `fn` runs.
  started.catch(() => undefined);
  if (!client.pipeline) await started;
  try {
    const result = await fn(wrap(client, signal));
    await started;
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // The scope statement's failure explains the failures queued behind it.
    const cause = await started.then(() => err, (e: unknown) => e);
    await client.query('ROLLBACK').catch(() => undefined);
    throw cause;
  }
}

function backendPid(client: pg.PoolClient): number | undefined {
  const pid = (client as unknown as { processID?: unknown }).processID;
  return typeof pid === 'number' ? pid : undefined;
}

/**
 * Cancels the statement running on backend `pid` (a client went away mid-query). It uses a
 * connection of its own, as the same role: PostgreSQL lets a role cancel its own backends.
 * Best effort: a failure leaves the statement to finish or hit its timeout.
 */
function cancelBackend(url: string, pid: number | undefined): void {
  if (pid === undefined) return;
  const c = new pg.Client({ connectionString: url, application_name: 'relay-memory-cancel' });
  c.on('error', () => undefined);
  void c
    .connect()
    .then(() => c.query('SELECT pg_cancel_backend($1)', [pid]))
    .catch(() => undefined)
    .finally(() => void c.end().catch(() => undefined));
}

export function createPgDriver(opts: PgDriverOptions): Driver {
  const poolMax = opts.poolMax ?? 10;
  const pool = new pg.Pool({
    connectionString: opts.appUrl,
    max: poolMax,
    statement_timeout: opts.statementTimeoutMs ?? 5000,
    application_name: 'relay-memory',
    pipeline: true,
  });
  // An idle client's error (server restart, terminated backend) must not crash the process;
  // the pool drops that client and the next checkout gets a fresh one.
  pool.on('error', () => undefined);

  async function ownerSession<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    if (!opts.ownerUrl) throw new Error('RELAY_MIGRATE_URL is not set: the migration owner login is needed to migrate');
    const client = new pg.Client({ connectionString: opts.ownerUrl, application_name: 'relay-memory-migrate' });
    // A connection that dies under a statement also rejects that statement; without a listener
    // the client's 'error' event would end the process.
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  return {
    kind: 'pg',
    async appTransaction(settings: Settings, fn, txOpts) {
      const signal = txOpts?.signal;
      signal?.throwIfAborted();
      const client = await pool.connect();
      let broken = false;
      let cancelled = false;
      // The pool listens for errors of idle clients only. A backend that dies while this one is
      // checked out (pg_terminate_backend, a server restart) emits 'error' here, and an 'error'
      // event nobody listens to ends the process: mark the client broken instead (its running
      // statement is rejected with the error as well, and the caller answers 503).
      const onError = () => {
        broken = true;
      };
      client.on('error', onError);
      const cancel = () => {
        cancelled = true;
        cancelBackend(opts.appUrl, backendPid(client));
      };
      try {
        signal?.throwIfAborted();
        signal?.addEventListener('abort', cancel, { once: true });
        return await inTransaction(client, settings.length > 0 ? setConfigStatement(settings) : null, fn, signal);
      } catch (err) {
        broken ||= isConnectionError(err);
        throw signal?.aborted ? signal.reason : err;
      } finally {
        signal?.removeEventListener('abort', cancel);
        client.off('error', onError);
        // A cancelled connection is closed, not pooled: the cancel request travels on another
        // connection and could otherwise land on whatever the next borrower runs.
        client.release(broken || cancelled);
      }
    },
    ownerTransaction(fn) {
      return ownerSession((client) => inTransaction(client, null, fn));
    },
    ownerSession(fn) {
      return ownerSession((client) => fn(wrap(client)));
    },
    async listen(channel: string, onPayload: (payload: string) => void): Promise<Listening> {
      if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`invalid channel name: ${channel}`);
      const client = new pg.Client({ connectionString: opts.appUrl, application_name: 'relay-memory-listen', keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
      let settle: (cause: Error | null) => void = () => undefined;
      const closed = new Promise<Error | null>((resolve) => (settle = resolve));
      // A connection can die without a word (a network partition): a ping every 5 s that does not
      // answer within 5 s counts it gone, so the caller reconnects and drops what it cached.
      let heartbeat: NodeJS.Timeout | undefined;
      void closed.then(() => clearInterval(heartbeat));
      const ping = () => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the listening connection did not answer a ping within 5 s')), 5000)));
        Promise.race([client.query('SELECT 1'), late])
          .catch((err: unknown) => {
            settle(err as Error);
            void client.end().catch(() => undefined);
          })
          .finally(() => clearTimeout(timer));
      };
      // A terminated backend or a server restart emits 'error' then 'end': either means gone.
      client.on('error', (err) => settle(err));
      client.on('end', () => settle(null));
      client.on('notification', (n) => {
        if (n.channel === channel && n.payload !== undefined) onPayload(n.payload);
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${channel}`);
        heartbeat = setInterval(ping, 5000);
        heartbeat.unref();
      } catch (err) {
        await client.end().catch(() => undefined);
        throw err;
      }
      return {
        closed,
        backendPid: (client as unknown as { processID?: number }).processID ?? null,
        async close() {
          await client.end().catch(() => undefined);
        },
      };
    },
    poolStats(): PoolStats {
      return { size: poolMax, busy: pool.totalCount - pool.idleCount, waiting: pool.waitingCount };
    },
    async close() {
      await pool.end();
    },
  };
}

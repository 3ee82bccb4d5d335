import { createHash } from 'node:crypto';
import pg from 'pg';
import { isConnectionError } from './errors.ts';
import { sendCancelRequest } from './pg-cancel.ts';
import { PoolerError, type Pooler } from './pooler-probe.ts';
import { isReadOnly, setConfigStatement, type Driver, type Listening, type PoolStats, type QueryOptions, type Row, type Settings, type SqlClient } from './sql-client.ts';

export interface PgDriverOptions {
  /** Login of the application role (`app_user`). */
  appUrl: string;
  /** Login of the migration owner; needed only to migrate. */
  ownerUrl?: string;
  /** Pool size for the application role. Default 10. */
  poolMax?: number;
  /** Server-side statement timeout in ms, set in each app transaction. Default 5000. */
  statementTimeoutMs?: number;
  /**
   * What `appUrl` leads through. `none` (default): PostgreSQL or a session pool; hot statements
   * stay prepared per connection. `transaction`: a transaction pool (PgBouncer pool_mode =
   * transaction), where a connection's backend changes between transactions: no named prepared
   * statements. Either way nothing is set for the session: no startup parameter (PgBouncer 1.18
   * refuses unknown ones), every setting transaction-local.
   */
  pooler?: Pooler;
  /**
   * Where LISTEN connects: a session (PostgreSQL, or a session pool). Default `appUrl`, which a
   * transaction pool cannot serve: with `pooler: 'transaction'`, listen() refuses without it.
   */
  listenUrl?: string;
  /**
   * Run before the first app transaction, until it resolves once (openStore's pooler probe when
   * the server could not be asked at open). A failure fails that transaction; a PoolerError
   * fails every one after it too.
   */
  checkFirst?: () => Promise<void>;
  /**
   * How long a new connection may take before the checkout fails (a connection error). Default:
   * no limit, as pg's. The standby's pool sets one, so a standby that does not answer sends the
   * read to the primary instead of holding it.
   */
  connectTimeoutMs?: number;
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

/**
 * `prepared`: whether `prepare: true` keeps a named statement on the connection. Behind a
 * transaction pool it cannot: the next transaction of this client may run on another backend,
 * where the name does not exist (PgBouncer 1.18 does not track them; 1.21+ with
 * max_prepared_statements could). There every statement is the unnamed one.
 */
function wrap(client: pg.PoolClient | pg.Client, signal?: AbortSignal, prepared = true): SqlClient {
  return {
    async query<R extends Row>(text: string, params?: readonly unknown[], opts?: QueryOptions) {
      signal?.throwIfAborted();
      const values = params as unknown[] | undefined;
      const res = opts?.prepare && prepared
        ? await client.query<R>({ name: statementName(text), text, values })
        : await client.query<R>(text, values);
      return { rows: res.rows, rowCount: res.rowCount ?? res.rows.length };
    },
    async exec(text: string) {
      signal?.throwIfAborted();
      await client.query(text);
    },
    binaryParams: true,
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
 *
 * A read-only transaction (`transaction_read_only` on, so PostgreSQL refused any write in it)
 * has nothing its COMMIT could lose: the COMMIT is sent but not waited for, and the caller has
 * its result a round trip sooner. The client may go back to the pool with the COMMIT still on
 * the wire; pipelined, the next borrower's BEGIN follows it on the same connection, and a
 * connection that dies under it fails that borrower as any dead connection does.
 */
async function inTransaction<T>(
  client: pg.PoolClient | pg.Client,
  first: { text: string; params: string[] } | null,
  fn: (sql: SqlClient) => Promise<T>,
  opts: { signal?: AbortSignal; prepared?: boolean; readOnly?: boolean } = {},
): Promise<T> {
  const { signal, prepared = true, readOnly = false } = opts;
  const socket = client.pipeline ? socketOf(client) : undefined;
  socket?.cork();
  let started: Promise<unknown>;
  try {
    // The scope statement is prepared once per connection, like the hot statements: its text
    // depends only on how many settings there are. Parsing and planning it anew each time cost
    // ~0.07 ms of a 0.5 ms search (docs/benchmarks.md, "The scope statement, prepared"). BEGIN
    // is queued first: pg sends queries in the order they are queued.
    const begin = client.query('BEGIN');
    const scope = first && (prepared ? client.query({ name: statementName(first.text), text: first.text, values: first.params }) : client.query(first.text, first.params));
    started = Promise.all([begin, scope]);
  } finally {
    if (socket) setImmediate(() => socket.uncork());
  }
  // Waited for below; without this, its rejection would count as unhandled while `fn` runs.
  started.catch(() => undefined);
  if (!client.pipeline) await started;
  try {
    const result = await fn(wrap(client, signal, prepared));
    await started;
    if (readOnly && client.pipeline) client.query('COMMIT').catch(() => undefined);
    else await client.query('COMMIT');
    return result;
  } catch (err) {
    // The scope statement's failure explains the failures queued behind it.
    const cause = await started.then(() => err, (e: unknown) => e);
    await client.query('ROLLBACK').catch(() => undefined);
    throw cause;
  }
}

export function createPgDriver(opts: PgDriverOptions): Driver {
  const poolMax = opts.poolMax ?? 10;
  const statementTimeoutMs = opts.statementTimeoutMs ?? 5000;
  const pooled = opts.pooler === 'transaction';
  const pool = new pg.Pool({
    connectionString: opts.appUrl,
    max: poolMax,
    // No statement_timeout startup parameter: PgBouncer (1.18, any pool mode) refuses it, and
    // behind a transaction pool a session is not one backend. It is set per transaction below.
    application_name: 'relay-memory',
    pipeline: true,
    ...(opts.connectTimeoutMs ? { connectionTimeoutMillis: opts.connectTimeoutMs } : {}),
  });
  const timeoutSetting = [['statement_timeout', String(statementTimeoutMs)]] as const;
  let checking: Promise<void> | null = null;
  let checked = !opts.checkFirst;
  const checkOnce = async () => {
    if (checked || !opts.checkFirst) return;
    checking ??= opts.checkFirst().then(
      () => void (checked = true),
      (err: unknown) => {
        if (!(err instanceof PoolerError)) checking = null;
        throw err;
      },
    );
    await checking;
  };
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
      await checkOnce();
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
        sendCancelRequest(client);
      };
      // Every setting is transaction-local, the timeout too, in the one statement that sets the
      // scope (pipelined with BEGIN: no round trip of its own).
      const all = [...timeoutSetting, ...settings];
      try {
        signal?.throwIfAborted();
        signal?.addEventListener('abort', cancel, { once: true });
        return await inTransaction(client, setConfigStatement(all), fn, { signal, prepared: !pooled, readOnly: isReadOnly(settings) });
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
      // A transaction pool hands the LISTEN's backend to other clients after it and never
      // delivers a notification: no fallback to appUrl there.
      if (pooled && !opts.listenUrl) throw new Error('RELAY_DB_LISTEN_URL is not set: LISTEN cannot run through a transaction pooler; it needs a direct connection to PostgreSQL');
      const client = new pg.Client({ connectionString: opts.listenUrl ?? opts.appUrl, application_name: 'relay-memory-listen', keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
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

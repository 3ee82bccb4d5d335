/** The part of a database connection the store's code is written against. */
export type Row = Record<string, unknown>;

export interface QueryResult<R extends Row = Row> {
  rows: R[];
  /** Rows returned, or rows touched by INSERT/UPDATE/DELETE. */
  rowCount: number;
}

export interface QueryOptions {
  /**
   * Keep the statement prepared on the connection (server store): parsed and analysed once,
   * planned per execution as PostgreSQL's plan cache decides. For hot statements only. Ignored
   * behind a transaction pooler (RELAY_DB_POOLER=transaction), where a connection's next
   * transaction may run on a backend that never saw it.
   */
  prepare?: boolean;
}

export interface SqlClient {
  /** One parameterised statement ($1, $2, …). */
  query<R extends Row = Row>(text: string, params?: readonly unknown[], opts?: QueryOptions): Promise<QueryResult<R>>;
  /** Several statements, no parameters (migration files). */
  exec(text: string): Promise<void>;
  /**
   * True when a `Buffer` parameter travels in PostgreSQL's binary format (the server driver), so
   * a vector may be given as pgvector's binary form (`toBinaryVector`). PGlite binds a byte
   * array as bytea: there vectors travel as text.
   */
  readonly binaryParams?: boolean;
}

export interface TransactionOptions {
  /**
   * Cancels the transaction: before it starts, nothing runs; while a statement runs on a
   * server, the statement is cancelled (and that connection is not reused). PGlite cannot
   * interrupt a running statement; it stops before the next one.
   */
  signal?: AbortSignal;
}

/** Transaction-local settings, applied by one `set_config` call each in the first statement. */
export type Settings = ReadonlyArray<readonly [name: string, value: string]>;

/** The setting that makes a transaction read-only: PostgreSQL then refuses any write in it. */
export const READ_ONLY = ['transaction_read_only', 'on'] as const;

/** True when `settings` make the transaction read-only. */
export function isReadOnly(settings: Settings): boolean {
  return settings.some(([name, value]) => name === READ_ONLY[0] && value === READ_ONLY[1]);
}

export interface PoolStats {
  /** Connections the pool may hold. */
  size: number;
  /** Connections checked out and working. */
  busy: number;
  /** Callers waiting for a connection. */
  waiting: number;
}

/**
 * A database behind the store: a pg Pool or one PGlite instance.
 * Both run the same SQL; they differ only in how a transaction gets its role.
 */
export interface Driver {
  readonly kind: 'pg' | 'pglite';
  /**
   * Runs `fn` in one transaction as the application role, with `settings`
   * applied first in a single statement. Commits on success, rolls back on throw.
   */
  appTransaction<T>(settings: Settings, fn: (sql: SqlClient) => Promise<T>, opts?: TransactionOptions): Promise<T>;
  /** Runs `fn` in one transaction as the migration owner. */
  ownerTransaction<T>(fn: (sql: SqlClient) => Promise<T>): Promise<T>;
  /** Runs `fn` as the migration owner outside a transaction (VACUUM cannot run inside one). */
  ownerSession<T>(fn: (sql: SqlClient) => Promise<T>): Promise<T>;
  poolStats(): PoolStats;
  /**
   * LISTENs on `channel` on a connection of its own (server: a dedicated client as the
   * application role, never a pooled one, to RELAY_DB_LISTEN_URL when set; PGlite: its
   * in-process notifications). Resolves once
   * listening; `closed` resolves when that connection is gone (then listen again).
   */
  listen(channel: string, onPayload: (payload: string) => void): Promise<Listening>;
  close(): Promise<void>;
}

/** One LISTEN in force. */
export interface Listening {
  /** Resolves (with the cause, if any) once the listening connection is gone. */
  readonly closed: Promise<Error | null>;
  /** The server backend's pid (tests terminate it); null on PGlite. */
  readonly backendPid: number | null;
  close(): Promise<void>;
}

/** `SELECT set_config($1, $2, true), set_config($3, $4, true), …` with its parameters. */
export function setConfigStatement(settings: Settings): { text: string; params: string[] } {
  if (settings.length === 0) throw new Error('setConfigStatement: no settings');
  const calls: string[] = [];
  const params: string[] = [];
  for (const [name, value] of settings) {
    calls.push(`set_config($${params.length + 1}, $${params.length + 2}, true)`);
    params.push(name, value);
  }
  return { text: `SELECT ${calls.join(', ')}`, params };
}

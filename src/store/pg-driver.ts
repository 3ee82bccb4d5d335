import { createHash } from 'node:crypto';
import pg from 'pg';
import { isConnectionError } from './errors.ts';
import { setConfigStatement, type Driver, type PoolStats, type QueryOptions, type Row, type Settings, type SqlClient } from './sql-client.ts';

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

function wrap(client: pg.PoolClient | pg.Client): SqlClient {
  return {
    async query<R extends Row>(text: string, params?: readonly unknown[], opts?: QueryOptions) {
      const values = params as unknown[] | undefined;
      const res = opts?.prepare
        ? await client.query<R>({ name: statementName(text), text, values })
        : await client.query<R>(text, values);
      return { rows: res.rows, rowCount: res.rowCount ?? res.rows.length };
    },
    async exec(text: string) {
      await client.query(text);
    },
  };
}

async function inTransaction<T>(client: pg.PoolClient | pg.Client, first: { text: string; params: string[] } | null, fn: (sql: SqlClient) => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    if (first) await client.query(first.text, first.params);
    const result = await fn(wrap(client));
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export function createPgDriver(opts: PgDriverOptions): Driver {
  const poolMax = opts.poolMax ?? 10;
  const pool = new pg.Pool({
    connectionString: opts.appUrl,
    max: poolMax,
    statement_timeout: opts.statementTimeoutMs ?? 5000,
    application_name: 'relay-memory',
  });
  // An idle client's error (server restart, terminated backend) must not crash the process;
  // the pool drops that client and the next checkout gets a fresh one.
  pool.on('error', () => undefined);

  async function ownerSession<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    if (!opts.ownerUrl) throw new Error('RELAY_MIGRATE_URL is not set: the migration owner login is needed to migrate');
    const client = new pg.Client({ connectionString: opts.ownerUrl, application_name: 'relay-memory-migrate' });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  return {
    kind: 'pg',
    async appTransaction(settings: Settings, fn) {
      const client = await pool.connect();
      let broken = false;
      try {
        return await inTransaction(client, settings.length > 0 ? setConfigStatement(settings) : null, fn);
      } catch (err) {
        broken = isConnectionError(err);
        throw err;
      } finally {
        client.release(broken);
      }
    },
    ownerTransaction(fn) {
      return ownerSession((client) => inTransaction(client, null, fn));
    },
    ownerSession(fn) {
      return ownerSession((client) => fn(wrap(client)));
    },
    poolStats(): PoolStats {
      return { size: poolMax, busy: pool.totalCount - pool.idleCount, waiting: pool.waitingCount };
    },
    async close() {
      await pool.end();
    },
  };
}

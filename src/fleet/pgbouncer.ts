import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, portAccepts, startDaemon, type Daemon } from './daemon.ts';

export interface PgBouncerUser {
  name: string;
  /** What clients log in with (SCRAM) and PgBouncer logs in to PostgreSQL with, should it ask. */
  password: string;
}

/** What pgbouncer.ini says; docs/scaling.md shows it rendered with its own values. */
export interface PgBouncerIniOptions {
  listenAddr: string;
  listenPort: number;
  /** Empty: no Unix socket. */
  unixSocketDir: string;
  authFile: string;
  upstreamHost: string;
  upstreamPort: number;
  /** The database, by the same name on both sides. */
  db: string;
  poolMode: 'transaction' | 'session';
  /** Server connections per user and database. */
  defaultPoolSize: number;
  maxClientConn: number;
}

/**
 * pgbouncer.ini for PgBouncer 1.18. Nothing about prepared statements or startup parameters:
 * with RELAY_DB_POOLER=transaction the service prepares no named statement and sends no
 * parameter 1.18 refuses (its defaults for the rest: server_round_robin = 0, which the start-up
 * probe of src/store/pooler-probe.ts relies on, server_reset_query for session mode).
 */
export function pgbouncerIni(o: PgBouncerIniOptions): string {
  return [
    '[databases]',
    `${o.db} = host=${o.upstreamHost} port=${o.upstreamPort} dbname=${o.db}`,
    '',
    '[pgbouncer]',
    `listen_addr = ${o.listenAddr}`,
    `listen_port = ${o.listenPort}`,
    `unix_socket_dir = ${o.unixSocketDir}`,
    'auth_type = scram-sha-256',
    `auth_file = ${o.authFile}`,
    `pool_mode = ${o.poolMode}`,
    `default_pool_size = ${o.defaultPoolSize}`,
    `max_client_conn = ${o.maxClientConn}`,
    '',
  ].join('\n');
}

/** userlist.txt: `"name" "password"` per line, a `"` inside doubled. */
export function userlistTxt(users: readonly PgBouncerUser[]): string {
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return users.map((u) => `${q(u.name)} ${q(u.password)}\n`).join('');
}

export interface PgBouncerOptions {
  /** PostgreSQL behind it. Default host 127.0.0.1. */
  upstreamHost?: string;
  upstreamPort: number;
  db: string;
  poolMode: 'transaction' | 'session';
  /** Default 2: small, so that clients share server connections. */
  defaultPoolSize?: number;
  /** Default 200. */
  maxClientConn?: number;
  users: readonly PgBouncerUser[];
}

/** The PostgreSQL a connection string names, as `startPgBouncer` takes it (the database by the same name on both sides). */
export function upstreamOf(url: string | URL): Pick<PgBouncerOptions, 'upstreamHost' | 'upstreamPort' | 'db'> {
  const u = typeof url === 'string' ? new URL(url) : url;
  return { upstreamHost: u.hostname, upstreamPort: Number(u.port || 5432), db: decodeURIComponent(u.pathname.slice(1)) };
}

export interface PgBouncer {
  /** `postgres://user:password@127.0.0.1:<port>/<db>` for one of `users` (db: default the one it serves). */
  url(user: string, db?: string): string;
  port: number;
  /** Stop it with `daemon.stop()`. */
  daemon: Daemon;
}

/**
 * A PgBouncer of the caller's own (Debian's package, 1.18) on a free port of 127.0.0.1, its
 * config and userlist in its temp folder, as OS user postgres when we are root (pgbouncer
 * refuses to run as root), no Unix socket: never the machine's shared pooler.
 */
export async function startPgBouncer(opts: PgBouncerOptions): Promise<PgBouncer> {
  const port = await freePort();
  const ini = (dir: string) =>
    pgbouncerIni({
      listenAddr: '127.0.0.1',
      listenPort: port,
      unixSocketDir: '',
      authFile: join(dir, 'userlist.txt'),
      upstreamHost: opts.upstreamHost ?? '127.0.0.1',
      upstreamPort: opts.upstreamPort,
      db: opts.db,
      poolMode: opts.poolMode,
      defaultPoolSize: opts.defaultPoolSize ?? 2,
      maxClientConn: opts.maxClientConn ?? 200,
    });
  const daemon = await startDaemon({
    name: 'pgbouncer',
    program: 'pgbouncer',
    user: 'postgres',
    prepare: (dir) => {
      writeFileSync(join(dir, 'pgbouncer.ini'), ini(dir), { mode: 0o600 });
      writeFileSync(join(dir, 'userlist.txt'), userlistTxt(opts.users), { mode: 0o600 });
    },
    args: (dir) => [join(dir, 'pgbouncer.ini')],
    ready: () => portAccepts(port),
  });
  const passwords = new Map(opts.users.map((u) => [u.name, u.password]));
  return {
    port,
    daemon,
    url(user, db = opts.db) {
      const password = passwords.get(user);
      if (password === undefined) throw new Error(`pgbouncer: no user ${user} in its userlist`);
      return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(db)}`;
    },
  };
}

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { sqlState } from './errors.ts';
import { migrateUp } from './migrations.ts';
import { createPgDriver } from './pg-driver.ts';

const INSTALL_SCRIPT = fileURLToPath(new URL('../../scripts/install-pgvector.sh', import.meta.url));

export interface SetupOptions {
  /** A superuser login, e.g. postgres://postgres@127.0.0.1:5432/postgres. */
  adminUrl: string;
  /** Database to create (or reuse). */
  database: string;
  /** Owner of the schema, used by migrations. Default `relay_owner`. */
  ownerRole?: string;
  /** The application login: LOGIN NOSUPERUSER NOBYPASSRLS, not the owner. Default `app_user`. */
  appRole?: string;
  /** Passwords to set; without them the roles have none (for trust/peer/cert auth). */
  ownerPassword?: string;
  appPassword?: string;
  embeddingDim?: number;
  /** Build pgvector from Debian's source package when the server lacks it. Default true. */
  installVector?: boolean;
  log?: (line: string) => void;
}

export interface SetupResult {
  databaseUrl: string;
  migrateUrl: string;
  /** What this run changed; empty when everything was already in place. */
  changes: string[];
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/** The admin URL pointed at `database`, logged in as `role` when given. */
function databaseUrl(adminUrl: string, database: string, role?: { name: string; password?: string }): string {
  const url = new URL(adminUrl);
  if (role) {
    url.username = role.name;
    url.password = role.password ?? '';
  }
  url.pathname = `/${database}`;
  return url.toString();
}

function isLocalHost(adminUrl: string): boolean {
  const host = new URL(adminUrl).hostname;
  return host === '' || host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host.startsWith('/');
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'relay-db-setup' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function ensureRole(c: pg.Client, role: string, attrs: string, password: string | undefined, changes: string[]): Promise<void> {
  const found = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if (found.rowCount === 0) {
    await c.query(`CREATE ROLE ${role} ${attrs}`);
    changes.push(`created role ${role}`);
  } else {
    // Re-asserting the attributes keeps a role that someone loosened (e.g. BYPASSRLS) from staying so.
    await c.query(`ALTER ROLE ${role} ${attrs}`);
  }
  if (password !== undefined) {
    const lit = await c.query<{ q: string }>('SELECT quote_literal($1) AS q', [password]);
    await c.query(`ALTER ROLE ${role} PASSWORD ${lit.rows[0]?.q ?? "''"}`);
  }
}

async function ensureVector(dbUrl: string, opts: SetupOptions, changes: string[]): Promise<void> {
  const create = () => withClient(dbUrl, (c) => c.query('CREATE EXTENSION IF NOT EXISTS vector'));
  const had = await withClient(dbUrl, (c) => c.query("SELECT 1 FROM pg_extension WHERE extname = 'vector'"));
  if (had.rowCount) return;
  try {
    await create();
    changes.push('created extension vector');
    return;
  } catch (err) {
    // 0A000 / 58P01: the server has no vector.control to load.
    if (!['0A000', '58P01'].includes(sqlState(err) ?? '') || opts.installVector === false) throw err;
    if (!isLocalHost(opts.adminUrl)) {
      throw new Error(`pgvector is not installed on ${new URL(opts.adminUrl).host}; install pgvector >= 0.8 there and run db setup again`);
    }
  }
  opts.log?.('pgvector is missing: building Debian\'s pgvector source package for the local server');
  const run = spawnSync('bash', [INSTALL_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`installing pgvector failed:\n${run.stderr || run.stdout}`);
  opts.log?.(run.stdout.trim());
  await create();
  changes.push('installed pgvector and created extension vector');
}

/**
 * Makes a database ready for Relay Memory: roles, database, grants, pgvector, migrations.
 * Idempotent: a second run changes nothing and returns the same URLs.
 */
export async function setupDatabase(opts: SetupOptions): Promise<SetupResult> {
  const ownerRole = opts.ownerRole ?? 'relay_owner';
  const appRole = opts.appRole ?? 'app_user';
  for (const [what, name] of [['database', opts.database], ['owner role', ownerRole], ['app role', appRole]] as const) {
    if (!IDENT.test(name)) throw new Error(`${what} name must match ${IDENT}: ${name}`);
  }
  if (ownerRole === appRole) throw new Error('the app role must not be the owner role');
  const changes: string[] = [];

  await withClient(opts.adminUrl, async (c) => {
    // The owner is the maintenance login (migrations, per-scope indexes, key re-sealing and
    // shredding): work that spans users, so it bypasses RLS. The service never uses it.
    await ensureRole(c, ownerRole, 'LOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE', opts.ownerPassword, changes);
    await ensureRole(c, appRole, 'LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT', opts.appPassword, changes);
    const member = await c.query(
      `SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
       WHERE u.rolname = $1 AND r.rolname = $2`,
      [appRole, ownerRole],
    );
    if (member.rowCount) throw new Error(`${appRole} is a member of ${ownerRole}: it could SET ROLE to the owner; revoke that first`);
    const db = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [opts.database]);
    if (db.rowCount === 0) {
      await c.query(`CREATE DATABASE ${opts.database} OWNER ${ownerRole}`);
      changes.push(`created database ${opts.database}`);
    }
  });

  const adminDbUrl = databaseUrl(opts.adminUrl, opts.database);
  await ensureVector(adminDbUrl, opts, changes);
  await withClient(adminDbUrl, async (c) => {
    // pg_prewarm (contrib) lets the owner load the vector index into shared buffers after a
    // restart or bulk load; optional, so a server without contrib still sets up.
    const prewarm = await c.query("SELECT 1 FROM pg_extension WHERE extname = 'pg_prewarm'");
    if (prewarm.rowCount === 0) {
      await c.query('CREATE EXTENSION IF NOT EXISTS pg_prewarm').then(
        () => changes.push('created extension pg_prewarm'),
        () => opts.log?.('pg_prewarm is not available on this server; skipping it'),
      );
    }
    await c.query(`ALTER DATABASE ${opts.database} OWNER TO ${ownerRole}`);
    await c.query(`REVOKE ALL ON DATABASE ${opts.database} FROM PUBLIC`);
    await c.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${opts.database} TO ${appRole}`);
    await c.query(`GRANT CONNECT ON DATABASE ${opts.database} TO ${ownerRole}`);
    await c.query(`ALTER SCHEMA public OWNER TO ${ownerRole}`);
    await c.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
    await c.query(`GRANT USAGE ON SCHEMA public TO ${appRole}`);
  });

  const appUrl = databaseUrl(opts.adminUrl, opts.database, { name: appRole, password: opts.appPassword });
  const migrateUrl = databaseUrl(opts.adminUrl, opts.database, { name: ownerRole, password: opts.ownerPassword });
  const driver = createPgDriver({ appUrl, ownerUrl: migrateUrl, poolMax: 1 });
  try {
    const ran = await migrateUp(driver, { embeddingDim: opts.embeddingDim ?? 384, appRole });
    if (ran.length) changes.push(`applied migrations ${ran.join(', ')}`);
  } finally {
    await driver.close();
  }
  return { databaseUrl: appUrl, migrateUrl, changes };
}

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildingTransaction } from './hnsw-build.ts';
import type { Driver, SqlClient } from './sql-client.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** Serialises migrators across processes and replicas. */
const LOCK_KEY = 0x52454c4159; // "RELAY"

export interface MigrationVars {
  /** Embedding dimensions D, fixed when 0001 first runs. */
  embeddingDim: number;
  /** The role that gets row grants (`app_user`). */
  appRole: string;
}

export interface Migration {
  version: number;
  name: string;
  up: string;
  down: string;
  /** sha256 of the up file as written, to notice an applied migration that was edited. */
  checksum: string;
}

export interface MigrationState {
  version: number;
  name: string;
  applied: boolean;
  appliedAt: Date | null;
}

export class MigrationError extends Error {
  readonly code = 'migration_failed';
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir);
  const ups = files.filter((f) => /^\d{4}_[a-z0-9_]+\.up\.sql$/.test(f)).sort();
  return ups.map((file, i) => {
    const version = Number(file.slice(0, 4));
    if (version !== i + 1) throw new MigrationError(`migrations must be numbered 0001, 0002, … without gaps: ${file}`);
    const downFile = file.replace(/\.up\.sql$/, '.down.sql');
    if (!files.includes(downFile)) throw new MigrationError(`migration ${file} has no ${downFile}`);
    const up = readFileSync(`${dir}/${file}`, 'utf8');
    return {
      version,
      name: file.slice(5, -'.up.sql'.length),
      up,
      down: readFileSync(`${dir}/${downFile}`, 'utf8'),
      checksum: createHash('sha256').update(up).digest('hex'),
    };
  });
}

export function renderMigration(sql: string, vars: MigrationVars): string {
  if (!Number.isInteger(vars.embeddingDim) || vars.embeddingDim < 1 || vars.embeddingDim > 16000) {
    throw new MigrationError(`embedding dimensions must be an integer in 1..16000, got ${vars.embeddingDim}`);
  }
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(vars.appRole)) throw new MigrationError(`invalid app role name: ${vars.appRole}`);
  return sql.replaceAll('{{embedding_dim}}', String(vars.embeddingDim)).replaceAll('{{app_role}}', vars.appRole);
}

async function ensureTable(sql: SqlClient): Promise<void> {
  await sql.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
  await sql.exec(`CREATE TABLE IF NOT EXISTS relay_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
}

/** Lets the application role read which migrations ran (for /readyz), nothing more. */
async function grantStatusRead(sql: SqlClient, appRole: string): Promise<void> {
  await sql.exec(`GRANT SELECT ON relay_migrations TO ${appRole}`);
}

async function applied(sql: SqlClient): Promise<Map<number, { name: string; checksum: string; applied_at: Date }>> {
  const res = await sql.query<{ version: number; name: string; checksum: string; applied_at: Date }>(
    'SELECT version, name, checksum, applied_at FROM relay_migrations ORDER BY version',
  );
  return new Map(res.rows.map((r) => [r.version, r]));
}

/**
 * Applies pending migrations up to `to` (default: all), each in its own transaction. A migration
 * that builds an HNSW index and finds too little shared memory for a parallel build (Docker's
 * 64 MB /dev/shm against migration 0007's 1 GB maintenance_work_mem) is run again, whole, with
 * parallel builds off (hnsw-build.ts); its file is not changed, so its checksum holds.
 */
export async function migrateUp(driver: Driver, vars: MigrationVars, to?: number): Promise<number[]> {
  const all = loadMigrations();
  const target = to ?? all.length;
  if (target < 0 || target > all.length) throw new MigrationError(`no migration ${target}: the newest is ${all.length}`);
  const done: number[] = [];
  for (const m of all.filter((x) => x.version <= target)) {
    const ran = await buildingTransaction(driver, async (sql) => {
      await ensureTable(sql);
      const have = (await applied(sql)).get(m.version);
      if (have) {
        if (have.checksum !== m.checksum) {
          throw new MigrationError(`migration ${m.version} (${m.name}) was edited after it was applied`);
        }
        return false;
      }
      await sql.exec(renderMigration(m.up, vars));
      await grantStatusRead(sql, vars.appRole);
      await sql.query('INSERT INTO relay_migrations (version, name, checksum) VALUES ($1, $2, $3)', [m.version, m.name, m.checksum]);
      return true;
    });
    if (ran) done.push(m.version);
  }
  return done;
}

/** Reverts applied migrations above `to` (default: the newest one only), newest first; index builds as in migrateUp. */
export async function migrateDown(driver: Driver, vars: MigrationVars, to?: number): Promise<number[]> {
  const all = loadMigrations();
  const done: number[] = [];
  const current = await currentVersion(driver);
  const target = to ?? Math.max(0, current - 1);
  if (target < 0 || target > all.length) throw new MigrationError(`no migration ${target}: the newest is ${all.length}`);
  for (const m of [...all].reverse().filter((x) => x.version > target)) {
    const ran = await buildingTransaction(driver, async (sql) => {
      await ensureTable(sql);
      if (!(await applied(sql)).has(m.version)) return false;
      await sql.exec(renderMigration(m.down, vars));
      await sql.query('DELETE FROM relay_migrations WHERE version = $1', [m.version]);
      return true;
    });
    if (ran) done.push(m.version);
  }
  return done;
}

export async function migrationStatus(driver: Driver): Promise<MigrationState[]> {
  const have = await driver.ownerTransaction(async (sql) => {
    await ensureTable(sql);
    return applied(sql);
  });
  return loadMigrations().map((m) => {
    const a = have.get(m.version);
    return { version: m.version, name: m.name, applied: Boolean(a), appliedAt: a ? new Date(a.applied_at) : null };
  });
}

export async function currentVersion(driver: Driver): Promise<number> {
  const states = await migrationStatus(driver);
  return states.filter((s) => s.applied).reduce((v, s) => Math.max(v, s.version), 0);
}

export function latestVersion(): number {
  return loadMigrations().length;
}

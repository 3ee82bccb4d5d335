import type { TenantKeyKind, TenantKeyRepository, WrappedKey } from '../crypto/index.ts';
import { publishKeyEvent } from './key-events.ts';
import { isConnectionError, sqlState } from './errors.ts';
import { SCOPE_SETTINGS, validateTenantId } from './scope.ts';
import type { Driver, SqlClient } from './sql-client.ts';

/**
 * The tenant's key lock (advisory, transaction-scoped): class 0x524b4559 ("RKEY"), key
 * hashtext(tenant_id). Writes and new keys take it shared, a shred exclusively (migration 0004).
 */
const TENANT_LOCK_CLASS = 1380664665;

/** SQLSTATE of the database's refusal to write for a shredded tenant (migration 0004's trigger). */
export const TENANT_SHREDDED_STATE = 'RL410';

/** True when the database refused a write because the tenant was shredded. */
export function isTenantShreddedError(err: unknown): boolean {
  return sqlState(err) === TENANT_SHREDDED_STATE;
}

/** The master key check as stored (migration 0004): a value wrapped by the master key. */
export interface MasterKeyCheckRow {
  providerId: string;
  wrapped: Buffer;
}

/** The stored master key check, or null when none was written yet. */
export async function readMasterKeyCheck(driver: Driver): Promise<MasterKeyCheckRow | null> {
  const res = await driver.appTransaction([], (sql) => sql.query<{ provider_id: string; wrapped: Buffer }>('SELECT provider_id, wrapped FROM master_key_check WHERE id = 1'));
  const row = res.rows[0];
  return row ? { providerId: row.provider_id, wrapped: Buffer.from(row.wrapped) } : null;
}

/** Writes the check unless one exists (the first writer wins); returns the one stored. */
export async function createMasterKeyCheck(driver: Driver, row: MasterKeyCheckRow): Promise<MasterKeyCheckRow> {
  await driver.appTransaction([], (sql) =>
    sql.query('INSERT INTO master_key_check (id, provider_id, wrapped) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING', [row.providerId, row.wrapped]),
  );
  const stored = await readMasterKeyCheck(driver);
  if (!stored) throw new Error('the master key check was not stored');
  return stored;
}

/** Replaces the check (owner: master key rotation), with a key event for every tenant, in one transaction. */
export async function replaceMasterKeyCheck(driver: Driver, row: MasterKeyCheckRow): Promise<void> {
  await driver.ownerTransaction(async (sql) => {
    await sql.query(
      `INSERT INTO master_key_check (id, provider_id, wrapped) VALUES (1, $1, $2)
       ON CONFLICT (id) DO UPDATE SET provider_id = EXCLUDED.provider_id, wrapped = EXCLUDED.wrapped, created_at = now()`,
      [row.providerId, row.wrapped],
    );
    await publishKeyEvent(sql, { tenantId: null, kind: 'rotate_master' });
  });
}

/**
 * Erasure in a shredded tenant (`relay_purge_shredded`): deletes up to `batch` rows left of
 * the tenant, whatever their user (none can be told apart or opened any more). 0 when the
 * tenant was not shredded.
 */
export async function purgeShreddedTenant(driver: Driver, tenantId: string, batch = 5000): Promise<number> {
  validateTenantId(tenantId);
  let total = 0;
  for (;;) {
    const res = await driver.appTransaction([[SCOPE_SETTINGS.tenant, tenantId]], (sql) =>
      sql.query<{ n: number }>('SELECT relay_purge_shredded($1) AS n', [batch]),
    );
    const n = res.rows[0]?.n ?? 0;
    total += n;
    if (n < batch) return total;
  }
}

type KeyRow = {
  tenant_id: string;
  kind: TenantKeyKind;
  version: number;
  wrapped: Buffer;
  provider_id: string;
  created_at: Date;
};

const toKey = (r: KeyRow): WrappedKey => ({
  tenantId: r.tenant_id,
  kind: r.kind,
  version: Number(r.version),
  wrapped: Buffer.from(r.wrapped),
  providerId: r.provider_id,
  createdAt: new Date(r.created_at),
});

/**
 * The key catalog (`tenant_keys`, `tenant_shreds`) behind the keyring.
 *
 * As `app`, every call is one transaction as `app_user` whose first statement sets only the
 * tenant: the catalog's policies let it read and add that tenant's keys and nothing else
 * (the memory rows' policies also want a user, so they stay shut). As `owner`, it runs as
 * the maintenance login, which also may replace wrappings (master key rotation).
 */
export class SqlKeyRepository implements TenantKeyRepository {
  /**
   * `standby` (RELAY_READ_DATABASE_URL's): where the catalog is read when the primary cannot be
   * reached, so reads that a standby serves go on while the primary is down or failing over.
   * Safe: no key changes while no primary takes writes, and a change committed before is on a
   * synchronous standby too. Writes never go there.
   */
  constructor(
    private readonly driver: Driver,
    private readonly as: 'app' | 'owner' = 'app',
    private readonly standby?: Driver,
  ) {}

  private tx<T>(tenantId: string, fn: (sql: SqlClient) => Promise<T>): Promise<T> {
    validateTenantId(tenantId);
    return this.as === 'app' ? this.driver.appTransaction([[SCOPE_SETTINGS.tenant, tenantId]], fn) : this.driver.ownerTransaction(fn);
  }

  /** A read of the catalog: on the primary, or on the standby when the primary cannot be reached. */
  private async read<T>(tenantId: string, fn: (sql: SqlClient) => Promise<T>): Promise<T> {
    try {
      return await this.tx(tenantId, fn);
    } catch (err) {
      if (!this.standby || this.as !== 'app' || !isConnectionError(err)) throw err;
      return this.standby.appTransaction([[SCOPE_SETTINGS.tenant, tenantId]], fn);
    }
  }

  async list(tenantId: string): Promise<WrappedKey[]> {
    const res = await this.read(tenantId, (sql) =>
      sql.query<KeyRow>(
        `SELECT tenant_id, kind, version, wrapped, provider_id, created_at FROM tenant_keys k
          WHERE tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM tenant_shreds s WHERE s.tenant_id = k.tenant_id)
          ORDER BY kind, version`,
        [tenantId],
      ),
    );
    return res.rows.map(toKey);
  }

  /**
   * As the owner (`relay keys rotate`), a new key is announced to every running service (a key
   * event, in the same transaction). The tenant's lock, taken shared first, keeps a shred from
   * slipping in between the check for it and the insert.
   */
  async insert(key: WrappedKey): Promise<boolean> {
    return this.tx(key.tenantId, async (sql) => {
      await sql.query('SELECT pg_advisory_xact_lock_shared($1, hashtext($2))', [TENANT_LOCK_CLASS, key.tenantId]);
      const res = await sql.query(
        `INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, provider_id, created_at)
         SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM tenant_shreds WHERE tenant_id = $1)
         ON CONFLICT DO NOTHING RETURNING 1`,
        [key.tenantId, key.kind, key.version, key.wrapped, key.providerId, key.createdAt],
      );
      if (res.rowCount > 0 && this.as === 'owner') await publishKeyEvent(sql, { tenantId: key.tenantId, kind: 'rotate' });
      return res.rowCount > 0;
    });
  }

  async isShredded(tenantId: string): Promise<boolean> {
    const res = await this.read(tenantId, (sql) => sql.query('SELECT 1 FROM tenant_shreds WHERE tenant_id = $1', [tenantId]));
    return res.rowCount > 0;
  }

  async replaceWrapped(key: WrappedKey): Promise<void> {
    if (this.as !== 'owner') throw new Error('replacing a wrapped key is the owner\'s (master key rotation)');
    await this.tx(key.tenantId, (sql) =>
      sql.query('UPDATE tenant_keys SET wrapped = $4, provider_id = $5 WHERE tenant_id = $1 AND kind = $2 AND version = $3', [
        key.tenantId, key.kind, key.version, key.wrapped, key.providerId,
      ]),
    );
  }

  /** Every tenant with keys (owner only): what master key rotation walks. */
  async tenants(): Promise<string[]> {
    if (this.as !== 'owner') throw new Error('listing tenants is the owner\'s');
    const res = await this.driver.ownerTransaction((sql) => sql.query<{ tenant_id: string }>('SELECT DISTINCT tenant_id FROM tenant_keys ORDER BY 1'));
    return res.rows.map((r) => r.tenant_id);
  }

  /**
   * Crypto-shredding (owner only): marks the tenant shredded and destroys its key rows in one
   * transaction, with a key event that makes every running service drop the tenant's cached
   * keys. It first takes the tenant's lock exclusively: writes in flight commit before it (and
   * are deleted with the rest), later ones are refused by the database. Returns the keys destroyed.
   */
  async shred(tenantId: string): Promise<number> {
    if (this.as !== 'owner') throw new Error('shredding is the owner\'s');
    return this.tx(tenantId, async (sql) => {
      await sql.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [TENANT_LOCK_CLASS, tenantId]);
      await publishKeyEvent(sql, { tenantId, kind: 'shred' });
      await sql.query('INSERT INTO tenant_shreds (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING', [tenantId]);
      const res = await sql.query('DELETE FROM tenant_keys WHERE tenant_id = $1', [tenantId]);
      return res.rowCount;
    });
  }
}

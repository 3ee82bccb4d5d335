import type { TenantKeyKind, TenantKeyRepository, WrappedKey } from '../crypto/index.ts';
import { SCOPE_SETTINGS, validateTenantId } from './scope.ts';
import type { Driver, SqlClient } from './sql-client.ts';

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
  constructor(
    private readonly driver: Driver,
    private readonly as: 'app' | 'owner' = 'app',
  ) {}

  private tx<T>(tenantId: string, fn: (sql: SqlClient) => Promise<T>): Promise<T> {
    validateTenantId(tenantId);
    return this.as === 'app' ? this.driver.appTransaction([[SCOPE_SETTINGS.tenant, tenantId]], fn) : this.driver.ownerTransaction(fn);
  }

  async list(tenantId: string): Promise<WrappedKey[]> {
    const res = await this.tx(tenantId, (sql) =>
      sql.query<KeyRow>(
        `SELECT tenant_id, kind, version, wrapped, provider_id, created_at FROM tenant_keys k
          WHERE tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM tenant_shreds s WHERE s.tenant_id = k.tenant_id)
          ORDER BY kind, version`,
        [tenantId],
      ),
    );
    return res.rows.map(toKey);
  }

  async insert(key: WrappedKey): Promise<boolean> {
    const res = await this.tx(key.tenantId, (sql) =>
      sql.query(
        `INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, provider_id, created_at)
         SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM tenant_shreds WHERE tenant_id = $1)
         ON CONFLICT DO NOTHING RETURNING 1`,
        [key.tenantId, key.kind, key.version, key.wrapped, key.providerId, key.createdAt],
      ),
    );
    return res.rowCount > 0;
  }

  async isShredded(tenantId: string): Promise<boolean> {
    const res = await this.tx(tenantId, (sql) => sql.query('SELECT 1 FROM tenant_shreds WHERE tenant_id = $1', [tenantId]));
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
   * transaction. From the commit on, no value sealed for the tenant opens anywhere the keys
   * are not still cached (other replicas: until their cache TTL). Returns the keys destroyed.
   */
  async shred(tenantId: string): Promise<number> {
    if (this.as !== 'owner') throw new Error('shredding is the owner\'s');
    return this.tx(tenantId, async (sql) => {
      await sql.query('INSERT INTO tenant_shreds (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING', [tenantId]);
      const res = await sql.query('DELETE FROM tenant_keys WHERE tenant_id = $1', [tenantId]);
      return res.rowCount;
    });
  }
}

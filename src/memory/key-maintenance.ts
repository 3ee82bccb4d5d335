import { CryptoError, DATA_KEY_ID, Keyring, makeMasterKeyCheck, opensMasterKeyCheck, type KeyProvider, type OpenFailureReason } from '../crypto/index.ts';
import { announceKeyEvent, createMasterKeyCheck, readMasterKeyCheck, replaceMasterKeyCheck, SqlKeyRepository, tableEmbeddingDim, toSqlVector, type Driver, type Scope } from '../store/index.ts';
import { keyIdOf, textContext } from './sealed-memory.ts';
import { VectorSpace } from './vector-space.ts';

export interface ResealProgress {
  done: number;
  total: number;
  skipped: number;
}

export interface ResealReport extends ResealProgress {
  /** The key every resealed row is under now, e.g. `dk:3`. */
  target: string | null;
  failures: Partial<Record<OpenFailureReason, number>>;
}

export interface MasterKeyCheck {
  ok: boolean;
  /** This call wrote the check (a database that had none: it is written with the key given). */
  created: boolean;
  /** For /readyz and messages: `ok` or `wrong key`. */
  detail: 'ok' | 'wrong key';
}

/**
 * Proves that `provider` (the configured master key) is the one that wraps this database's key
 * catalog, by opening the stored master key check; a database that has none yet gets one,
 * wrapped by `provider` (docs/crypto.md). Store errors are thrown.
 */
export async function checkMasterKey(driver: Driver, provider: KeyProvider): Promise<MasterKeyCheck> {
  let stored = await readMasterKeyCheck(driver);
  let created = false;
  if (!stored) {
    const fresh = await makeMasterKeyCheck(provider);
    stored = await createMasterKeyCheck(driver, fresh);
    created = stored.wrapped.equals(fresh.wrapped);
  }
  const ok = await opensMasterKeyCheck(provider, stored);
  return { ok, created, detail: ok ? 'ok' : 'wrong key' };
}

/** What start-up and the CLI say when the master key does not open the check (fingerprints only, never key bytes). */
export function wrongMasterKeyMessage(provider: KeyProvider): string {
  return `the configured master key (${provider.id}) does not open this database's key catalog: it was set up, or last rotated (relay keys rotate-master), with another master key. Configure the current one in RELAY_MASTER_KEY or RELAY_MASTER_KEY_FILE`;
}

/** A keyring over the catalog as the maintenance login, for work that spans users. */
export function ownerKeyring(driver: Driver, provider: KeyProvider, previous: readonly KeyProvider[] = []): Keyring {
  return new Keyring({ provider, previousProviders: previous, repository: new SqlKeyRepository(driver, 'owner'), cacheTtlMs: 60_000 });
}

async function newestDataKey(driver: Driver, tenantId: string): Promise<number | null> {
  const keys = await new SqlKeyRepository(driver, 'owner').list(tenantId);
  const newest = Math.max(0, ...keys.filter((k) => k.kind === 'data').map((k) => k.version));
  return newest > 0 ? newest : null;
}

export interface ResealOptions {
  batchSize?: number;
  onProgress?: (p: ResealProgress) => void;
  /** RELAY_VECTOR_TRANSFORM: vectors end under the newest key's transform (true, the default) or in the model's own space. */
  vectorTransform?: boolean;
}

type ResealRow = { id: string; user_hash: Uint8Array; ciphertext: Uint8Array; key_id: string; vector_key: number | null; embedder_id: string; embedding: string };

/**
 * `keys reseal`: re-encrypts, under the tenant's newest data key, every row still sealed under
 * an older one, and moves every vector to the space the setting asks for — the newest key's
 * transform of its user (docs/security.md), or the model's own with RELAY_VECTOR_TRANSFORM=off
 * — in batches, each its own transaction, as the maintenance login. Resumable by construction:
 * a row's `key_id` and `vector_key` say whether it is done, so a run cut short (crash, Ctrl-C)
 * just starts again on what is left. A row changed meanwhile (its ciphertext, embedder and
 * vector key are compared in the UPDATE) is left for the next run; a row that does not open is
 * counted and left as it is.
 */
export async function resealTenant(driver: Driver, keyring: Keyring, tenantId: string, opts: ResealOptions = {}): Promise<ResealReport> {
  const batchSize = opts.batchSize ?? 500;
  const newest = await newestDataKey(driver, tenantId);
  const target = newest === null ? null : `${DATA_KEY_ID}:${newest}`;
  const report: ResealReport = { done: 0, total: 0, skipped: 0, target, failures: {} };
  if (newest === null || target === null) return report;
  const vectorTarget = (opts.vectorTransform ?? true) ? newest : null;
  const space = new VectorSpace(keyring, await tableEmbeddingDim(driver), vectorTarget !== null);
  // Running services drop the tenant's cached keys, so what they write from now on is sealed
  // under the newest key too (one of them may have missed the rotation's own event).
  await announceKeyEvent(driver, { tenantId, kind: 'reseal' });
  const pending = 'tenant_id = $1 AND (key_id <> $2 OR vector_key IS DISTINCT FROM $3::int)';
  const counted = await driver.ownerTransaction((sql) =>
    sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM memory_chunks WHERE ${pending}`, [tenantId, target, vectorTarget]),
  );
  report.total = counted.rows[0]?.n ?? 0;
  opts.onProgress?.({ done: 0, total: report.total, skipped: 0 });
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const batch: { rows: ResealRow[] } = await driver.ownerTransaction((sql) =>
      sql.query<ResealRow>(
        `SELECT id, user_hash, ciphertext, key_id, vector_key, embedder_id, embedding::text AS embedding FROM memory_chunks
          WHERE ${pending} AND id > $4 ORDER BY id LIMIT $5`,
        [tenantId, target, vectorTarget, after, batchSize],
      ),
    );
    if (batch.rows.length === 0) break;
    after = batch.rows[batch.rows.length - 1]!.id;
    const updates: Array<{ row: ResealRow; old: Buffer; sealed: Buffer; vector: ArrayLike<number> }> = [];
    for (const row of batch.rows) {
      const scope: Scope = { tenantId, userHash: Buffer.from(row.user_hash) };
      const ctx = textContext(scope, row.id);
      const old = Buffer.from(row.ciphertext);
      try {
        let sealed: Buffer = old;
        if (row.key_id !== target) {
          const plain = await keyring.openSealed(old, ctx);
          sealed = await keyring.seal(plain, ctx);
          plain.fill(0);
        }
        // The model's vector, then the target space's: Qₙ·Qₒᵀ·v (orthogonal, so nothing is lost but rounding).
        const stored = JSON.parse(row.embedding) as number[];
        const raw = row.vector_key === null ? stored : (await space.transformFor(scope, row.vector_key)).invert(stored);
        const vector = vectorTarget === null ? raw : (await space.transformFor(scope, vectorTarget)).apply(raw);
        updates.push({ row, old, sealed, vector });
      } catch (err) {
        if (!(err instanceof CryptoError)) throw err;
        report.skipped++;
        report.failures[err.reason] = (report.failures[err.reason] ?? 0) + 1;
      }
    }
    await driver.ownerTransaction(async (sql) => {
      for (const u of updates) {
        const res = await sql.query(
          `UPDATE memory_chunks SET ciphertext = $2, key_id = $3, embedding = $4::vector, vector_key = $5::int
            WHERE id = $1 AND ciphertext = $6 AND embedder_id = $7 AND vector_key IS NOT DISTINCT FROM $8::int`,
          [u.row.id, u.sealed, keyIdOf(u.sealed), toSqlVector(u.vector, u.vector.length), vectorTarget, u.old, u.row.embedder_id, u.row.vector_key],
        );
        report.done += res.rowCount;
      }
    });
    opts.onProgress?.({ done: report.done, total: report.total, skipped: report.skipped });
  }
  return report;
}

export interface ShredReport {
  keysDestroyed: number;
  rowsDeleted: number;
}

/**
 * `keys shred`: crypto-shredding. Destroys every data key and the HMAC key of the tenant (and
 * marks it shredded, so no key is made for it again); from that commit on none of its rows
 * opens. Then, unless `deleteRows` is false, deletes the rows in batches.
 */
export async function shredTenant(
  driver: Driver,
  keyring: Keyring | null,
  tenantId: string,
  opts: { deleteRows?: boolean; batchSize?: number } = {},
): Promise<ShredReport> {
  const keysDestroyed = await new SqlKeyRepository(driver, 'owner').shred(tenantId);
  keyring?.forget(tenantId);
  let rowsDeleted = 0;
  if (opts.deleteRows ?? true) {
    for (;;) {
      const res = await driver.ownerTransaction((sql) =>
        sql.query('DELETE FROM memory_chunks WHERE id IN (SELECT id FROM memory_chunks WHERE tenant_id = $1 LIMIT $2)', [tenantId, opts.batchSize ?? 5000]),
      );
      rowsDeleted += res.rowCount;
      if (res.rowCount === 0) break;
    }
    // Stored write responses name the deleted chunks' ids.
    await driver.ownerTransaction((sql) => sql.query('DELETE FROM idempotency_keys WHERE tenant_id = $1', [tenantId]));
  }
  return { keysDestroyed, rowsDeleted };
}

/**
 * `keys rotate-master`: rewraps every tenant's keys under `next` (the data keys themselves do
 * not change, so no row is resealed). Rows already under `next` are skipped: run it again
 * after an interruption. Returns the number of key rows rewrapped.
 */
export async function rotateMasterKey(driver: Driver, current: KeyProvider, next: KeyProvider, only?: readonly string[]): Promise<number> {
  // `only`: a subset of tenants (a database shared by several test runs, each with its own master key).
  // The current key must be the catalog's: rewrapping under a wrong one would fail row by row.
  // A subset of tenants leaves the catalog under both keys, and the check as it is.
  if (!only && !(await checkMasterKey(driver, current)).ok) throw new Error(wrongMasterKeyMessage(current));
  const tenants = only ?? (await new SqlKeyRepository(driver, 'owner').tenants());
  const rewrapped = await ownerKeyring(driver, current).rewrap(next, tenants);
  // Last, once every key is under `next`: from this commit on, only `next` passes the check (and
  // every running service drops its cached keys: a key event for all tenants).
  if (!only) await replaceMasterKeyCheck(driver, await makeMasterKeyCheck(next));
  return rewrapped.length;
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { currentVersion, latestVersion, loadMigrations, migrateDown, migrateUp, migrationStatus, type Store } from '../src/store/index.ts';
import { catalogSnapshot } from './helpers/catalog.ts';
import { targets } from './helpers/targets.ts';

for (const target of targets()) {
  describe(`migrations (${target.name})`, () => {
    let store: Store;
    before(async () => {
      store = await target.open();
    });
    after(async () => {
      // Leave the database migrated for the suites after this one, whatever happened here.
      await migrateUp(store.driver, store.migrationVars).catch(() => undefined);
      await store?.close();
    });

    const snapshot = () => store.driver.ownerTransaction((sql) => catalogSnapshot(sql));

    it('numbers every migration and pairs it with a down file', () => {
      const all = loadMigrations();
      assert.ok(all.length >= 1);
      all.forEach((m, i) => {
        assert.equal(m.version, i + 1);
        assert.match(m.down, /\S/);
      });
    });

    it('up → down to 0 → up gives the same catalog as a fresh up', async () => {
      assert.equal(await currentVersion(store.driver), latestVersion());
      const fresh = await snapshot();
      assert.ok(fresh.tables.some((t) => t.startsWith('memory_chunks r rls=true force=true')), 'memory_chunks with forced RLS');
      for (const table of ['tenant_keys', 'tenant_shreds', 'idempotency_keys']) {
        assert.ok(fresh.tables.some((t) => t.startsWith(`${table} r rls=true force=true`)), `${table} with forced RLS`);
      }
      // memory_chunks: select/insert/update/delete; tenant_keys: select/insert; tenant_shreds: select;
      // idempotency_keys: select/insert/delete.
      assert.equal(fresh.policies.length, 10);

      const reverted = await migrateDown(store.driver, store.migrationVars, 0);
      assert.deepEqual(reverted, loadMigrations().map((m) => m.version).reverse());
      const empty = await snapshot();
      assert.deepEqual(empty.tables, ['relay_migrations r rls=false force=false']);
      assert.deepEqual(empty.policies, []);
      assert.deepEqual(empty.indexes, ['CREATE UNIQUE INDEX relay_migrations_pkey ON public.relay_migrations USING btree (version)']);
      assert.ok((await migrationStatus(store.driver)).every((s) => !s.applied));

      const applied = await migrateUp(store.driver, store.migrationVars);
      assert.deepEqual(applied, loadMigrations().map((m) => m.version));
      assert.deepEqual(await snapshot(), fresh);
    });

    it('is idempotent: a second up changes nothing', async () => {
      const before = await snapshot();
      assert.deepEqual(await migrateUp(store.driver, store.migrationVars), []);
      assert.deepEqual(await snapshot(), before);
    });

    it('down without --to steps back one migration', async () => {
      const latest = latestVersion();
      assert.deepEqual(await migrateDown(store.driver, store.migrationVars), [latest]);
      assert.equal(await currentVersion(store.driver), latest - 1);
      await migrateUp(store.driver, store.migrationVars);
      assert.equal(await currentVersion(store.driver), latest);
    });

    it('refuses a target that does not exist', async () => {
      await assert.rejects(migrateUp(store.driver, store.migrationVars, latestVersion() + 1), /no migration/);
      await assert.rejects(migrateDown(store.driver, store.migrationVars, -1), /no migration/);
    });

    it('reports not ready while the schema is behind, ready once it is current', async () => {
      await migrateDown(store.driver, store.migrationVars, 0);
      const behind = await store.readiness();
      assert.equal(behind.ok, false);
      assert.equal(behind.schemaVersion, 0);
      await migrateUp(store.driver, store.migrationVars);
      const current = await store.readiness();
      assert.deepEqual(current, { ok: true, schemaVersion: latestVersion(), expectedVersion: latestVersion() });
    });

    it('refuses to open a store whose D differs from the table', async () => {
      const { Store } = await import('../src/store/index.ts');
      const other = new Store(store.driver, { embeddingDim: store.embeddingDim + 1 });
      await assert.rejects(other.migrate(), /RELAY_EMBED_DIM/);
    });
  });
}

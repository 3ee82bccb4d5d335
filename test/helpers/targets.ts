import { createPgDriver, createPgliteDriver, Store, type SearchTuning, type StoreObserver } from '../../src/store/index.ts';

/** One store the suites run against: the embedded PGlite always, a server PostgreSQL when configured. */
export interface Target {
  name: 'pglite' | 'pg';
  /** `poolMax`: connections in a server store's pool (4 unless given); PGlite has one connection. */
  open(opts?: { search?: Partial<SearchTuning>; observer?: StoreObserver; poolMax?: number }): Promise<Store>;
}

const pglite: Target = {
  name: 'pglite',
  async open(opts = {}) {
    const store = new Store(await createPgliteDriver({ dataDir: 'memory://' }), opts);
    await store.migrate();
    return store;
  },
};

/**
 * The server target when RELAY_TEST_DATABASE_URL is set. A configured server that
 * cannot be reached fails the suite (the connection error propagates); it is never skipped.
 */
function serverTarget(): Target | null {
  const appUrl = process.env.RELAY_TEST_DATABASE_URL;
  if (!appUrl) return null;
  const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;
  if (!ownerUrl) throw new Error('RELAY_TEST_DATABASE_URL is set but RELAY_TEST_MIGRATE_URL is not');
  return serverTargetAt(appUrl, ownerUrl);
}

/** The server target over a database of the test's own (e.g. a cluster of test/helpers/pg-cluster.ts). */
export function serverTargetAt(appUrl: string, ownerUrl: string): Target {
  return {
    name: 'pg',
    async open(opts = {}) {
      const { poolMax = 4, ...storeOpts } = opts;
      const store = new Store(createPgDriver({ appUrl, ownerUrl, poolMax }), storeOpts);
      await store.migrate();
      return store;
    },
  };
}

/**
 * The server store as RELAY_DB_POOLER=transaction opens it: statements through `pooledUrl` (a
 * PgBouncer in transaction mode), migrations on `ownerUrl` and key events on `listenUrl`, both direct.
 */
export function pooledTargetAt(pooledUrl: string, ownerUrl: string, listenUrl: string): Target {
  return {
    name: 'pg',
    async open(opts = {}) {
      const { poolMax = 4, ...storeOpts } = opts;
      const store = new Store(createPgDriver({ appUrl: pooledUrl, ownerUrl, pooler: 'transaction', listenUrl, poolMax }), storeOpts);
      await store.migrate();
      return store;
    },
  };
}

export function targets(): Target[] {
  const server = serverTarget();
  return server ? [pglite, server] : [pglite];
}

import { createPgDriver } from './pg-driver.ts';
import { createPgliteDriver } from './pglite-driver.ts';
import { Store, type StoreOptions } from './store.ts';

export type StoreLocation =
  | { kind: 'pglite'; dataDir: string }
  | { kind: 'pg'; databaseUrl: string; migrateUrl?: string; poolMax?: number; statementTimeoutMs?: number };

export interface OpenStoreOptions extends Pick<StoreOptions, 'appRole' | 'embeddingDim' | 'search' | 'observer' | 'searchDelayMs'> {
  location: StoreLocation;
}

/** The embedded store (PGlite in a folder, or `memory://`) or a server PostgreSQL. */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const { location } = opts;
  const driver =
    location.kind === 'pglite'
      ? await createPgliteDriver({ dataDir: location.dataDir, appRole: opts.appRole })
      : createPgDriver({
          appUrl: location.databaseUrl,
          ownerUrl: location.migrateUrl,
          poolMax: location.poolMax,
          statementTimeoutMs: location.statementTimeoutMs,
        });
  return new Store(driver, { appRole: opts.appRole, embeddingDim: opts.embeddingDim, search: opts.search, observer: opts.observer, searchDelayMs: opts.searchDelayMs });
}

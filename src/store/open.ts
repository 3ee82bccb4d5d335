import { createPgDriver } from './pg-driver.ts';
import { createPgliteDriver } from './pglite-driver.ts';
import { checkPooler, PoolerError, type Pooler } from './pooler-probe.ts';
import { Store, type StoreOptions } from './store.ts';

export type StoreLocation =
  | { kind: 'pglite'; dataDir: string }
  | {
      kind: 'pg';
      databaseUrl: string;
      migrateUrl?: string;
      poolMax?: number;
      statementTimeoutMs?: number;
      /** What DATABASE_URL leads through (default `none`); checked at open by a probe. */
      pooler?: Pooler;
      /** Where LISTEN connects (default DATABASE_URL; required behind a transaction pool). */
      listenUrl?: string;
    };

export interface OpenStoreOptions extends Pick<StoreOptions, 'appRole' | 'embeddingDim' | 'search' | 'observer' | 'searchDelayMs'> {
  location: StoreLocation;
}

/**
 * The embedded store (PGlite in a folder, or `memory://`) or a server PostgreSQL. A server's
 * URLs are probed first: a pooler that does not match `pooler` is refused here, with what to
 * change, rather than failing statements under load. A server that cannot be asked now (down,
 * refusing the login) is opened as before, and asked before the first transaction instead.
 */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const { location } = opts;
  let checkFirst: (() => Promise<void>) | undefined;
  if (location.kind === 'pg') {
    const check = () => checkPooler({ appUrl: location.databaseUrl, pooler: location.pooler ?? 'none', listenUrl: location.listenUrl });
    try {
      await check();
    } catch (err) {
      if (err instanceof PoolerError) throw err;
      checkFirst = check;
    }
  }
  const driver =
    location.kind === 'pglite'
      ? await createPgliteDriver({ dataDir: location.dataDir, appRole: opts.appRole })
      : createPgDriver({
          appUrl: location.databaseUrl,
          ownerUrl: location.migrateUrl,
          poolMax: location.poolMax,
          statementTimeoutMs: location.statementTimeoutMs,
          pooler: location.pooler,
          listenUrl: location.listenUrl,
          checkFirst,
        });
  return new Store(driver, { appRole: opts.appRole, embeddingDim: opts.embeddingDim, search: opts.search, observer: opts.observer, searchDelayMs: opts.searchDelayMs });
}

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
      /** RELAY_READ_DATABASE_URL and its settings: query, get and list run on this standby when it is fit. */
      read?: { url: string; waitMs?: number; maxLagMs?: number };
    };

/** The same store without its standby: for maintenance, which runs on the primary only. */
export function primaryOnly(location: StoreLocation): StoreLocation {
  return location.kind === 'pg' ? { ...location, read: undefined } : location;
}

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
  // The standby's pool: the same login and pooler as DATABASE_URL, and a short connect timeout so
  // a standby that does not answer costs a read a second at most before the primary serves it.
  const read = location.kind === 'pg' ? location.read : undefined;
  const replica = location.kind === 'pg' && read
    ? {
        driver: createPgDriver({ appUrl: read.url, poolMax: location.poolMax, statementTimeoutMs: location.statementTimeoutMs, pooler: location.pooler, connectTimeoutMs: 1000 }),
        routing: {
          waitMs: read.waitMs,
          maxLagMs: read.maxLagMs,
          probeDriver: createPgDriver({ appUrl: read.url, poolMax: 1, statementTimeoutMs: 2000, pooler: location.pooler, connectTimeoutMs: 1000 }),
        },
      }
    : undefined;
  const store = new Store(driver, { appRole: opts.appRole, embeddingDim: opts.embeddingDim, search: opts.search, observer: opts.observer, searchDelayMs: opts.searchDelayMs, replica });
  await store.startReadRouting();
  return store;
}

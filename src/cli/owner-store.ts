import type { Config } from '../config/index.ts';
import { openStore, primaryOnly, type Store } from '../store/index.ts';

/**
 * Runs `fn` with the configured store for work that needs the owner login (migrations,
 * maintenance), and closes it. A server store without RELAY_MIGRATE_URL stops here; `why`
 * ends the message (what needs the owner).
 */
export async function withOwnerStore<T>(config: Config, why: string, fn: (store: Store) => Promise<T>): Promise<T> {
  if (config.store.kind === 'pg' && !config.store.migrateUrl) throw new Error(`RELAY_MIGRATE_URL is not set: ${why}`);
  const store = await openStore({ location: primaryOnly(config.store), appRole: config.appRole, embeddingDim: config.embeddingDim, search: config.search });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

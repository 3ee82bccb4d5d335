import { loadConfig } from '../config/index.ts';
import { openStore } from '../store/index.ts';

/**
 * `relay db index-scopes [--min-rows N]`: an HNSW index of its own for every scope with
 * at least N rows (default RELAY_SEARCH_EXACT_MAX), built concurrently on a server, and
 * drops those whose scope has shrunk. Safe to run from a timer; runs as the owner.
 */
export async function indexScopes(minRows: number | undefined): Promise<void> {
  const config = loadConfig();
  if (config.store.kind === 'pg' && !config.store.migrateUrl) {
    throw new Error('RELAY_MIGRATE_URL is not set: building indexes needs the owner login');
  }
  const store = await openStore({ location: config.store, appRole: config.appRole, embeddingDim: config.embeddingDim, search: config.search });
  try {
    const report = await store.ensureScopeIndexes({
      minRows: minRows ?? store.tuning.exactMax,
      log: (line) => console.error(`index-scopes: ${line}`),
    });
    console.log(`built ${report.created.length}, kept ${report.kept}, dropped ${report.dropped.length}`);
  } finally {
    await store.close();
  }
}

import { loadConfig } from '../config/index.ts';
import { withOwnerStore } from './owner-store.ts';

/**
 * `relay db index-scopes [--min-rows N]`: an HNSW index of its own for every scope with
 * at least N rows (default RELAY_SEARCH_EXACT_MAX), built concurrently on a server, and
 * drops those whose scope has shrunk. Safe to run from a timer; runs as the owner.
 */
export async function indexScopes(minRows: number | undefined): Promise<void> {
  const config = loadConfig();
  await withOwnerStore(config, 'building indexes needs the owner login', async (store) => {
    const report = await store.ensureScopeIndexes({
      minRows: minRows ?? store.tuning.exactMax,
      log: (line) => console.error(`index-scopes: ${line}`),
    });
    console.log(`built ${report.created.length}, kept ${report.kept}, dropped ${report.dropped.length}`);
  });
}

import { Presets, SingleBar } from 'cli-progress';
import { loadConfig } from '../config/index.ts';
import { createEmbedder } from '../embed/index.ts';
import { checkMasterKey, ownerKeyring, reindexTenant, wrongMasterKeyMessage, type ReindexProgress } from '../memory/index.ts';
import { announceKeyEvent } from '../store/index.ts';
import { masterKeyFor } from './master-key.ts';
import { UsageError } from './usage-error.ts';
import { withOwnerStore } from './owner-store.ts';

export interface ReindexArgs {
  tenant?: string;
  /** Rows per transaction; reindexTenant's default when absent. */
  batchSize?: number;
}

const USAGE = 'usage: relay reindex --tenant T [--batch-size 200]';

/**
 * `relay reindex`: re-embeds a tenant's rows written by another embedder with the configured
 * one (RELAY_EMBEDDER …). Ctrl-C stops after the batch in flight; running it again goes on
 * where it stopped.
 */
export async function reindex(args: ReindexArgs): Promise<void> {
  const tenant = args.tenant;
  if (!tenant) throw new UsageError(`--tenant is required\n${USAGE}`);
  if (args.batchSize === 0) throw new UsageError(`--batch-size must be at least 1\n${USAGE}`);
  const config = loadConfig();
  const { provider } = masterKeyFor(config);
  // The model is loaded (and checked against D) before the store is touched.
  const embedder = await createEmbedder(config.embed);
  const stop = new AbortController();
  const onSigint = () => stop.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  try {
    await withOwnerStore(config, 'reindexing runs as the owner login', async (store) => {
      if (config.store.kind === 'pglite') await store.migrate();
      const ready = await store.readiness();
      if (!ready.ok) {
        throw new Error(`the schema is at version ${ready.schemaVersion}, this release needs ${ready.expectedVersion}${ready.error ? ` (${ready.error})` : ''}: run relay migrate up`);
      }
      if (!(await checkMasterKey(store.driver, provider)).ok) throw new Error(wrongMasterKeyMessage(provider));
      const bar = new SingleBar({ format: 'reindex |{bar}| {value}/{total} rows, {skipped} skipped, eta {eta}s', stream: process.stderr }, Presets.shades_classic);
      let last: ReindexProgress = { done: 0, total: 0, skipped: 0 };
      let started = false;
      try {
        const report = await reindexTenant(store.driver, ownerKeyring(store.driver, provider), embedder, tenant, {
          batchSize: args.batchSize,
          signal: stop.signal,
          vectorTransform: config.vectorTransform,
          onProgress: (p) => {
            last = p;
            if (!started) {
              bar.start(p.total, 0, { skipped: 0 });
              started = true;
            }
            bar.update(p.done, { skipped: p.skipped });
          },
        });
        if (started) bar.stop();
        // Done: running services drop the tenant's cached keys (a key event, docs/crypto.md).
        await announceKeyEvent(store.driver, { tenantId: tenant, kind: 'reindex' });
        const failures = Object.entries(report.failures).map(([r, n]) => `${n} ${r}`).join(', ');
        console.log(
          `tenant ${tenant}: re-embedded ${report.done} rows with ${report.embedderId}${report.skipped ? `; ${report.skipped} did not open and were left as they are (${failures})` : ''}`,
        );
        if (report.skipped) process.exitCode = 1;
      } catch (err) {
        if (started) bar.stop();
        if (!stop.signal.aborted) throw err;
        console.log(`tenant ${tenant}: stopped after re-embedding ${last.done} of ${last.total} rows; run relay reindex again to go on`);
        process.exitCode = 130;
      }
    });
  } finally {
    process.removeListener('SIGINT', onSigint);
    await embedder.close?.();
  }
}

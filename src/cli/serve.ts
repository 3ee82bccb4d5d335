import { buildApp } from '../api/index.ts';
import { loadConfig } from '../config/index.ts';
import { createMetrics } from '../metrics/index.ts';
import { openStore } from '../store/index.ts';
import { masterKeyFor } from './master-key.ts';

/** `relay serve`: migrates the embedded store (or the server one, given RELAY_MIGRATE_URL) and listens. */
export async function serve(): Promise<void> {
  const config = loadConfig();
  // Fails fast on a bad or missing master key; the embedded store makes its development key here.
  masterKeyFor(config);
  const metrics = createMetrics({ release: config.release });
  const store = await openStore({
    location: config.store,
    appRole: config.appRole,
    embeddingDim: config.embeddingDim,
    search: config.search,
    observer: metrics.storeObserver,
  });
  metrics.watchPool(() => store.poolStats());
  const canMigrate = config.store.kind === 'pglite' || Boolean(config.store.migrateUrl);
  if (config.migrateOnStart && canMigrate) await store.migrate();

  const app = buildApp({ store, metrics, logger: { level: config.logLevel } });
  const shutdown = async (signal: string) => {
    app.log.info({ signal }, 'shutting down');
    await app.close();
    await store.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

  await app.listen({ host: config.host, port: config.port });
  app.log.info({ store: config.store.kind, release: config.release }, 'relay memory is serving');
}

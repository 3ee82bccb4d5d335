import { readFileSync } from 'node:fs';
import { logOptions, startServer } from '../api/index.ts';
import { createTokenVerifier, mintToken, signingSecret } from '../auth/index.ts';
import { loadConfig } from '../config/index.ts';
import { Keyring } from '../crypto/index.ts';
import { createEmbedder } from '../embed/index.ts';
import { checkMasterKey, MemoryService, rerankWith, SealedMemory, wrongMasterKeyMessage } from '../memory/index.ts';
import { closeCrossEncoders, createMaybeRerank, getCrossEncoder, trackModel, warmCrossEncoder } from '../rerank/index.ts';
import { createMetrics } from '../metrics/index.ts';
import { KeyEvents, openStore, SqlKeyRepository } from '../store/index.ts';
import { masterKeyFor } from './master-key.ts';

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/** `relay serve`: migrates the embedded store (or the server one, given RELAY_MIGRATE_URL) and listens. */
export async function serve(): Promise<void> {
  const config = loadConfig();
  // Fails fast on a bad or missing key or token secret; the embedded store makes its
  // development key and secret here.
  const { provider } = masterKeyFor(config);
  const jwt = signingSecret(config);
  const verifier = await createTokenVerifier(config.auth, { devSecret: jwt.source === 'env' ? undefined : (jwt.secret ?? undefined) });
  const embedder = await createEmbedder(config.embed);

  const metrics = createMetrics({ release: config.release, version: packageVersion(), enabled: config.metrics.enabled, tenantLabels: config.metrics.tenantLabels });
  const store = await openStore({
    location: config.store,
    appRole: config.appRole,
    embeddingDim: config.embeddingDim,
    search: config.search,
    observer: metrics.storeObserver,
    searchDelayMs: config.faults?.annDelayMs,
  });
  metrics.watchPool(() => store.poolStats());
  const canMigrate = config.store.kind === 'pglite' || Boolean(config.store.migrateUrl);
  if (config.migrateOnStart && canMigrate) await store.migrate();
  // A wrong master key would pass every other check and fail every data request: refuse it here.
  // (A schema that is behind is /readyz's to report; the check is made once it is current.)
  if ((await store.readiness()).ok) {
    const check = await checkMasterKey(store.driver, provider);
    if (!check.ok) {
      await store.close();
      throw new Error(wrongMasterKeyMessage(provider));
    }
    if (check.created) console.error('relay: wrote the master key check with the configured master key (a database set up before it existed; docs/crypto.md)');
  }

  // Key changes made by other processes (relay keys …) reach this one's keyring at once.
  let eventLog: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void } | null = null;
  const keyEvents = await KeyEvents.start(store.driver, {
    log: {
      warn: (obj, msg) => (eventLog ? eventLog.warn(obj, msg) : console.error(`relay: ${msg}`)),
      info: (obj, msg) => eventLog?.info(obj, msg),
    },
    onEvent: (e) => metrics.keyEvent(e.kind),
  });
  metrics.watchKeyEvents(() => keyEvents.live);
  const keyring = new Keyring({
    provider,
    repository: new SqlKeyRepository(store.driver, 'app', store.standbyDriver),
    onOpenFailure: metrics.openFailure,
    changes: keyEvents,
    staleAfterMs: config.keyEventGraceMs,
  });
  // The reranker loads in the background (an ONNX model can take a while); until it has, /readyz
  // says not ready and queries keep search order (maybeRerank's budget covers the wait).
  const reranker = trackModel(() => warmCrossEncoder(config.rerank), { onError: (err) => console.error(`relay: reranker failed to load: ${(err as Error).message}`) });
  if (config.rerank.enabled) reranker.load();
  const maybe = createMaybeRerank({ ...config.rerank, reranker: () => getCrossEncoder(config.rerank), hooks: metrics.rerank });
  // Set once the server (and its logger) is up; a row dropped before that is still counted.
  let serverLog: { error(obj: object, msg: string): void } | null = null;
  const memory = new MemoryService({
    memory: new SealedMemory(store, keyring, {
      vectorTransform: config.vectorTransform,
      onScopeViolation: ({ chunkId, mismatch }) => {
        metrics.scopeViolation();
        serverLog?.error({ chunkId, mismatch }, 'scope violation: a row outside the request scope was about to be served; dropped');
      },
    }),
    embedder,
    chunking: config.embed.chunk,
    rerank: rerankWith(maybe),
    // Disabled: one candidate per result (maybeRerank only counts the fallback).
    candidatesFactor: config.rerank.enabled ? config.rerank.candidatesFactor : 1,
    faults: config.faults,
  });
  const server = await startServer({
    store,
    metrics,
    memory,
    verifier,
    limits: config.api,
    host: config.host,
    port: config.port,
    shutdownGraceMs: config.api.shutdownGraceMs,
    drainMs: config.api.drainMs,
    sweepIntervalS: config.api.sweepIntervalS,
    metricsToken: config.metrics.token,
    models: config.rerank.enabled ? { reranker } : {},
    masterKeyCheck: () => checkMasterKey(store.driver, provider),
    logger: logOptions(config.logLevel),
  });
  const log = server.app.log;
  serverLog = log;
  eventLog = log;
  if (config.faults) log.warn({ faults: config.faults }, 'RELAY_FAULTS is set: this process injects faults (tests only)');
  let shuttingDown = false;
  const onSigint = () => void shutdown('SIGINT');
  const onSigterm = () => void shutdown('SIGTERM');
  async function shutdown(signal: string): Promise<void> {
    if (shuttingDown) {
      // A second signal during the drain (an impatient operator, an orchestrator's second try):
      // skip what is left of it; the close still lets in-flight streams finish within the grace.
      log.warn({ signal }, 'second signal: ending the drain early');
      server.endDrain();
      return;
    }
    shuttingDown = true;
    // /readyz turns 503 at once and every request is still served for RELAY_DRAIN_MS, so that the
    // balancer's health check takes this replica out before it stops accepting (docs/scaling.md).
    log.info({ signal, drainMs: config.api.drainMs }, config.api.drainMs > 0 ? 'shutting down: draining (/readyz 503, still serving; a second signal ends the drain)' : 'shutting down');
    try {
      await server.drain();
      // Past the drain a further signal ends the process at once, as it always did.
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      // Key events are still heard during the drain (the keyring serves requests until the close).
      await keyEvents.close();
      await server.close();
      await embedder.close?.();
      await closeCrossEncoders();
    } finally {
      process.exit(0);
    }
  }
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);

  log.info({ url: server.url, store: config.store.kind, embedder: embedder.id, release: config.release }, 'relay memory is serving');
  if (jwt.created && jwt.secret) {
    // First start of the embedded store: hand the developer a token to try the API with.
    const token = await mintToken({ secret: jwt.secret, tenant: 'dev', service: true, ttlSeconds: 30 * 86_400 });
    console.error(
      `relay: development service token for tenant "dev" (30 days; make more with: npm run relay -- token --tenant T --user U):\n${token}`,
    );
  }
}

export { Store, tableEmbeddingDim, type StoreObserver, type StoreOptions, type Readiness, type ReadIntent, type ReadReplica } from './store.ts';
export { READ_ROUTES, ReadRouter, parseLsn, type ReadReason, type ReadRoutingOptions, type ReadTarget } from './read-routing.ts';
export { ScopedChunks, isChunkId, type Chunk, type ChunkPatch, type IdempotentReplay, type KeyedVector, type ListPage, type ListPosition, type Metadata, type NewChunk, type SearchHit, type SearchVectors, type SearchOptions, type SearchOutcome } from './chunks.ts';
export { DEFAULT_SEARCH_TUNING, type Predicate, type SearchStrategy, type SearchTuning } from './search.ts';
export { ScopeError, SCOPE_SETTINGS, type Scope } from './scope.ts';
export { isConnectionError, isRlsError, sqlState } from './errors.ts';
export { currentVersion, latestVersion, loadMigrations, migrateDown, migrateUp, migrationStatus, MigrationError, type MigrationState, type MigrationVars } from './migrations.ts';
export { createPgDriver, type PgDriverOptions } from './pg-driver.ts';
export { createPgliteDriver, type PgliteDriverOptions } from './pglite-driver.ts';
export type { Driver, Listening, PoolStats, SqlClient, TransactionOptions } from './sql-client.ts';
export { READ_ONLY } from './sql-client.ts';
export { setupDatabase, type SetupOptions, type SetupResult } from './setup.ts';
export { openStore, primaryOnly, type OpenStoreOptions, type StoreLocation } from './open.ts';
export { prewarm, withVectorIndexRebuilt } from './bulk-load.ts';
export { toBinaryVector, toSqlVector } from './vector.ts';
export { ensureScopeIndexes, scopeIndexName, SCOPE_INDEX_PREFIX, type ScopeIndexOptions, type ScopeIndexReport } from './scope-indexes.ts';
export {
  SqlKeyRepository,
  createMasterKeyCheck,
  isTenantShreddedError,
  purgeShreddedTenant,
  readMasterKeyCheck,
  replaceMasterKeyCheck,
  TENANT_SHREDDED_STATE,
  type MasterKeyCheckRow,
} from './key-repository.ts';
export { KeyEvents, KEY_EVENT_KINDS, KEY_EVENTS_CHANNEL, announceKeyEvent, parseKeyEvent, publishKeyEvent, type KeyEvent, type KeyEventKind, type KeyEventListener, type KeyEventsOptions } from './key-events.ts';
export { sweepExpired, type SweepOptions, type SweepResult } from './sweep.ts';
export { compileFilter, parseFilter, FilterError, FILTER_LIMITS, type MetadataFilter, type Condition, type Scalar } from './filter.ts';
export { checkPooler, probePooling, PoolerError, type Pooler, type Pooling } from './pooler-probe.ts';

export { SealedMemory, CHUNK_TEXT_PURPOSE, keyIdOf, textContext, type MemoryInput, type MemorySearch, type OpenedChunk, type OpenedHit, type Unreadable } from './sealed-memory.ts';
export { checkMasterKey, ownerKeyring, resealTenant, shredTenant, rotateMasterKey, wrongMasterKeyMessage, type MasterKeyCheck, type ResealOptions, type ResealProgress, type ResealReport, type ShredReport } from './key-maintenance.ts';
export { MemoryService, MemoryError, keepSearchOrder, requestHash, type MemoryServiceOptions, type QueryInput, type QueryOutcome, type QueryTimings, type Rerank, type RerankContext, type RerankMode, type RerankOutcome, type Scored, type WriteInput } from './service.ts';
export { reindexTenant, type ReindexOptions, type ReindexProgress, type ReindexReport } from './reindex.ts';
export { rerankWith } from './rerank-seam.ts';
export { InjectedFault, type QueryFaults } from './faults.ts';
export { InvalidCursorError } from './list-cursor.ts';
export { InvalidConsistencyTokenError } from './consistency-token.ts';

export { SealedMemory, CHUNK_TEXT_PURPOSE, keyIdOf, textContext, type MemoryInput, type MemorySearch, type OpenedChunk, type OpenedHit, type Unreadable } from './sealed-memory.ts';
export { ownerKeyring, resealTenant, shredTenant, rotateMasterKey, type ResealProgress, type ResealReport, type ShredReport } from './key-maintenance.ts';

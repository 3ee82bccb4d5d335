import type { Chunk, } from '../store/index.ts';
import type { OpenedChunk, Scored } from '../memory/index.ts';
import type { ChunkAnswer, QueryResult, UpdatedAnswer } from './responses.ts';

/** A chunk as the API shows it (the plain user id is never stored, so it is not shown). */
export function chunkBody(c: OpenedChunk): ChunkAnswer {
  return {
    id: c.id,
    text: c.text,
    metadata: c.metadata,
    version: c.version,
    created_at: c.createdAt.toISOString(),
    updated_at: c.updatedAt.toISOString(),
    expires_at: c.expiresAt?.toISOString() ?? null,
  };
}

/** After a PATCH: the new version and metadata (the text is what the client just sent). */
export function updatedBody(c: Chunk): UpdatedAnswer {
  return {
    id: c.id,
    metadata: c.metadata,
    version: c.version,
    created_at: c.createdAt.toISOString(),
    updated_at: c.updatedAt.toISOString(),
    expires_at: c.expiresAt?.toISOString() ?? null,
  };
}

/** One query result, as an SSE `result` event's data and as an item of the JSON answer. */
export function resultBody(r: Scored): QueryResult {
  return { id: r.id, text: r.text, score: Math.round(r.score * 1e6) / 1e6, metadata: r.metadata, created_at: r.createdAt.toISOString() };
}

/** The chunk's version as an entity tag, for If-Match. */
export const etag = (version: number) => `"${version}"`;

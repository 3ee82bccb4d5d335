import { z } from 'zod';
import { ErrorCode } from './errors.ts';

/**
 * What the API answers, as zod schemas: the OpenAPI document is made from them, and the
 * presenters and routes are typed with them, so a field added to one and not the other fails
 * the typecheck. They are never run on a response.
 */

const Id = z.string().meta({ format: 'uuid', description: 'chunk id' });
const Time = z.string().meta({ format: 'date-time' });
const Count = z.number().int().min(0);
/** Metadata as stored (it was checked on the way in). */
const StoredMetadata = z.record(z.string(), z.unknown()).meta({ description: 'the metadata as written' });

export const WriteAnswer = z.strictObject({ ids: z.array(Id).meta({ description: 'one per chunk, in text order' }) });

export const ChunkAnswer = z.strictObject({
  id: Id,
  text: z.string(),
  metadata: StoredMetadata,
  version: z.number().int().min(1).meta({ description: 'also the ETag, for If-Match' }),
  created_at: Time,
  updated_at: Time,
  expires_at: Time.nullable(),
});

/** After a PATCH: the chunk without its text (the client just sent it). */
export const UpdatedAnswer = ChunkAnswer.omit({ text: true });

export const ListAnswer = z.strictObject({
  items: z.array(ChunkAnswer).meta({ description: 'newest first' }),
  next_cursor: z.string().nullable().meta({ description: 'pass back as cursor for the next page; null on the last' }),
  skipped: Count.meta({ description: 'chunks that did not open (tampered, moved, key destroyed)' }),
});

export const ErasureAnswer = z.strictObject({ deleted: Count });

/** One query result: the data of an SSE `result` event, and an item of the JSON answer. */
export const QueryResult = z.strictObject({
  id: Id,
  text: z.string(),
  score: z.number().meta({ description: 'higher is better; rounded to 6 decimals' }),
  metadata: StoredMetadata,
  created_at: Time,
});

const Timings = z.strictObject({ embed_ms: z.number(), search_ms: z.number(), open_ms: z.number(), rerank_ms: z.number() });

const queryTotals = {
  count: Count,
  skipped: Count.meta({ description: 'chunks found but not opened (tampered, moved, key destroyed)' }),
  reranked: Count.meta({ description: 'candidates the reranker scored; 0 when it kept search order' }),
  timings: Timings,
};

/** The data of the SSE `done` event. */
export const QueryDone = z.strictObject({
  ...queryTotals,
  ttfv_ms: z.number().optional().meta({ description: 'request accepted → first result written (this event when there is none)' }),
});

/** `Accept: application/json` (or none): the results in one body. */
export const QueryAnswer = z.strictObject({ results: z.array(QueryResult), ...queryTotals, ttfv_ms: z.number() });

const Code = z.enum(Object.values(ErrorCode));

/** The data of the SSE `error` event. */
export const StreamError = z.strictObject({ code: Code, message: z.string() });

/** Every error: `{"error": {"code", "message"}}`, `code` one of `codes`. */
export const errorAnswer = (codes: readonly ErrorCode[] = Object.values(ErrorCode)) =>
  z.strictObject({ error: z.strictObject({ code: z.enum(codes as [ErrorCode, ...ErrorCode[]]).meta({ description: 'stable; see docs/errors.md' }), message: z.string() }) });

export const Health = z.strictObject({ status: z.literal('ok') });

export const Readiness = z.strictObject({
  status: z.enum(['ready', 'not_ready']),
  checks: z.record(z.string(), z.string()).meta({ description: 'store, migrations, embedder, master_key (`ok`, `wrong key` or `unchecked`), each background model, rate_limit_store (with RELAY_REDIS_URL: `ok`, `unreachable`, or `unreachable (failing open)`), and shutdown (`draining`) once a shutdown has begun' }),
});

export type WriteAnswer = z.infer<typeof WriteAnswer>;
export type ChunkAnswer = z.infer<typeof ChunkAnswer>;
export type UpdatedAnswer = z.infer<typeof UpdatedAnswer>;
export type ListAnswer = z.infer<typeof ListAnswer>;
export type ErasureAnswer = z.infer<typeof ErasureAnswer>;
export type QueryResult = z.infer<typeof QueryResult>;
export type QueryDone = z.infer<typeof QueryDone>;
export type QueryAnswer = z.infer<typeof QueryAnswer>;
export type StreamError = z.infer<typeof StreamError>;
export type Readiness = z.infer<typeof Readiness>;

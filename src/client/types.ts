/**
 * The wire shapes of the memory API (docs/api.md), as the client sends and receives them. Field
 * names are the API's own (snake_case), so the HTTP reference reads the same for both.
 */

/** A JSON value a chunk's metadata may hold. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Metadata stored with every chunk of a write; filterable at query time. */
export type Metadata = Record<string, JsonValue>;

/** Whose memory a call touches: a service token must name the user, a user token may leave it out. */
export interface Scope {
  user_id?: string;
  /** Only ever the token's own tenant (anything else is `403 forbidden_scope`). */
  tenant_id?: string;
}

interface WriteCommon extends Scope {
  metadata?: Metadata;
  /** Seconds until the chunks expire. */
  ttl_s?: number;
}

/** `POST /api/v1/memory`: exactly one of `text` (split into chunks) or `chunks` (stored as given). */
export type AddInput = WriteCommon & ({ text: string; chunks?: never } | { chunks: string[]; text?: never });

export interface AddResult {
  /** One id per stored chunk, in text order. */
  ids: string[];
  /** True when the server answered a repeat of an earlier write with the same `Idempotency-Key`. */
  replayed: boolean;
}

/** One chunk, as `GET /api/v1/memory/:id` and the list show it. */
export interface MemoryChunk {
  id: string;
  text: string;
  metadata: Metadata;
  /** Goes up with every change; the entity tag `If-Match` compares. */
  version: number;
  created_at: string;
  updated_at: string;
  expires_at: string | null;
}

/** `PATCH /api/v1/memory/:id`: at least one of text, metadata and ttl_s (metadata is replaced whole). */
export interface UpdateInput extends Scope {
  text?: string;
  metadata?: Metadata;
  /** Seconds from now until the chunk expires (1..315,360,000); `null` removes the expiry. */
  ttl_s?: number | null;
}

/** A changed chunk: everything but the text (which the caller just sent). */
export type UpdatedChunk = Omit<MemoryChunk, 'text'>;

export interface ListParams {
  user_id?: string;
  /** Chunks per page, 1..100 (server default 20). */
  limit?: number;
  /** Start after this page: a `next_cursor` from an earlier page of the same user, passed back as it came (it is opaque). */
  cursor?: string;
}

/** One page of `GET /api/v1/memory`, newest first. */
export interface ListPage {
  items: MemoryChunk[];
  /** Where the next page starts; null on the last one. */
  next_cursor: string | null;
  /** Chunks of this page that did not open (tampered, key destroyed) and are left out. */
  skipped: number;
}

export interface QueryInput extends Scope {
  query: string;
  /** 1..100, default 10. */
  top_k?: number;
  /** A metadata filter (docs/filters.md). */
  filter?: Record<string, unknown>;
  rerank?: 'auto' | 'on' | 'off';
}

/** One result: an SSE `result` event, or an item of the JSON answer. */
export interface QueryHit {
  id: string;
  text: string;
  score: number;
  metadata: Metadata;
  created_at: string;
}

export interface QueryTimings {
  embed_ms: number;
  search_ms: number;
  open_ms: number;
  rerank_ms: number;
  [name: string]: number;
}

/** The `done` event: how the query went. */
export interface QuerySummary {
  count: number;
  /** Chunks that matched but did not open, left out. */
  skipped: number;
  /** How many candidates the reranker scored (0: search order). */
  reranked: number;
  /** Request accepted → first result written, in milliseconds. */
  ttfv_ms: number;
  timings: QueryTimings;
}

/** The whole answer at once (`queryAll`). */
export interface QueryResult extends QuerySummary {
  results: QueryHit[];
}

export interface EraseResult {
  deleted: number;
}

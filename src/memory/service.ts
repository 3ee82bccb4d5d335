import { createHash, randomUUID } from 'node:crypto';
import type { Embedder } from '../embed/index.ts';
import { splitText } from '../embed/index.ts';
import type { Chunk, ListPosition, Metadata, Predicate, SearchStrategy } from '../store/index.ts';
import { firstResultFault, rlsFault, type QueryFaults } from './faults.ts';
import { decodeConsistencyToken, encodeConsistencyToken } from './consistency-token.ts';
import { decodeCursor, encodeCursor } from './list-cursor.ts';
import type { OpenedChunk, OpenedHit, SealedMemory, Unreadable } from './sealed-memory.ts';

/** How a query's candidates are ordered: `auto` lets the reranker decide, `off` keeps search order. */
export type RerankMode = 'auto' | 'on' | 'off';

/** A candidate with its score; higher is better. */
export type Scored = OpenedHit & { score: number };

export interface RerankContext {
  tenantId: string;
  userId: string;
  mode: RerankMode;
  signal?: AbortSignal;
}

export interface RerankOutcome {
  /** All candidates, best first. */
  results: Scored[];
  /** How many of them the reranker scored (0: search order kept). */
  reranked: number;
  /** Why search order was kept, when it was (`relay_rerank_fallbacks_total{reason}`). */
  fallback?: string;
}

/**
 * Reorders a query's candidates (`maybeRerank` of src/rerank). It must never make a query
 * fail: on any trouble it keeps the order it was given.
 */
export type Rerank = (query: string, candidates: Scored[], ctx: RerankContext) => Promise<RerankOutcome>;

/** No reranker configured: search order, score = cosine similarity. */
export const keepSearchOrder: Rerank = async (_query, candidates) => ({ results: candidates, reranked: 0 });

export interface MemoryServiceOptions {
  memory: SealedMemory;
  embedder: Embedder;
  /** How long text is cut into chunks. */
  chunking: { maxChars: number; overlapChars: number };
  rerank?: Rerank;
  /** With a reranker, top_k × this candidates are searched and reranked. Default 4. */
  candidatesFactor?: number;
  /** Most chunks one write may make. Default 1000. */
  maxChunksPerWrite?: number;
  /** RELAY_FAULTS: tests only. */
  faults?: QueryFaults;
  /** Rows read per page (per transaction) by `exportPages`. Default 500. */
  exportPageSize?: number;
}

export interface WriteInput {
  text?: string;
  chunks?: readonly string[];
  metadata?: Metadata;
  ttlS?: number;
}

export interface QueryInput {
  query: string;
  topK: number;
  /** A compiled metadata condition (see `compileFilter`). */
  filter?: Predicate;
  rerank: RerankMode;
  /** A WAL position the search must see (`readPosition` of a Relay-Consistency token). */
  after?: bigint;
}

export interface QueryTimings {
  embed_ms: number;
  search_ms: number;
  open_ms: number;
  rerank_ms: number;
}

export interface QueryOutcome {
  results: Scored[];
  /** Chunks found but not opened (tampered, moved, key gone): counted, never returned. */
  skipped: Unreadable[];
  strategy: SearchStrategy;
  timings: QueryTimings;
  /** Candidates the reranker scored (0 when it kept search order). */
  reranked: number;
}

/** Why the domain refused a request; the HTTP layer maps each code to a status. */
export class MemoryError extends Error {
  constructor(
    readonly code: 'idempotency_key_reused' | 'too_many_chunks' | 'empty_text',
    message: string,
  ) {
    super(message);
  }
}

const ms = (from: bigint) => Math.round(Number(process.hrtime.bigint() - from) / 1e4) / 100;

/** sha256 of a stable JSON rendering (object keys sorted), for comparing requests. */
export function requestHash(value: unknown): Buffer {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return createHash('sha256').update(JSON.stringify(canonical(value) ?? null)).digest();
}

/**
 * The memory API's domain: text in, sealed rows out; a question in, the best chunks back. It
 * knows nothing of HTTP. Every call is for one tenant and one user, already authorised.
 */
export class MemoryService {
  private readonly rerank: Rerank;
  private readonly maxChunks: number;
  /** Queries so far, for RELAY_FAULTS' sse_error_every. */
  private queries = 0;

  constructor(private readonly opts: MemoryServiceOptions) {
    this.rerank = opts.rerank ?? keepSearchOrder;
    this.maxChunks = opts.maxChunksPerWrite ?? 1000;
  }

  get embedderId(): string {
    return this.opts.embedder.id;
  }

  /**
   * Splits, embeds, seals and inserts in one transaction. With an idempotency key, a repeat of
   * the same request returns the first ids and writes nothing; the same key with another
   * request is refused.
   */
  async write(
    tenantId: string,
    userId: string,
    input: WriteInput,
    opts: { idempotencyKey?: string; signal?: AbortSignal } = {},
  ): Promise<{ ids: string[]; replayed: boolean }> {
    const idem = opts.idempotencyKey === undefined
      ? undefined
      : {
          keyHash: createHash('sha256').update(opts.idempotencyKey).digest(),
          requestHash: requestHash({ text: input.text, chunks: input.chunks, metadata: input.metadata, ttl_s: input.ttlS }),
        };
    if (idem) {
      // Cheap early answer for a plain retry, before any embedding work.
      const seen = await this.opts.memory.findIdempotent(tenantId, userId, idem.keyHash);
      if (seen) return this.replay(seen.requestHash, seen.response, idem.requestHash);
    }
    const pieces = input.text !== undefined ? splitText(input.text, this.opts.chunking) : (input.chunks ?? []).map((c) => c.trim());
    if (pieces.length === 0 || pieces.some((p) => p.length === 0)) throw new MemoryError('empty_text', 'nothing to store: the text is empty or blank');
    if (pieces.length > this.maxChunks) {
      throw new MemoryError('too_many_chunks', `the text makes ${pieces.length} chunks; at most ${this.maxChunks} per request`);
    }
    const vectors = await this.opts.embedder.embed(pieces, { signal: opts.signal });
    const expiresAt = input.ttlS === undefined ? null : new Date(Date.now() + input.ttlS * 1000);
    const items = pieces.map((text, i) => ({
      id: randomUUID(),
      text,
      embedding: vectors[i]!,
      embedderId: this.opts.embedder.id,
      metadata: input.metadata ?? {},
      expiresAt,
    }));
    const written = await this.opts.memory.writeOnce(tenantId, userId, items, idem, opts.signal);
    if (written.replay && idem) return this.replay(written.replay.requestHash, written.replay.response, idem.requestHash);
    return { ids: written.ids, replayed: false };
  }

  private replay(stored: Buffer, response: unknown, current: Buffer): { ids: string[]; replayed: boolean } {
    if (!stored.equals(current)) {
      throw new MemoryError('idempotency_key_reused', 'this Idempotency-Key was used for a different request');
    }
    const ids = (response as { ids?: unknown }).ids;
    return { ids: Array.isArray(ids) ? ids.map(String) : [], replayed: true };
  }

  /**
   * Embed → scoped search (active embedder only) of top_k × candidatesFactor candidates → open
   * → rerank → the best top_k. With rerank `off` (or no reranker) only top_k are searched.
   */
  async query(tenantId: string, userId: string, input: QueryInput, signal?: AbortSignal): Promise<QueryOutcome> {
    const faults = this.opts.faults;
    if (faults) await rlsFault(faults, this.opts.memory, tenantId, userId);
    let t = process.hrtime.bigint();
    const [vector] = await this.opts.embedder.embed([input.query], { signal });
    const embed_ms = ms(t);
    const reranking = input.rerank !== 'off' && this.opts.rerank !== undefined;
    const k = reranking ? Math.min(1000, input.topK * (this.opts.candidatesFactor ?? 4)) : input.topK;
    const found = await this.opts.memory.search(tenantId, userId, vector!, k, {
      embedderId: this.opts.embedder.id,
      filter: input.filter,
      signal,
      read: { after: input.after },
    });
    const round = (seconds: number) => Math.round(seconds * 1e5) / 100;
    const candidates = found.hits.map((h) => ({ ...h, score: 1 - h.distance }));
    t = process.hrtime.bigint();
    const ranked = reranking ? await this.rerank(input.query, candidates, { tenantId, userId, mode: input.rerank, signal }) : { results: candidates, reranked: 0 };
    const rerank_ms = ms(t);
    if (faults) await firstResultFault(faults, ++this.queries, signal);
    return {
      results: ranked.results.slice(0, input.topK),
      skipped: found.skipped,
      strategy: found.strategy,
      reranked: ranked.reranked,
      timings: { embed_ms, search_ms: round(found.searchSeconds), open_ms: round(found.openSeconds), rerank_ms },
    };
  }

  /** `after`: a WAL position the read must see (`readPosition`). */
  get(tenantId: string, userId: string, id: string, after?: bigint): Promise<OpenedChunk | null> {
    return this.opts.memory.get(tenantId, userId, id, { after });
  }

  /**
   * The Relay-Consistency token for what has been written so far: a read given it back (as
   * `readPosition`) sees every write answered before it was made, on the standby or the primary.
   * Null when the primary could not be asked (the write it follows has committed all the same).
   */
  async consistencyToken(tenantId: string): Promise<string | null> {
    try {
      return await encodeConsistencyToken(this.opts.memory.keyring, tenantId, await this.opts.memory.store.commitPosition());
    } catch {
      return null;
    }
  }

  /** The WAL position of a Relay-Consistency token given out to `tenantId`; throws `InvalidConsistencyTokenError` for any other. */
  readPosition(tenantId: string, token: string): Promise<bigint> {
    return decodeConsistencyToken(this.opts.memory.keyring, tenantId, token);
  }

  /** New text (re-embedded and re-sealed) and/or metadata, in one transaction; `ifVersion` guards concurrent edits. */
  async update(
    tenantId: string,
    userId: string,
    id: string,
    patch: { text?: string; metadata?: Metadata; ttlS?: number | null; ifVersion?: number },
    signal?: AbortSignal,
  ): Promise<Chunk | null | 'version_mismatch'> {
    let embedding: Float32Array | undefined;
    if (patch.text !== undefined) {
      if (patch.text.trim().length === 0) throw new MemoryError('empty_text', 'text must not be blank');
      [embedding] = await this.opts.embedder.embed([patch.text], { signal });
    }
    return this.opts.memory.update(tenantId, userId, id, {
      text: patch.text,
      embedding,
      embedderId: embedding ? this.opts.embedder.id : undefined,
      metadata: patch.metadata,
      // From now, like a write's ttl_s; null: never expires. An expired chunk is not there to change.
      expiresAt: patch.ttlS === undefined ? undefined : patch.ttlS === null ? null : new Date(Date.now() + patch.ttlS * 1000),
      ifVersion: patch.ifVersion,
    });
  }

  async delete(tenantId: string, userId: string, id: string): Promise<boolean> {
    const scope = await this.opts.memory.scope(tenantId, userId);
    return this.opts.memory.store.withScope(scope, (chunks) => chunks.delete(id));
  }

  /**
   * Newest first; rows that do not open are skipped and reported. `cursor` is a `next` this
   * method gave out for the same tenant and user; any other throws `InvalidCursorError`.
   */
  async list(
    tenantId: string,
    userId: string,
    limit: number,
    cursor?: string,
    after?: bigint,
  ): Promise<{ items: OpenedChunk[]; skipped: Unreadable[]; next: string | null }> {
    const { keyring } = this.opts.memory;
    const scope = await this.opts.memory.scope(tenantId, userId);
    const before = cursor === undefined ? undefined : await decodeCursor(keyring, scope, cursor);
    const page = await this.opts.memory.store.withScope(scope, (chunks) => chunks.list(limit, before), { read: { after } });
    const { opened, skipped } = await this.opts.memory.openAll(scope, page.chunks);
    return { items: opened, skipped, next: page.next ? await encodeCursor(keyring, scope, page.next) : null };
  }

  /**
   * Every live chunk of the user, newest first, `pageSize` at a time: each page is read in its
   * own short scoped transaction (keyset pagination, nothing held open between pages) and
   * opened before the next is read, so memory stays bounded by the page whatever the user
   * holds. Rows that do not open are skipped and reported per page. Rows written while it runs
   * may or may not be included.
   */
  async *exportPages(
    tenantId: string,
    userId: string,
    pageSize = this.opts.exportPageSize ?? 500,
  ): AsyncGenerator<{ items: OpenedChunk[]; skipped: Unreadable[] }, void, undefined> {
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) throw new RangeError('pageSize must be an integer in 1..10000');
    const scope = await this.opts.memory.scope(tenantId, userId);
    let before: ListPosition | undefined;
    do {
      const page = await this.opts.memory.store.withScope(scope, (chunks) => chunks.list(pageSize, before));
      const { opened, skipped } = await this.opts.memory.openAll(scope, page.chunks);
      yield { items: opened, skipped };
      before = page.next ?? undefined;
    } while (before !== undefined);
  }

  /** Erasure: every chunk of the user in the tenant (in a shredded tenant: every row left of it). */
  async erase(tenantId: string, userId: string): Promise<number> {
    return this.opts.memory.erase(tenantId, userId);
  }
}

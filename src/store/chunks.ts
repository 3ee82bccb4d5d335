import type { Scope } from './scope.ts';
import { nearestInScope, type Predicate, type QueryVectors, type SearchStrategy, type SearchTuning } from './search.ts';
import type { SqlClient } from './sql-client.ts';
import { toBinaryVector, toBuffer, toSqlVector } from './vector.ts';

export type Metadata = Record<string, unknown>;

export interface NewChunk {
  /** Chosen by the caller: the sealed text's AAD binds it. */
  id: string;
  ciphertext: Buffer;
  keyId: string;
  embedding: ArrayLike<number>;
  /** The data key version whose transform `embedding` is under; null or absent: the model's own space. */
  vectorKey?: number | null;
  embedderId: string;
  metadata?: Metadata;
  expiresAt?: Date | null;
}

/** A query vector in one space: `key` as `NewChunk.vectorKey`. */
export interface KeyedVector {
  key: number | null;
  vector: ArrayLike<number>;
}

/**
 * A query in every space the scope may hold: `primary` (the space new rows are written in;
 * the HNSW index searches with it) and the rest. Rows in a space with no vector here are
 * compared with the primary one.
 */
export interface SearchVectors {
  primary: KeyedVector;
  others: readonly KeyedVector[];
}

export interface Chunk {
  id: string;
  tenantId: string;
  userHash: Buffer;
  ciphertext: Buffer;
  keyId: string;
  /** As `NewChunk.vectorKey`. */
  vectorKey: number | null;
  embedderId: string;
  metadata: Metadata;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  expiresAt: Date | null;
}

export interface ChunkPatch {
  ciphertext?: Buffer;
  keyId?: string;
  embedding?: ArrayLike<number>;
  /** With `embedding`: the space it is in (as `NewChunk.vectorKey`). */
  vectorKey?: number | null;
  embedderId?: string;
  metadata?: Metadata;
  /** A new expiry; null: none (the row stays until deleted). Absent: unchanged. */
  expiresAt?: Date | null;
  /** Only update when the row still has this version (optimistic concurrency). */
  ifVersion?: number;
}

export interface SearchHit extends Chunk {
  /** Cosine distance, 0 (same direction) .. 2. */
  distance: number;
}

export interface SearchOutcome {
  hits: SearchHit[];
  strategy: SearchStrategy;
  /** Seconds spent in the search statements. */
  seconds: number;
}

export interface ListPage {
  chunks: Chunk[];
  /** Pass back as `before` for the next (older) page; null on the last page. */
  next: ListPosition | null;
}

/** Where a page ended: `created_at` in microseconds since 1970 (a Date keeps only ms), and the row's id. */
export interface ListPosition {
  createdAtUs: bigint;
  id: string;
}

export interface SearchOptions {
  /** Only rows embedded by this embedder (vectors of different models are not comparable). */
  embedderId?: string;
  /** A further condition, e.g. a compiled metadata filter. Statements with one are not kept prepared. */
  filter?: Predicate;
}

/** What an idempotency key already answered: its request's hash and stored response. */
export interface IdempotentReplay {
  requestHash: Buffer;
  response: unknown;
}

const COLUMNS = 'id, tenant_id, user_hash, ciphertext, key_id, vector_key, embedder_id, metadata, version, created_at, updated_at, expires_at';
const LIVE = '(expires_at IS NULL OR expires_at > now())';

type ChunkRecord = {
  id: string;
  tenant_id: string;
  user_hash: unknown;
  ciphertext: unknown;
  key_id: string;
  vector_key: number | null;
  embedder_id: string;
  metadata: Metadata;
  version: number;
  created_at: Date;
  updated_at: Date;
  expires_at: Date | null;
};

function toChunk(r: ChunkRecord): Chunk {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    userHash: toBuffer(r.user_hash),
    ciphertext: toBuffer(r.ciphertext),
    keyId: r.key_id,
    vectorKey: r.vector_key,
    embedderId: r.embedder_id,
    metadata: r.metadata,
    version: r.version,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    expiresAt: r.expires_at ? new Date(r.expires_at) : null,
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `id` is a well-formed UUID; anything else cannot name a row. */
export function isChunkId(id: string): boolean {
  return UUID.test(id);
}

/**
 * The memory rows of one scope, inside one transaction whose first statement set
 * that scope. Each statement also names the scope explicitly (for the planner);
 * the RLS policies are what guarantees it.
 */
export class ScopedChunks {
  constructor(
    private readonly sql: SqlClient,
    private readonly scope: Scope,
    private readonly dim: number,
    private readonly tuning: SearchTuning,
    private readonly onSearch?: (seconds: number, strategy: SearchStrategy, underfilled: boolean) => void,
    private readonly searchDelayMs = 0,
  ) {}

  /** Stores all `chunks` with one statement. */
  async insert(chunks: readonly NewChunk[]): Promise<string[]> {
    if (chunks.length === 0) return [];
    for (const c of chunks) if (!isChunkId(c.id)) throw new RangeError(`chunk id is not a UUID: ${c.id}`);
    // Arrays travel as text[] (hex for bytes) so both drivers bind them the same way.
    await this.sql.query(
      `INSERT INTO memory_chunks (id, tenant_id, user_hash, ciphertext, key_id, embedding, vector_key, embedder_id, metadata, expires_at)
       SELECT u.id::uuid, $1, $2, decode(u.ct, 'hex'), u.kid, u.emb::vector, u.vk, u.eid, u.meta::jsonb, u.exp::timestamptz
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[], $9::text[], $10::text[])
            AS u(id, ct, kid, emb, vk, eid, meta, exp)`,
      [
        this.scope.tenantId,
        this.scope.userHash,
        chunks.map((c) => c.id),
        chunks.map((c) => c.ciphertext.toString('hex')),
        chunks.map((c) => c.keyId),
        chunks.map((c) => toSqlVector(c.embedding, this.dim)),
        chunks.map((c) => c.vectorKey ?? null),
        chunks.map((c) => c.embedderId),
        chunks.map((c) => JSON.stringify(c.metadata ?? {})),
        chunks.map((c) => c.expiresAt?.toISOString() ?? null),
      ],
    );
    return chunks.map((c) => c.id);
  }

  async get(id: string): Promise<Chunk | null> {
    if (!isChunkId(id)) return null;
    const res = await this.sql.query<ChunkRecord>(
      `SELECT ${COLUMNS} FROM memory_chunks WHERE id = $1 AND tenant_id = $2 AND user_hash = $3 AND ${LIVE}`,
      [id, this.scope.tenantId, this.scope.userHash],
    );
    const row = res.rows[0];
    return row ? toChunk(row) : null;
  }

  /** Newest first, `limit` at a time; `before` continues after the last row of a page. */
  async list(limit: number, before?: ListPosition): Promise<ListPage> {
    if (before && !isChunkId(before.id)) throw new RangeError('list position id is not a UUID');
    const params: unknown[] = [this.scope.tenantId, this.scope.userHash, limit + 1];
    let after = '';
    if (before) {
      // Integer arithmetic on µs: exact, and independent of the session's TimeZone and DateStyle.
      params.push(before.createdAtUs.toString(), before.id);
      after = `AND (created_at, id) < (timestamptz '1970-01-01 00:00:00+00' + $4::bigint * interval '1 microsecond', $5::uuid)`;
    }
    const res = await this.sql.query<ChunkRecord & { position: string }>(
      `SELECT ${COLUMNS}, (extract(epoch FROM created_at) * 1000000)::bigint::text AS position FROM memory_chunks
        WHERE tenant_id = $1 AND user_hash = $2 AND ${LIVE} ${after}
        ORDER BY created_at DESC, id DESC LIMIT $3`,
      params,
    );
    const page = res.rows.slice(0, limit);
    const last = page[page.length - 1];
    return { chunks: page.map(toChunk), next: res.rows.length > limit && last ? { createdAtUs: BigInt(last.position), id: last.id } : null };
  }

  /** What the idempotency key (its hash) answered, if this scope used it. */
  async findIdempotencyKey(keyHash: Buffer): Promise<IdempotentReplay | null> {
    const res = await this.sql.query<{ request_hash: unknown; response: unknown }>(
      'SELECT request_hash, response FROM idempotency_keys WHERE tenant_id = $1 AND user_hash = $2 AND key_hash = $3',
      [this.scope.tenantId, this.scope.userHash, keyHash],
    );
    const row = res.rows[0];
    return row ? { requestHash: toBuffer(row.request_hash), response: row.response } : null;
  }

  /**
   * Claims an idempotency key (hashes, 32 bytes each) for a write whose `response` is already
   * known, before the write's rows go in, in the same transaction. Returns null when claimed;
   * when the key was used before, what it answered. A racing claim of the same key waits on
   * the primary key until the first transaction ends, then sees its row (or claims the key
   * itself if that one rolled back).
   */
  async claimIdempotencyKey(keyHash: Buffer, requestHash: Buffer, response: unknown): Promise<IdempotentReplay | null> {
    const claimed = await this.sql.query(
      `INSERT INTO idempotency_keys (tenant_id, user_hash, key_hash, request_hash, response)
       VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING`,
      [this.scope.tenantId, this.scope.userHash, keyHash, requestHash, JSON.stringify(response)],
    );
    if (claimed.rowCount > 0) return null;
    const found = await this.findIdempotencyKey(keyHash);
    // Not there: the key's row was purged between the two statements; refuse rather than guess.
    if (!found) throw new Error('idempotency key vanished while being claimed');
    return found;
  }

  /**
   * Changes a chunk and bumps its version. Returns the updated chunk, `null` when no
   * such row is visible, or `'version_mismatch'` when `ifVersion` is stale.
   */
  async update(id: string, patch: ChunkPatch): Promise<Chunk | null | 'version_mismatch'> {
    if (!isChunkId(id)) return null;
    const sets: string[] = [];
    const params: unknown[] = [id, this.scope.tenantId, this.scope.userHash];
    const set = (column: string, value: unknown, cast = '') => {
      params.push(value);
      sets.push(`${column} = $${params.length}${cast}`);
    };
    if (patch.ciphertext) set('ciphertext', patch.ciphertext);
    if (patch.keyId) set('key_id', patch.keyId);
    if (patch.embedding) {
      set('embedding', toSqlVector(patch.embedding, this.dim), '::vector');
      set('vector_key', patch.vectorKey ?? null, '::int');
    }
    if (patch.embedderId) set('embedder_id', patch.embedderId);
    if (patch.metadata) set('metadata', JSON.stringify(patch.metadata), '::jsonb');
    if (patch.expiresAt !== undefined) set('expires_at', patch.expiresAt?.toISOString() ?? null, '::timestamptz');
    let guard = '';
    if (patch.ifVersion !== undefined) {
      params.push(patch.ifVersion);
      guard = `AND version = $${params.length}`;
    }
    const res = await this.sql.query<ChunkRecord>(
      `UPDATE memory_chunks SET ${[...sets, 'version = version + 1', 'updated_at = now()'].join(', ')}
       WHERE id = $1 AND tenant_id = $2 AND user_hash = $3 AND ${LIVE} ${guard}
       RETURNING ${COLUMNS}`,
      params,
    );
    const row = res.rows[0];
    if (row) return toChunk(row);
    if (patch.ifVersion !== undefined && (await this.get(id))) return 'version_mismatch';
    return null;
  }

  /** Removes one chunk; false when no such row is visible. */
  async delete(id: string): Promise<boolean> {
    if (!isChunkId(id)) return false;
    const res = await this.sql.query(
      'DELETE FROM memory_chunks WHERE id = $1 AND tenant_id = $2 AND user_hash = $3',
      [id, this.scope.tenantId, this.scope.userHash],
    );
    return res.rowCount > 0;
  }

  /**
   * Erasure: every chunk of this user in this tenant, expired ones included, and the user's
   * idempotency keys (their stored responses name chunk ids). Returns how many chunks.
   */
  async deleteAll(): Promise<number> {
    const scope = [this.scope.tenantId, this.scope.userHash];
    const res = await this.sql.query('DELETE FROM memory_chunks WHERE tenant_id = $1 AND user_hash = $2', scope);
    await this.sql.query('DELETE FROM idempotency_keys WHERE tenant_id = $1 AND user_hash = $2', scope);
    return res.rowCount;
  }

  /**
   * The k nearest live chunks by cosine distance: always min(k, live chunks in scope that match
   * `opts`). A plain vector is compared with every row as it is stored.
   */
  async search(embedding: ArrayLike<number> | SearchVectors, k: number, opts: SearchOptions = {}): Promise<SearchOutcome> {
    if (!Number.isInteger(k) || k < 1 || k > 1000) throw new RangeError('k must be an integer in 1..1000');
    let query: QueryVectors;
    // Binary where the driver sends it so (the server): no formatting here, no parsing there.
    const param = this.sql.binaryParams ? toBinaryVector : toSqlVector;
    if ('primary' in embedding && embedding.others.length > 0) {
      const others = embedding.others;
      let params: Array<{ key: number | null; vector: string | Buffer }> | undefined;
      query = {
        primary: { key: embedding.primary.key, vector: param(embedding.primary.vector, this.dim) },
        others: () => (params ??= others.map((o) => ({ key: o.key, vector: param(o.vector, this.dim) }))),
      };
    } else {
      // One space only: rows are compared as stored, nothing checks their spaces.
      const only = 'primary' in embedding ? embedding.primary : { key: null, vector: embedding };
      query = { primary: { key: only.key, vector: param(only.vector, this.dim) } };
    }
    const { embedderId, filter } = opts;
    const where: Predicate | undefined =
      embedderId === undefined && !filter
        ? undefined
        : (first) => {
            const parts: string[] = [];
            const params: unknown[] = [];
            if (embedderId !== undefined) {
              params.push(embedderId);
              parts.push(`embedder_id = $${first}`);
            }
            if (filter) {
              const f = filter(first + params.length);
              parts.push(`(${f.sql})`);
              params.push(...f.params);
            }
            return { sql: parts.join(' AND '), params };
          };
    const started = process.hrtime.bigint();
    if (this.searchDelayMs > 0) await this.sql.query('SELECT pg_sleep($1)', [this.searchDelayMs / 1000]);
    const { neighbours, strategy } = await nearestInScope<ChunkRecord>(
      this.sql, COLUMNS, this.dim, this.scope.tenantId, this.scope.userHash, query, k, this.tuning, where, !filter,
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // The index answered alone with fewer than k: only possible if a search path lost rows
    // (every short HNSW answer is settled by the exact search). A tripwire that should stay 0.
    this.onSearch?.(seconds, strategy, strategy === 'hnsw' && neighbours.length < k);
    const hits = neighbours.map((n) => Object.assign(toChunk(n.row), { distance: n.distance }));
    return { hits, strategy, seconds };
  }
}

import { CryptoError, type Keyring, type OpenFailureReason } from '../crypto/index.ts';
import type { Embedder } from '../embed/index.ts';
import { tableEmbeddingDim, toSqlVector, type Driver } from '../store/index.ts';
import { textContext } from './sealed-memory.ts';
import { VectorSpace } from './vector-space.ts';

export interface ReindexProgress {
  done: number;
  total: number;
  skipped: number;
}

export interface ReindexReport extends ReindexProgress {
  /** The embedder every re-embedded row is under now. */
  embedderId: string;
  failures: Partial<Record<OpenFailureReason, number>>;
}

export interface ReindexOptions {
  /** Rows opened, embedded and written per transaction. Default 200. */
  batchSize?: number;
  onProgress?: (p: ReindexProgress) => void;
  /** Stops between batches (and aborts an embedding call in flight); the run rejects with its reason. Default none. */
  signal?: AbortSignal;
  /** RELAY_VECTOR_TRANSFORM: new vectors under their row's keyed transform (true, the default) or as the model made them. */
  vectorTransform?: boolean;
}

/**
 * `relay reindex`: re-embeds, with `embedder`, every row of the tenant whose `embedder_id` is
 * another one — in batches, each opened, embedded and written in its own transaction, as the
 * maintenance login. Resumable by construction: `embedder_id` says whether a row is done, so a
 * run cut short just starts again on what is left. Only the embedding, its vector key and embedder_id change
 * (not `version`: the memory itself did not). A row changed meanwhile (ciphertext or embedder
 * compared in the UPDATE) is left for the next run; a row that does not open is counted and
 * left as it is.
 */
export async function reindexTenant(driver: Driver, keyring: Keyring, embedder: Embedder, tenantId: string, opts: ReindexOptions = {}): Promise<ReindexReport> {
  const batchSize = opts.batchSize ?? 200;
  const report: ReindexReport = { done: 0, total: 0, skipped: 0, embedderId: embedder.id, failures: {} };
  const counted = await driver.ownerTransaction((sql) =>
    sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1 AND embedder_id <> $2', [tenantId, embedder.id]),
  );
  report.total = counted.rows[0]?.n ?? 0;
  opts.onProgress?.({ done: 0, total: report.total, skipped: 0 });
  // Each new vector goes where a write of the row's text would put it: under the transform of
  // the key that sealed the text (and of its user), or as it is with the transform off.
  const space = new VectorSpace(keyring, await tableEmbeddingDim(driver), opts.vectorTransform ?? true);
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    opts.signal?.throwIfAborted();
    const batch = await driver.ownerTransaction((sql) =>
      sql.query<{ id: string; user_hash: Uint8Array; ciphertext: Uint8Array; embedder_id: string }>(
        `SELECT id, user_hash, ciphertext, embedder_id FROM memory_chunks
          WHERE tenant_id = $1 AND embedder_id <> $2 AND id > $3 ORDER BY id LIMIT $4`,
        [tenantId, embedder.id, after, batchSize],
      ),
    );
    if (batch.rows.length === 0) break;
    after = batch.rows[batch.rows.length - 1]!.id;
    const opened: Array<{ id: string; userHash: Buffer; ciphertext: Buffer; from: string; text: string }> = [];
    for (const row of batch.rows) {
      const ciphertext = Buffer.from(row.ciphertext);
      try {
        const userHash = Buffer.from(row.user_hash);
        const plain = await keyring.openSealed(ciphertext, textContext({ tenantId, userHash }, row.id));
        opened.push({ id: row.id, userHash, ciphertext, from: row.embedder_id, text: plain.toString('utf8') });
        plain.fill(0);
      } catch (err) {
        if (!(err instanceof CryptoError)) throw err;
        report.skipped++;
        report.failures[err.reason] = (report.failures[err.reason] ?? 0) + 1;
      }
    }
    if (opened.length > 0) {
      const vectors = await embedder.embed(opened.map((o) => o.text), { signal: opts.signal });
      const stored = await Promise.all(opened.map((o, i) => space.forRow({ tenantId, userHash: o.userHash }, o.ciphertext, vectors[i]!)));
      await driver.ownerTransaction(async (sql) => {
        for (const [i, o] of opened.entries()) {
          const s = stored[i]!;
          const res = await sql.query(
            'UPDATE memory_chunks SET embedding = $2::vector, vector_key = $6::int, embedder_id = $3 WHERE id = $1 AND ciphertext = $4 AND embedder_id = $5',
            [o.id, toSqlVector(s.vector, s.vector.length), embedder.id, o.ciphertext, o.from, s.key],
          );
          report.done += res.rowCount;
        }
      });
    }
    opts.onProgress?.({ done: report.done, total: report.total, skipped: report.skipped });
  }
  return report;
}

import type { Driver } from './sql-client.ts';

export interface SweepOptions {
  /**
   * The fleet's turn: the sweep runs only when the last turn (any replica's) began at least this
   * long ago, ms. Default 0 (whenever no other replica is sweeping right now).
   */
  minGapMs?: number;
  /** Rows of each kind deleted per transaction; default 1000. */
  batch?: number;
  /** Transactions per sweep at most (what is left waits for the next turn); default 100. */
  maxRounds?: number;
}

export interface SweepResult {
  /** False: another replica is sweeping, or took this turn (nothing was done). */
  ran: boolean;
  chunks: number;
  idempotencyKeys: number;
}

const BATCH_MAX = 100_000;

/**
 * One turn of the expiry sweep (`relay_purge_expired`, migration 0003) for the fleet: on a server
 * database, one replica at a time takes the turn (`relay_sweep_turn`, migration 0005) and the
 * others skip it. Each round is one transaction that first takes the turn, so the advisory lock
 * that keeps other sweepers out is transaction-level: it lives on the server connection only as
 * long as the round's transaction, which is all that PgBouncer in transaction mode keeps on one
 * server connection (a session-level lock would stay with a pooled connection that other clients'
 * transactions then run on, or be released on the wrong one). The first round needs the gap since
 * the last turn; the next ones (a backlog bigger than a batch) only the lock, and each renews the
 * turn, so nobody else starts while this sweep goes on.
 *
 * The embedded store's data folder admits one process: there the sweep always runs.
 */
export async function sweepExpired(driver: Driver, opts: SweepOptions = {}): Promise<SweepResult> {
  const batch = opts.batch ?? 1000;
  const maxRounds = opts.maxRounds ?? 100;
  const minGapMs = Math.round(opts.minGapMs ?? 0);
  if (!Number.isInteger(batch) || batch < 1 || batch > BATCH_MAX) throw new RangeError(`batch must be in 1..${BATCH_MAX}`);
  if (!Number.isInteger(maxRounds) || maxRounds < 1) throw new RangeError('maxRounds must be at least 1');
  if (!Number.isFinite(minGapMs) || minGapMs < 0 || minGapMs > 86_400_000) throw new RangeError('minGapMs must be in 0..86400000');
  const fleet = driver.kind === 'pg';
  const result: SweepResult = { ran: false, chunks: 0, idempotencyKeys: 0 };
  for (let round = 0; round < maxRounds; round++) {
    const purged = await driver.appTransaction([], async (sql) => {
      if (fleet) {
        const turn = await sql.query<{ ok: boolean }>('SELECT relay_sweep_turn($1) AS ok', [round === 0 ? minGapMs : 0]);
        if (turn.rows[0]?.ok !== true) return null;
      }
      const res = await sql.query<{ chunks: number; idempotency_keys: number }>('SELECT chunks, idempotency_keys FROM relay_purge_expired($1)', [batch]);
      return { chunks: res.rows[0]?.chunks ?? 0, idempotencyKeys: res.rows[0]?.idempotency_keys ?? 0 };
    });
    if (purged === null) break;
    result.ran = true;
    result.chunks += purged.chunks;
    result.idempotencyKeys += purged.idempotencyKeys;
    if (purged.chunks < batch && purged.idempotencyKeys < batch) break;
  }
  return result;
}

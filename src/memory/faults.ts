import { setTimeout as sleep } from 'node:timers/promises';
import type { Faults } from '../config/index.ts';
import type { SealedMemory } from './sealed-memory.ts';

/** The query-path part of RELAY_FAULTS (tests only; refused in production by the config). */
export type QueryFaults = Pick<Faults, 'ttfvDelayMs' | 'rlsErrorRate' | 'sseErrorRate' | 'sseErrorEvery'>;

/** A failure RELAY_FAULTS asked for: answered as `internal`, like any unexpected error. */
export class InjectedFault extends Error {
  override readonly name = 'InjectedFault';
}

const hit = (rate: number) => rate > 0 && Math.random() < rate;

/**
 * Before the search, with `rlsErrorRate`: the query also tries to insert a row for another
 * tenant inside its own scope. The database's RLS refuses it for real, the store counts it in
 * `relay_rls_errors_total`, and the query fails with it, as a query meeting a real RLS bug would.
 */
export async function rlsFault(faults: QueryFaults, memory: SealedMemory, tenantId: string, userId: string): Promise<void> {
  if (!hit(faults.rlsErrorRate)) return;
  const scope = await memory.scope(tenantId, userId);
  const vector = `[${new Array(memory.store.embeddingDim).fill(0).join(',')}]`;
  await memory.store.withScopeSql(scope, (sql) =>
    sql.query(
      "INSERT INTO memory_chunks (id, tenant_id, user_hash, ciphertext, key_id, embedding, embedder_id) VALUES (gen_random_uuid(), $1, $2, '\\x00', 'fault', $3::vector, 'fault')",
      [`${tenantId}\u0001fault`, scope.userHash, vector],
    ),
  );
}

/**
 * After the search, before the first result: `ttfvDelayMs` of waiting (abortable), then a failed
 * stream at `sseErrorRate`, or when this is the process's `sseErrorEvery`-th query (`nth`, from 1).
 */
export async function firstResultFault(faults: QueryFaults, nth: number, signal?: AbortSignal): Promise<void> {
  if (faults.ttfvDelayMs > 0) await sleep(faults.ttfvDelayMs, undefined, signal ? { signal } : {});
  if (hit(faults.sseErrorRate)) throw new InjectedFault('injected fault: RELAY_FAULTS sse_error_rate');
  if (faults.sseErrorEvery > 0 && nth % faults.sseErrorEvery === 0) throw new InjectedFault('injected fault: RELAY_FAULTS sse_error_every');
}

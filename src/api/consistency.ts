import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { InvalidConsistencyTokenError, type MemoryService } from '../memory/index.ts';
import { badRequest, ErrorCode } from './errors.ts';

/**
 * Read-your-writes across a hot standby (docs/scaling.md): every successful write, patch, delete
 * and erasure answers a `Relay-Consistency` token; a read (query, get, list) that sends the
 * latest one back sees those writes.
 */
export const CONSISTENCY_HEADER = 'relay-consistency';

export const ConsistencyToken = z
  .string()
  .meta({ description: 'the latest Relay-Consistency token a write answered: this read then sees that write (docs/scaling.md); a token this API did not give out to the tenant is 400 invalid_consistency_token' });

export const ConsistencyAnswer = z
  .string()
  .meta({ description: 'an opaque token for the WAL position past this write: send it back as Relay-Consistency on reads that must see it' });

/** The WAL position a read must see, from its Relay-Consistency header; undefined without one. */
export async function readPosition(req: FastifyRequest, memory: MemoryService, tenantId: string): Promise<bigint | undefined> {
  const header = req.headers[CONSISTENCY_HEADER];
  if (header === undefined) return undefined;
  try {
    if (typeof header !== 'string') throw new InvalidConsistencyTokenError();
    return await memory.readPosition(tenantId, header);
  } catch (err) {
    if (err instanceof InvalidConsistencyTokenError) throw badRequest(ErrorCode.InvalidConsistencyToken, err.message);
    throw err;
  }
}

/** Adds the Relay-Consistency token of what has been written so far (none when the primary cannot say). */
export async function answerConsistency(reply: FastifyReply, memory: MemoryService, tenantId: string): Promise<void> {
  const token = await memory.consistencyToken(tenantId);
  if (token !== null) reply.header(CONSISTENCY_HEADER, token);
}

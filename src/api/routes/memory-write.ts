import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiDeps } from '../context.ts';
import { ErrorCode } from '../errors.ts';
import { WriteAnswer } from '../responses.ts';
import { API_ERRORS, BODY_ERRORS, documented, EMBED_ERRORS } from '../route-docs.ts';
import { IdempotencyKey, idempotencyKey, parse, WriteBody } from '../schemas.ts';
import { actingFor } from '../scope.ts';
import { abortOnClose } from '../abort.ts';
import { answerConsistency, ConsistencyAnswer } from '../consistency.ts';

const doc = documented({
  operationId: 'addMemory',
  summary: 'Store memory: text (split into chunks) or chunks as given',
  description: 'Embeds, seals and inserts every chunk in one transaction. With Idempotency-Key, a retry of the same request returns the first answer (idempotent-replayed: true) and writes nothing.',
  tag: 'memory',
  bearer: 'required',
  body: WriteBody,
  headers: { 'Idempotency-Key': IdempotencyKey },
  answers: { 201: { description: 'stored', json: WriteAnswer, headers: { 'idempotent-replayed': z.enum(['true', 'false']).meta({ description: 'with an Idempotency-Key: whether this is the first answer again' }), 'Relay-Consistency': ConsistencyAnswer } } },
  errors: [...API_ERRORS, ...BODY_ERRORS, ...EMBED_ERRORS, ErrorCode.InvalidHeader, ErrorCode.IdempotencyKeyReused],
});

/** POST /api/v1/memory: split, embed, seal, insert in one transaction → 201 {ids}. */
export function memoryWriteRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.post('/api/v1/memory', doc, async (req, reply) => {
    let replayed = false;
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      deps.metrics.api.write(status === 201 ? (replayed ? 'replayed' : 'success') : status < 500 ? 'rejected' : 'error');
    });
    const body = parse(WriteBody, req.body);
    const key = idempotencyKey(req.headers['idempotency-key']);
    const who = actingFor(req, deps.metrics, { userId: body.user_id, tenantId: body.tenant_id }, deps.scopeChecks);
    const out = await deps.memory.write(
      who.tenantId,
      who.userId,
      { text: body.text, chunks: body.chunks, metadata: body.metadata, ttlS: body.ttl_s },
      { idempotencyKey: key, signal: abortOnClose(req, reply) },
    );
    replayed = out.replayed;
    if (key !== undefined) reply.header('idempotent-replayed', String(out.replayed));
    await answerConsistency(reply, deps.memory, who.tenantId);
    return reply.code(201).send({ ids: out.ids } satisfies WriteAnswer);
  });
}

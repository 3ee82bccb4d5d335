import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../context.ts';
import { idempotencyKey, parse, WriteBody } from '../schemas.ts';
import { actingFor } from '../scope.ts';
import { abortOnClose } from '../abort.ts';

/** POST /api/v1/memory: split, embed, seal, insert in one transaction → 201 {ids}. */
export function memoryWriteRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.post('/api/v1/memory', async (req, reply) => {
    let replayed = false;
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      deps.metrics.api.write(status === 201 ? (replayed ? 'replayed' : 'success') : status < 500 ? 'rejected' : 'error');
    });
    const body = parse(WriteBody, req.body);
    const key = idempotencyKey(req.headers['idempotency-key']);
    const who = actingFor(req, deps.metrics, { userId: body.user_id, tenantId: body.tenant_id });
    const out = await deps.memory.write(
      who.tenantId,
      who.userId,
      { text: body.text, chunks: body.chunks, metadata: body.metadata, ttlS: body.ttl_s },
      { idempotencyKey: key, signal: abortOnClose(req, reply) },
    );
    replayed = out.replayed;
    if (key !== undefined) reply.header('idempotent-replayed', String(out.replayed));
    return reply.code(201).send({ ids: out.ids });
  });
}

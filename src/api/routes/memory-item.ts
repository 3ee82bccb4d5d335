import type { FastifyInstance } from 'fastify';
import { CryptoError } from '../../crypto/index.ts';
import { isChunkId } from '../../store/index.ts';
import { abortOnClose } from '../abort.ts';
import type { ApiDeps } from '../context.ts';
import { ApiError, ErrorCode, notFound } from '../errors.ts';
import { chunkBody, etag, updatedBody } from '../present.ts';
import { ifMatch, ItemQuery, parse, PatchBody } from '../schemas.ts';
import { actingFor } from '../scope.ts';

type ItemParams = { Params: { id: string } };

/** GET, PATCH and DELETE /api/v1/memory/:id. An id that is not a UUID names nothing: 404. */
export function memoryItemRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get<ItemParams>('/api/v1/memory/:id', async (req, reply) => {
    const q = parse(ItemQuery, req.query);
    const who = actingFor(req, deps.metrics, { userId: q.user_id, tenantId: q.tenant_id });
    if (!isChunkId(req.params.id)) throw notFound();
    let chunk;
    try {
      chunk = await deps.memory.get(who.tenantId, who.userId, req.params.id);
    } catch (err) {
      // Moved, tampered or its key destroyed: counted by the keyring, and for this caller it is not there.
      if (err instanceof CryptoError) throw notFound();
      throw err;
    }
    if (!chunk) throw notFound();
    return reply.header('etag', etag(chunk.version)).send(chunkBody(chunk));
  });

  app.patch<ItemParams>('/api/v1/memory/:id', async (req, reply) => {
    const body = parse(PatchBody, req.body);
    const version = ifMatch(req.headers['if-match']);
    const who = actingFor(req, deps.metrics, { userId: body.user_id, tenantId: body.tenant_id });
    if (!isChunkId(req.params.id)) throw notFound();
    const updated = await deps.memory.update(
      who.tenantId,
      who.userId,
      req.params.id,
      { text: body.text, metadata: body.metadata, ifVersion: version },
      abortOnClose(req, reply),
    );
    if (updated === 'version_mismatch') throw new ApiError(412, ErrorCode.VersionMismatch, 'the chunk changed since that version; GET it again');
    if (!updated) throw notFound();
    return reply.header('etag', etag(updated.version)).send(updatedBody(updated));
  });

  app.delete<ItemParams>('/api/v1/memory/:id', async (req, reply) => {
    const q = parse(ItemQuery, req.query);
    const who = actingFor(req, deps.metrics, { userId: q.user_id, tenantId: q.tenant_id });
    if (!isChunkId(req.params.id)) throw notFound();
    if (!(await deps.memory.delete(who.tenantId, who.userId, req.params.id))) throw notFound();
    return reply.code(204).send();
  });
}

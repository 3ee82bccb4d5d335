import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { CryptoError } from '../../crypto/index.ts';
import { isChunkId } from '../../store/index.ts';
import { abortOnClose } from '../abort.ts';
import { answerConsistency, ConsistencyAnswer, ConsistencyToken, readPosition } from '../consistency.ts';
import type { ApiDeps } from '../context.ts';
import { ApiError, ErrorCode, notFound } from '../errors.ts';
import { chunkBody, etag, updatedBody } from '../present.ts';
import { ChunkAnswer, UpdatedAnswer } from '../responses.ts';
import { API_ERRORS, BODY_ERRORS, documented, EMBED_ERRORS, IGNORED_BODY_ERRORS, PATH_ERRORS } from '../route-docs.ts';
import { IfMatch, ifMatch, ItemParams, ItemQuery, parse, PatchBody } from '../schemas.ts';
import { actingFor } from '../scope.ts';

type Params = { Params: z.infer<typeof ItemParams> };

const ETag = z.string().meta({ description: 'the chunk version as an entity tag, for If-Match' });

const getDoc = documented({
  operationId: 'getMemory',
  summary: 'One chunk',
  description: 'Not a UUID, not in the caller\'s scope, expired or not openable: 404.',
  tag: 'memory',
  bearer: 'required',
  params: ItemParams,
  query: ItemQuery,
  headers: { 'Relay-Consistency': ConsistencyToken },
  answers: { 200: { description: 'the chunk', json: ChunkAnswer, headers: { ETag } } },
  errors: [...API_ERRORS, ...PATH_ERRORS, ErrorCode.NotFound, ErrorCode.InvalidConsistencyToken],
});

const patchDoc = documented({
  operationId: 'updateMemory',
  summary: 'Change a chunk\'s text, metadata and/or expiry',
  description: 'New text is re-embedded and re-sealed in the same transaction; metadata is replaced as a whole; ttl_s sets a new expiry from now, null removes it (an expired chunk is gone: 404). If-Match makes concurrent edits safe.',
  tag: 'memory',
  bearer: 'required',
  params: ItemParams,
  body: PatchBody,
  headers: { 'If-Match': IfMatch },
  answers: { 200: { description: 'the new version', json: UpdatedAnswer, headers: { ETag, 'Relay-Consistency': ConsistencyAnswer } } },
  errors: [...API_ERRORS, ...BODY_ERRORS, ...EMBED_ERRORS, ErrorCode.InvalidHeader, ErrorCode.NotFound, ErrorCode.VersionMismatch],
});

const deleteDoc = documented({
  operationId: 'deleteMemory',
  summary: 'Delete a chunk',
  tag: 'memory',
  bearer: 'required',
  params: ItemParams,
  query: ItemQuery,
  answers: { 204: { description: 'deleted', headers: { 'Relay-Consistency': ConsistencyAnswer } } },
  errors: [...API_ERRORS, ...PATH_ERRORS, ...IGNORED_BODY_ERRORS, ErrorCode.NotFound],
});

/** GET, PATCH and DELETE /api/v1/memory/:id. An id that is not a UUID names nothing: 404. */
export function memoryItemRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get<Params>('/api/v1/memory/:id', getDoc, async (req, reply) => {
    const q = parse(ItemQuery, req.query);
    const who = actingFor(req, deps.metrics, { userId: q.user_id, tenantId: q.tenant_id }, deps.scopeChecks);
    if (!isChunkId(req.params.id)) throw notFound();
    const after = await readPosition(req, deps.memory, who.tenantId);
    let chunk;
    try {
      chunk = await deps.memory.get(who.tenantId, who.userId, req.params.id, after);
    } catch (err) {
      // Moved, tampered or its key destroyed: counted by the keyring, and for this caller it is not there.
      // A shredded tenant is answered 410 (the error handler), like every other route.
      if (err instanceof CryptoError && err.reason !== 'key_shredded') throw notFound();
      throw err;
    }
    if (!chunk) throw notFound();
    return reply.header('etag', etag(chunk.version)).send(chunkBody(chunk));
  });

  app.patch<Params>('/api/v1/memory/:id', patchDoc, async (req, reply) => {
    const body = parse(PatchBody, req.body);
    const version = ifMatch(req.headers['if-match']);
    const who = actingFor(req, deps.metrics, { userId: body.user_id, tenantId: body.tenant_id }, deps.scopeChecks);
    if (!isChunkId(req.params.id)) throw notFound();
    const updated = await deps.memory.update(
      who.tenantId,
      who.userId,
      req.params.id,
      { text: body.text, metadata: body.metadata, ttlS: body.ttl_s, ifVersion: version },
      abortOnClose(req, reply),
    );
    if (updated === 'version_mismatch') throw new ApiError(412, ErrorCode.VersionMismatch, 'the chunk changed since that version; GET it again');
    if (!updated) throw notFound();
    await answerConsistency(reply, deps.memory, who.tenantId);
    return reply.header('etag', etag(updated.version)).send(updatedBody(updated));
  });

  app.delete<Params>('/api/v1/memory/:id', deleteDoc, async (req, reply) => {
    const q = parse(ItemQuery, req.query);
    const who = actingFor(req, deps.metrics, { userId: q.user_id, tenantId: q.tenant_id }, deps.scopeChecks);
    if (!isChunkId(req.params.id)) throw notFound();
    if (!(await deps.memory.delete(who.tenantId, who.userId, req.params.id))) throw notFound();
    await answerConsistency(reply, deps.memory, who.tenantId);
    return reply.code(204).send();
  });
}

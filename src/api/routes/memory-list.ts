import type { FastifyInstance } from 'fastify';
import { ConsistencyToken, readPosition } from '../consistency.ts';
import type { ApiDeps } from '../context.ts';
import { InvalidCursorError } from '../../memory/index.ts';
import { badRequest, ErrorCode } from '../errors.ts';
import { chunkBody } from '../present.ts';
import { ListAnswer } from '../responses.ts';
import { API_ERRORS, documented } from '../route-docs.ts';
import { ListQuery, parse } from '../schemas.ts';
import { actingFor } from '../scope.ts';

const doc = documented({
  operationId: 'listMemory',
  summary: 'List a user\'s chunks, newest first, a page at a time',
  description: 'The cursor is opaque and authenticated for the user and tenant it was given to: an edited or forged one, or another user\'s, is 400 invalid_cursor.',
  tag: 'memory',
  bearer: 'required',
  query: ListQuery,
  headers: { 'Relay-Consistency': ConsistencyToken },
  answers: { 200: { description: 'one page', json: ListAnswer } },
  errors: [...API_ERRORS, ErrorCode.InvalidCursor, ErrorCode.InvalidConsistencyToken],
});

/** GET /api/v1/memory?user_id=…&limit=…&cursor=…: newest first, a page at a time. */
export function memoryListRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/api/v1/memory', doc, async (req, reply) => {
    const q = parse(ListQuery, req.query);
    const who = actingFor(req, deps.metrics, { userId: q.user_id, tenantId: q.tenant_id }, deps.scopeChecks);
    const after = await readPosition(req, deps.memory, who.tenantId);
    let page;
    try {
      page = await deps.memory.list(who.tenantId, who.userId, q.limit, q.cursor, after);
    } catch (err) {
      if (err instanceof InvalidCursorError) throw badRequest(ErrorCode.InvalidCursor, err.message);
      throw err;
    }
    return reply.send({
      items: page.items.map(chunkBody),
      next_cursor: page.next,
      skipped: page.skipped.length,
    } satisfies ListAnswer);
  });
}

import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../context.ts';
import { ErrorCode } from '../errors.ts';
import { chunkBody } from '../present.ts';
import { ListAnswer } from '../responses.ts';
import { API_ERRORS, documented } from '../route-docs.ts';
import { decodeCursor, encodeCursor, ListQuery, parse } from '../schemas.ts';
import { actingFor } from '../scope.ts';

const doc = documented({
  summary: 'List a user\'s chunks, newest first, a page at a time',
  tag: 'memory',
  bearer: 'required',
  query: ListQuery,
  answers: { 200: { description: 'one page', json: ListAnswer } },
  errors: [...API_ERRORS, ErrorCode.InvalidCursor],
});

/** GET /api/v1/memory?user_id=…&limit=…&cursor=…: newest first, a page at a time. */
export function memoryListRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/api/v1/memory', doc, async (req, reply) => {
    const q = parse(ListQuery, req.query);
    const who = actingFor(req, deps.metrics, { userId: q.user_id, tenantId: q.tenant_id }, deps.scopeChecks);
    const before = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    const page = await deps.memory.list(who.tenantId, who.userId, q.limit, before);
    return reply.send({
      items: page.items.map(chunkBody),
      next_cursor: page.next ? encodeCursor(page.next) : null,
      skipped: page.skipped.length,
    } satisfies ListAnswer);
  });
}

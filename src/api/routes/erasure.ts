import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../context.ts';
import { ItemQuery, parse, UserId } from '../schemas.ts';
import { actingFor } from '../scope.ts';

/** DELETE /api/v1/users/:user_id/memory: erasure of every chunk of that user in the token's tenant. */
export function erasureRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.delete<{ Params: { user_id: string } }>('/api/v1/users/:user_id/memory', async (req, reply) => {
    const q = parse(ItemQuery.omit({ user_id: true }), req.query);
    const userId = parse(UserId, req.params.user_id);
    const who = actingFor(req, deps.metrics, { userId, tenantId: q.tenant_id });
    const deleted = await deps.memory.erase(who.tenantId, who.userId);
    return reply.send({ deleted });
  });
}

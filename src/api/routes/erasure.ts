import type { FastifyInstance } from 'fastify';
import { answerConsistency, ConsistencyAnswer } from '../consistency.ts';
import type { ApiDeps } from '../context.ts';
import { ErrorCode } from '../errors.ts';
import { ErasureAnswer } from '../responses.ts';
import { API_ERRORS, documented, IGNORED_BODY_ERRORS, PATH_ERRORS } from '../route-docs.ts';
import { ErasureParams, ItemQuery, parse } from '../schemas.ts';
import { actingFor } from '../scope.ts';

const TenantOnly = ItemQuery.omit({ user_id: true });

const doc = documented({
  operationId: 'eraseUserMemory',
  summary: 'Erase every chunk of a user in the token\'s tenant',
  description: 'Expired chunks and the user\'s idempotency keys included. For a shredded tenant it succeeds too, deleting every row left of the tenant (whose users can no longer be told apart).',
  tag: 'memory',
  bearer: 'required',
  params: ErasureParams,
  query: TenantOnly,
  answers: { 200: { description: 'erased', json: ErasureAnswer, headers: { 'Relay-Consistency': ConsistencyAnswer } } },
  // Never 410: erasure of a shredded tenant succeeds.
  errors: [...API_ERRORS.filter((c) => c !== ErrorCode.TenantShredded), ...PATH_ERRORS, ...IGNORED_BODY_ERRORS],
});

/** DELETE /api/v1/users/:user_id/memory: erasure of every chunk of that user in the token's tenant. */
export function erasureRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.delete('/api/v1/users/:user_id/memory', doc, async (req, reply) => {
    const q = parse(TenantOnly, req.query);
    const { user_id: userId } = parse(ErasureParams, req.params);
    const who = actingFor(req, deps.metrics, { userId, tenantId: q.tenant_id }, deps.scopeChecks);
    const deleted = await deps.memory.erase(who.tenantId, who.userId);
    await answerConsistency(reply, deps.memory, who.tenantId);
    return reply.send({ deleted } satisfies ErasureAnswer);
  });
}

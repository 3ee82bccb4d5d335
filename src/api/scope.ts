import type { FastifyRequest } from 'fastify';
import type { Principal } from '../auth/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { ApiError, ErrorCode, forbiddenScope } from './errors.ts';

export interface Acting {
  tenantId: string;
  userId: string;
}

/**
 * Which of the checks below run. Always both in the service (no setting reaches this); a test
 * turns one off to show that the isolation suites notice (test/regression).
 */
export interface ScopeChecks {
  /** A `tenant_id` the client sends must be the token's. */
  tenant: boolean;
  /** A user token acts for its own `sub` only. */
  user: boolean;
}

export const STRICT_SCOPE_CHECKS: Readonly<ScopeChecks> = Object.freeze({ tenant: true, user: true });

/**
 * Whose memory a request touches. The tenant is always the token's; a `tenant_id` the client
 * sends must match it. A user token acts for its own `sub` only; a service token for any user
 * of its tenant, named in the request. Reaching outside is 403 `forbidden_scope` and counted.
 */
export function actingFor(
  req: FastifyRequest,
  metrics: Metrics,
  named: { userId?: string; tenantId?: string },
  checks: Readonly<ScopeChecks> = STRICT_SCOPE_CHECKS,
): Acting {
  const p: Principal | null = req.principal;
  if (!p) throw new ApiError(401, ErrorCode.Unauthorized, 'an Authorization: Bearer token is required');
  if (checks.tenant && named.tenantId !== undefined && named.tenantId !== p.tenantId) {
    metrics.api.crossTenantAttempt();
    req.log.warn({ reason: 'tenant_mismatch' }, 'request outside its token scope');
    throw forbiddenScope("tenant_id is not the token's tenant");
  }
  if (p.service) {
    if (named.userId === undefined) throw new ApiError(400, ErrorCode.ValidationFailed, 'user_id is required with a service token');
    return { tenantId: p.tenantId, userId: named.userId };
  }
  if (!checks.user) return { tenantId: p.tenantId, userId: named.userId ?? p.subject };
  if (named.userId !== undefined && named.userId !== p.subject) {
    metrics.api.crossTenantAttempt();
    req.log.warn({ reason: 'user_mismatch' }, 'request outside its token scope');
    throw forbiddenScope("a user token may only act for its own user_id");
  }
  return { tenantId: p.tenantId, userId: p.subject };
}

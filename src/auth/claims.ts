import type { JWTPayload } from 'jose';
import { AuthError } from './errors.ts';

/** Who made a request, as its verified token says. */
export interface Principal {
  tenantId: string;
  subject: string;
  /** scope "service": may act for any user of its tenant */
  service: boolean;
}

export const TENANT_ID_MAX = 128;
export const SUBJECT_MAX = 256;

// Cc: C0/C1 controls (log and header injection). Cs: lone surrogates, which a u-regex only
// matches unpaired; they have no UTF-8 form, so the same id could hash differently by path.
const FORBIDDEN = /[\p{Cc}\p{Cs}]/u;

/**
 * Why `value` cannot be a tenant id or subject (`max` characters at most), or null when it can.
 * The phrase never contains the value, so it may go into an error returned to a client.
 */
export function idProblem(value: unknown, max: number): string | null {
  if (typeof value !== 'string') return 'must be a string';
  if (value.length === 0) return 'must not be empty';
  if (value.length > max) return `must be at most ${max} characters`;
  if (FORBIDDEN.test(value)) return 'must not contain control characters';
  return null;
}

/** True when an OAuth-style `scope` (one string, space-separated) grants "service". */
function hasServiceScope(scope: unknown): boolean {
  if (scope === undefined) return false;
  if (typeof scope !== 'string') throw new AuthError('bad_claims', 'claim "scope" must be a string');
  return scope.split(' ').includes('service');
}

/** The principal a verified payload names; throws `bad_claims` for anything out of shape. */
export function principalFromClaims(payload: JWTPayload): Principal {
  const tidProblem = idProblem(payload.tid, TENANT_ID_MAX);
  if (tidProblem) throw new AuthError('bad_claims', `claim "tid" ${payload.tid === undefined ? 'is missing' : tidProblem}`);
  const subProblem = idProblem(payload.sub, SUBJECT_MAX);
  if (subProblem) throw new AuthError('bad_claims', `claim "sub" ${payload.sub === undefined ? 'is missing' : subProblem}`);
  return { tenantId: payload.tid as string, subject: payload.sub as string, service: hasServiceScope(payload.scope) };
}

import type { Settings } from './sql-client.ts';

/**
 * Who a transaction acts for. Every statement on memory rows runs under one:
 * the RLS policies compare each row with these transaction-local settings.
 */
export interface Scope {
  /** From the caller's token, never from a request body alone. */
  readonly tenantId: string;
  /** Pseudonymous user id (`hmacUser(tenant, user_id)`), never the plain id. */
  readonly userHash: Buffer;
}

/** Names of the transaction-local settings the policies read. */
export const SCOPE_SETTINGS = { tenant: 'relay.tenant_id', user: 'relay.user_hash' } as const;

export class ScopeError extends Error {
  readonly code = 'invalid_scope';
}

const MAX_TENANT_ID = 128;

/** Checks a scope before it reaches the database; the database fails closed anyway. */
/** The tenant half of a scope (also all a key-catalog transaction sets). */
export function validateTenantId(tenantId: string): void {
  if (typeof tenantId !== 'string' || tenantId.length === 0 || tenantId.length > MAX_TENANT_ID) {
    throw new ScopeError(`tenant id must be 1..${MAX_TENANT_ID} characters`);
  }
  if (tenantId.includes('\0')) throw new ScopeError('tenant id contains a NUL character');
}

export function validateScope(scope: Scope): void {
  const { tenantId, userHash } = scope;
  validateTenantId(tenantId);
  if (!Buffer.isBuffer(userHash) || userHash.length < 16 || userHash.length > 64) {
    throw new ScopeError('user hash must be 16..64 bytes');
  }
}

export function scopeSettings(scope: Scope): Settings {
  validateScope(scope);
  return [
    [SCOPE_SETTINGS.tenant, scope.tenantId],
    [SCOPE_SETTINGS.user, scope.userHash.toString('hex')],
  ];
}

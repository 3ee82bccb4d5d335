import type { Scope } from '../store/index.ts';

/** Which part of a row's scope differs from the request's. */
export type ScopeMismatch = 'tenant' | 'user';

/** A row the service was about to serve for a scope it does not belong to (`relay_scope_violations_total`). */
export interface ScopeViolation {
  /** The row's id: never its text, metadata, tenant or user. */
  chunkId: string;
  mismatch: ScopeMismatch;
}

/** Called once for every row dropped by the check; must not throw. */
export type ScopeViolationHook = (violation: ScopeViolation) => void;

/**
 * The last check before a row is served: its `tenant_id` and `user_hash` must be the request's.
 * RLS already confines every statement to the scope, so this only fires when a release itself is
 * wrong (a statement run under another scope, a row mapped from the wrong result): the one signal
 * no client can cause. Cheap: a string and a 32-byte comparison per row, before any decryption.
 */
export function scopeMismatch(scope: Scope, row: { tenantId: string; userHash: Buffer }): ScopeMismatch | null {
  if (row.tenantId !== scope.tenantId) return 'tenant';
  if (!Buffer.isBuffer(row.userHash) || !row.userHash.equals(scope.userHash)) return 'user';
  return null;
}

import fc from 'fast-check';
import { BAD_AUTH, hostileString, idempotencyKeyArb, META_KEYS, META_VALUES, TENANT_SUFFIXES, USER_IDS, type BadAuth } from './hostile.ts';
import type { FilterSpec } from './model.ts';

/**
 * What the isolation fuzz generates: a world (tenants and their users) and a sequence of
 * operations on it. Operations name tenants, users and rows by index, taken modulo what exists
 * when they run, so any sub-sequence (what fast-check shrinks to) is still a valid scenario.
 */

export interface WorldSpec {
  tenants: Array<{ suffix: string; users: string[] }>;
}

/** Who calls: a user token of (tenant, user), or a service token of tenant (user null). */
export interface Actor {
  tenant: number;
  user: number | null;
  /** `valid`, or how the credential is broken. */
  auth: 'valid' | BadAuth;
}

/** Whose memory the request names. */
export interface Target {
  /** the named user id is `users[user]` of world tenant `tenant` (another tenant's user id is just a string here) */
  tenant: number;
  user: number;
  /** for a user token: leave `user_id` out (act for oneself) */
  omitUser: boolean;
  /** `tenant_id` in the request: none, the token's own, or the target's tenant (often another) */
  namedTenant: 'none' | 'own' | 'target';
  /** name the actor's own tenant and user (a service token: a user of its own tenant) instead */
  aligned: boolean;
}

export type SqlReadVariant = 'scoped' | 'other_tenant_same_hash' | 'forged_tenant' | 'no_scope' | 'bad_hash';
export type SqlWriteVariant = 'insert_other_tenant' | 'insert_sibling' | 'move_own_to_other' | 'move_own_to_sibling' | 'move_all_to_other' | 'move_all_to_sibling' | 'update_all' | 'delete_foreign' | 'delete_all';
/** Raw SQL as app_user on the other tables under RLS: the key catalog, the shred marks, idempotency keys. */
export type SqlCatalogVariant = 'key_read' | 'key_for_other_tenant' | 'key_for_shredded' | 'idem_for_other' | 'idem_delete_all';

export type Op =
  | { kind: 'write'; actor: Actor; target: Target; pieces: string[]; meta: [string, string]; idem: string | null; replayPrevious: boolean }
  | { kind: 'query'; actor: Actor; target: Target; text: string; topK: number; filter: FilterSpec | null; sse: boolean; rerank: 'auto' | 'off' }
  | { kind: 'get'; actor: Actor; target: Target; row: number; own: boolean }
  | { kind: 'patch'; actor: Actor; target: Target; row: number; own: boolean; meta: [string, string] }
  | { kind: 'list'; actor: Actor; target: Target }
  | { kind: 'delete'; actor: Actor; target: Target; row: number; own: boolean }
  | { kind: 'erase'; actor: Actor; target: Target }
  | { kind: 'reindex'; tenant: number; switchEmbedder: boolean }
  | { kind: 'sql_read'; tenant: number; user: number; variant: SqlReadVariant; forged: string }
  | { kind: 'sql_write'; tenant: number; user: number; variant: SqlWriteVariant; other: number; row: number }
  | { kind: 'sql_catalog'; tenant: number; user: number; variant: SqlCatalogVariant; other: number }
  | { kind: 'tamper'; how: 'copy_ciphertext' | 'move_row'; row: number; to: number; toTenant: number; toUser: number };

const idx = fc.nat({ max: 1000 });
/** Aim at a row of the acting scope (when it has one) rather than at any row ever written. */
const ownArb = fc.constantFrom(true, true, true, false);

export const worldArb: fc.Arbitrary<WorldSpec> = fc.record({
  tenants: fc.array(
    fc.record({
      suffix: fc.constantFrom(...TENANT_SUFFIXES),
      users: fc.uniqueArray(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...USER_IDS) }, { weight: 1, arbitrary: hostileString(10) }), { minLength: 2, maxLength: 4 }),
    }),
    { minLength: 2, maxLength: 3 },
  ),
});

const actorArb: fc.Arbitrary<Actor> = fc.record({
  tenant: idx,
  user: fc.option(idx, { freq: 3, nil: null }),
  auth: fc.oneof({ weight: 12, arbitrary: fc.constant('valid' as const) }, { weight: 1, arbitrary: fc.constantFrom(...BAD_AUTH) }),
});

const targetArb: fc.Arbitrary<Target> = fc.record({
  tenant: idx,
  user: idx,
  omitUser: fc.boolean(),
  namedTenant: fc.constantFrom('none', 'none', 'own', 'target'),
  aligned: fc.boolean(),
});

const metaArb: fc.Arbitrary<[string, string]> = fc.tuple(fc.constantFrom(...META_KEYS), fc.constantFrom(...META_VALUES));

const filterArb: fc.Arbitrary<FilterSpec> = fc.oneof(
  fc.record({ op: fc.constant('eq' as const), key: fc.constantFrom(...META_KEYS), value: fc.constantFrom(...META_VALUES) }),
  fc.record({ op: fc.constant('ne' as const), key: fc.constantFrom(...META_KEYS), value: fc.constantFrom(...META_VALUES) }),
  fc.record({ op: fc.constant('in' as const), key: fc.constantFrom(...META_KEYS), values: fc.uniqueArray(fc.constantFrom(...META_VALUES), { minLength: 1, maxLength: 3 }) }),
);

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      actor: actorArb,
      target: targetArb,
      pieces: fc.array(hostileString(24), { minLength: 1, maxLength: 2 }),
      meta: metaArb,
      idem: fc.option(idempotencyKeyArb, { freq: 2 }),
      replayPrevious: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('query' as const),
      actor: actorArb,
      target: targetArb,
      text: hostileString(30),
      topK: fc.integer({ min: 1, max: 12 }),
      filter: fc.option(filterArb, { freq: 2 }),
      sse: fc.boolean(),
      rerank: fc.constantFrom('auto' as const, 'off' as const),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('get' as const), actor: actorArb, target: targetArb, row: idx, own: ownArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('patch' as const), actor: actorArb, target: targetArb, row: idx, own: ownArb, meta: metaArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('list' as const), actor: actorArb, target: targetArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), actor: actorArb, target: targetArb, row: idx, own: ownArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('erase' as const), actor: actorArb, target: targetArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reindex' as const), tenant: idx, switchEmbedder: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('sql_read' as const),
      tenant: idx,
      user: idx,
      variant: fc.constantFrom<SqlReadVariant>('scoped', 'scoped', 'other_tenant_same_hash', 'forged_tenant', 'no_scope', 'bad_hash'),
      forged: fc.constantFrom("' OR '1'='1", "'; RESET ROLE; --", '%', '*', '\u200d', ' ', '\\'),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('sql_write' as const),
      tenant: idx,
      user: idx,
      variant: fc.constantFrom<SqlWriteVariant>('insert_other_tenant', 'insert_sibling', 'move_own_to_other', 'move_own_to_sibling', 'move_all_to_other', 'move_all_to_sibling', 'update_all', 'delete_foreign', 'delete_all'),
      other: idx,
      row: idx,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('sql_catalog' as const),
      tenant: idx,
      user: idx,
      variant: fc.constantFrom<SqlCatalogVariant>('key_read', 'key_for_other_tenant', 'key_for_shredded', 'idem_for_other', 'idem_delete_all'),
      other: idx,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('tamper' as const),
      how: fc.constantFrom('copy_ciphertext' as const, 'move_row' as const),
      row: idx,
      to: idx,
      toTenant: idx,
      toUser: idx,
    }),
  },
);

// size 'max': lengths spread over 1..maxOps (fast-check's default favours short arrays).
export const opsArb = (maxOps: number): fc.Arbitrary<Op[]> => fc.array(opArb, { minLength: 1, maxLength: maxOps, size: 'max' });

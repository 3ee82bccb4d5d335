import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { mintToken } from '../../src/auth/index.ts';

/**
 * Hostile input for the isolation fuzz: strings that mean something to SQL, jsonpath, JSON,
 * URLs or Unicode, and bearer tokens that must never be accepted.
 */

/** Characters that are syntax somewhere on the way to the database, plus look-alikes and joiners. */
export const META_CHARS = [
  "'", '"', '\\', ';', '-', '%', '_', '*', '$', '.', '@', '[', ']', '{', '}', '(', ')', '?', '#', '&', '=', '+', '/', ':', '>', '<', '|', '!', '~', '`', ',', ' ',
  'a', 'b', 'e', '1', '0',
  '\u0430', // Cyrillic а, looks like Latin a
  '\u00e9', // é precomposed (NFC)
  '\u0301', // combining acute: "e\u0301" is é decomposed (NFD)
  '\u200d', // zero-width joiner
  '\u200b', // zero-width space
  '\ufeff', // BOM / zero-width no-break space
  '\u202e', // right-to-left override
  '\uff41', // fullwidth a
  '\u{1d5ba}', // mathematical sans-serif a (astral)
  '\u{1f600}', // an emoji (astral)
] as const;

/** User ids that must all be different users: each confusable pair differs by code points only. */
export const USER_IDS = [
  'alice',
  '\u0430lice', // Cyrillic а
  'al\u200dice', // with a zero-width joiner
  'alice ', // trailing space
  'Alice',
  '\u00e9mile', // NFC
  'e\u0301mile', // NFD of the same
  '\uff41lice', // fullwidth
  'service', // the sub of service tokens, as a plain user id
  "o'brien",
  "x' OR '1'='1",
  'x"; DROP TABLE memory_chunks; --',
  '$.user[*]',
  '%',
  '_',
  '\\x00',
  'a/b',
  '../alice',
  '?user_id=alice',
  '#alice',
  '__proto__',
  'constructor',
] as const;

/** Suffixes of the fuzz's tenant ids (each tenant id also carries the run's unique prefix). */
export const TENANT_SUFFIXES = ['', "'", "' OR '1'='1", '%', '_', '\\', '"', '\u0430', '\u200d', ';--', '$.t'] as const;

/** Metadata keys (never `$`-leading: a filter would read that as an operator) and values. */
export const META_KEYS = ["k'ey", 'a.b', 'a[0]', 'x$', '@.x', '"q"', 'k\\', '->>', '#>', '%', '_', 'k?(@ == 1)', 'topic', 'to\u200dpic'] as const;
export const META_VALUES = ["v'", "' OR 1=1 --", '$..*', '%', '_', 'a.b', '"', '\\', 'null', '', '\u0430', 'e\u0301', '\u00e9', '{"$ne":1}'] as const;

/** A string drawn from the metacharacters above, never blank. */
export function hostileString(maxLength = 12): fc.Arbitrary<string> {
  return fc.string({ unit: fc.constantFrom(...META_CHARS), minLength: 1, maxLength }).filter((s) => s.trim().length > 0);
}

/** Idempotency keys: 1..255 visible ASCII (no space), metacharacters welcome. */
export const idempotencyKeyArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("k'1", 'k"1', 'k;--', 'k%', 'k_', 'k\\', '$.k', '*', "'OR'1'='1"),
  fc.string({ unit: fc.constantFrom(...'\'"\\;%_*$.@[]{}()?#&=+/:<>|!~`,-abc019'.split('')), minLength: 1, maxLength: 16 }),
);

/** Ways a bearer credential can be wrong; each must be 401 and change nothing. */
export const BAD_AUTH = [
  'missing',
  'garbage',
  'wrong_key',
  'alg_none',
  'alg_none_keeping_signature',
  'expired',
  'no_exp',
  'hs512_with_the_secret',
  'tid_swapped_keeping_signature',
  'tid_swapped_resigned_wrong_key',
  'kid_injection_wrong_key',
  'sub_swapped_keeping_signature',
] as const;
export type BadAuth = (typeof BAD_AUTH)[number];

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const key = (secret: string) => new TextEncoder().encode(secret);

function claims(tenant: string, user: string | undefined): Record<string, unknown> {
  return user === undefined ? { tid: tenant, scope: 'service', sub: 'service' } : { tid: tenant, sub: user };
}

/**
 * The Authorization header value for a credential of kind `bad` that claims `tenant` / `user`
 * (undefined: a service token); `otherTenant` is the tenant a swapped token moves to.
 * Null means no header at all.
 */
export async function badAuthorization(bad: BadAuth, secret: string, tenant: string, user: string | undefined, otherTenant: string): Promise<string | null> {
  const now = Math.floor(Date.now() / 1000);
  const real = await mintToken({ secret, tenant, ...(user === undefined ? { service: true } : { user }), ttlSeconds: 600 });
  const [h, , sig] = real.split('.') as [string, string, string];
  const realPayload = JSON.parse(Buffer.from(real.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  const wrong = randomBytes(32).toString('base64url');
  switch (bad) {
    case 'missing':
      return null;
    case 'garbage':
      return 'Bearer not.a.jwt';
    case 'wrong_key':
      return `Bearer ${await mintToken({ secret: wrong, tenant, ...(user === undefined ? { service: true } : { user }), ttlSeconds: 600 })}`;
    case 'alg_none':
      return `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims(tenant, user), exp: now + 600 })}.`;
    case 'alg_none_keeping_signature':
      return `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(realPayload)}.${sig}`;
    case 'expired':
      return `Bearer ${await new SignJWT(claims(tenant, user)).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now - 7200).setExpirationTime(now - 3600).sign(key(secret))}`;
    case 'no_exp':
      return `Bearer ${await new SignJWT(claims(tenant, user)).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).sign(key(secret))}`;
    case 'hs512_with_the_secret':
      return `Bearer ${await new SignJWT(claims(tenant, user)).setProtectedHeader({ alg: 'HS512' }).setExpirationTime(now + 600).sign(key(secret))}`;
    case 'tid_swapped_keeping_signature':
      return `Bearer ${h}.${b64({ ...realPayload, tid: otherTenant })}.${sig}`;
    case 'tid_swapped_resigned_wrong_key':
      return `Bearer ${await new SignJWT({ ...realPayload, tid: otherTenant }).setProtectedHeader({ alg: 'HS256' }).sign(key(wrong))}`;
    case 'kid_injection_wrong_key':
      return `Bearer ${await new SignJWT({ ...realPayload, tid: otherTenant }).setProtectedHeader({ alg: 'HS256', kid: "../../../dev/null' OR '1'='1", jku: 'http://127.0.0.1:1/jwks' }).sign(key(wrong))}`;
    case 'sub_swapped_keeping_signature':
      // A user token made a service token; a service token (whose payload already says so) made
      // a user's — either way the payload changes under the signature. Setting a service token's
      // claims to what they already were left the token valid, and the fuzz expected a 401.
      return `Bearer ${h}.${b64(user === undefined ? { ...realPayload, sub: `${tenant}-someone`, scope: undefined } : { ...realPayload, sub: 'service', scope: 'service' })}.${sig}`;
  }
}

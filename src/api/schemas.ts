import { z } from 'zod';
import { ApiError, ErrorCode, badRequest } from './errors.ts';
import { bodyNotObject, fieldName, inProjectWords } from './validation-messages.ts';

/** Limits on what a client may send; docs/api.md lists the same. */
export const LIMITS = {
  userIdChars: 256,
  textChars: 500_000,
  chunkChars: 16_000,
  chunksPerWrite: 1000,
  queryChars: 8192,
  topK: 100,
  metadataBytes: 16_384,
  metadataKeys: 64,
  metadataKeyChars: 128,
  metadataDepth: 8,
  ttlSeconds: 10 * 365 * 24 * 3600,
  listLimit: 100,
} as const;

// A lone surrogate cannot be stored as UTF-8 (it would become U+FFFD, and two different ids
// would meet in one); control characters in ids end up in logs and headers.
const WELL_FORMED = /^[^\p{Cs}]*$/u;
const NO_CONTROL = /^[^\p{Cc}]*$/u;

const text = (max: number) =>
  z
    .string()
    .max(max)
    .regex(WELL_FORMED, 'must be well-formed Unicode')
    .refine((s) => !s.includes('\0'), 'must not contain NUL')
    .refine((s) => s.trim().length > 0, 'must not be empty or blank')
    .meta({ description: 'not blank; well-formed Unicode without NUL' });

export const UserId = z
  .string()
  .min(1)
  .max(LIMITS.userIdChars)
  .regex(NO_CONTROL, 'must not contain control characters')
  .regex(WELL_FORMED, 'must be well-formed Unicode')
  .meta({ description: 'required with a service token; a user token may leave it out or name its own sub' });

/** Only to say which tenant the caller means: it must be the token's. */
const TenantId = z.string().max(1024).meta({ description: "optional; must be the token's tenant (403 forbidden_scope otherwise)" });

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** Any JSON value (z.json(), with an id so the OpenAPI document can name its recursion). */
export const JsonValue: z.ZodType<Json> = z
  .lazy(() => z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(JsonValue), z.record(z.string(), JsonValue)]))
  .meta({ id: 'JsonValue', description: 'any JSON value' });

/** An integer field: every way to miss it (wrong type, fraction, out of range) gets the one message. */
const integer = (min: number, max: number, coerce = false) => {
  const error = `must be an integer from ${min} to ${max}`;
  return (coerce ? z.coerce.number({ error }) : z.number({ error })).int({ error }).min(min, { error }).max(max, { error });
};

/**
 * Checks a JSON value can be stored as jsonb as it is: finite numbers, strings without NUL
 * (PostgreSQL's jsonb refuses \u0000) or lone surrogates, bounded depth. Issues carry the
 * path below the field (parse() names it); the depth is said once, of the field.
 */
function storableJson(value: unknown, depth: number, ctx: z.RefinementCtx, path: (string | number)[]): boolean {
  if (depth > LIMITS.metadataDepth) {
    ctx.addIssue({ code: 'custom', message: `nested deeper than ${LIMITS.metadataDepth} levels`, path: [] });
    return false;
  }
  if (typeof value === 'string') {
    if (value.includes('\0') || !WELL_FORMED.test(value)) ctx.addIssue({ code: 'custom', message: 'strings must be well-formed Unicode without NUL', path });
  } else if (typeof value === 'number') {
    if (!Number.isFinite(value)) ctx.addIssue({ code: 'custom', message: 'numbers must be finite', path });
  } else if (Array.isArray(value)) {
    return value.every((v, i) => storableJson(v, depth + 1, ctx, [...path, i]));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes('\0') || !WELL_FORMED.test(k)) ctx.addIssue({ code: 'custom', message: 'keys must be well-formed Unicode without NUL', path });
      if (!storableJson(v, depth + 1, ctx, [...path, k])) return false;
    }
  }
  return true;
}

export const Metadata = z
  .record(z.string().min(1).max(LIMITS.metadataKeyChars), JsonValue)
  .meta({
    description: `filterable tags: at most ${LIMITS.metadataKeys} keys, ${LIMITS.metadataBytes} bytes as JSON, nested at most ${LIMITS.metadataDepth} deep`,
    maxProperties: LIMITS.metadataKeys,
  })
  .superRefine((m, ctx) => {
    if (Object.keys(m).length > LIMITS.metadataKeys) ctx.addIssue({ code: 'custom', message: `must have at most ${LIMITS.metadataKeys} keys` });
    if (Buffer.byteLength(JSON.stringify(m)) > LIMITS.metadataBytes) ctx.addIssue({ code: 'custom', message: `must be at most ${LIMITS.metadataBytes} bytes as JSON` });
    storableJson(m, 0, ctx, []);
  });

export const WriteBody = z
  .strictObject({
    user_id: UserId.optional(),
    tenant_id: TenantId.optional(),
    text: text(LIMITS.textChars).optional(),
    chunks: z.array(text(LIMITS.chunkChars)).min(1).max(LIMITS.chunksPerWrite).optional(),
    metadata: Metadata.optional(),
    ttl_s: integer(1, LIMITS.ttlSeconds).optional(),
  })
  .refine((b) => (b.text === undefined) !== (b.chunks === undefined), { message: 'give exactly one of text or chunks' })
  // The refinement above, as JSON Schema says it (the OpenAPI document shows this).
  .meta({
    oneOf: [{ required: ['text'] }, { required: ['chunks'] }],
    examples: [
      { user_id: 'alice', text: 'Alice keeps her spare keys under the blue pot.', metadata: { topic: 'home' }, ttl_s: 86400 },
      { user_id: 'alice', chunks: ['Alice prefers tea.', 'Alice is allergic to cats.'] },
    ],
  });

export const QueryBody = z
  .strictObject({
    query: text(LIMITS.queryChars),
    user_id: UserId.optional(),
    tenant_id: TenantId.optional(),
    top_k: integer(1, LIMITS.topK).default(10),
    // Checked by parseFilter, which names the JSON path of what it refuses.
    filter: z.unknown().optional().meta({ type: 'object', description: 'metadata filter: $eq $ne $in $nin $gt $gte $lt $lte $exists $and $or (docs/filters.md)' }),
    rerank: z.enum(['auto', 'on', 'off']).default('auto'),
  })
  .meta({ examples: [{ query: 'where are the spare keys?', user_id: 'alice', top_k: 10, filter: { topic: 'home' }, rerank: 'auto' }] });

export const PatchBody = z
  .strictObject({
    user_id: UserId.optional(),
    tenant_id: TenantId.optional(),
    text: text(LIMITS.chunkChars).optional(),
    metadata: Metadata.optional(),
    ttl_s: integer(1, LIMITS.ttlSeconds)
      .nullable()
      .optional()
      .meta({ description: 'seconds from now until the chunk expires; null: it never expires' }),
  })
  .refine((b) => b.text !== undefined || b.metadata !== undefined || b.ttl_s !== undefined, { message: 'give text, metadata and/or ttl_s' })
  .meta({ anyOf: [{ required: ['text'] }, { required: ['metadata'] }, { required: ['ttl_s'] }] });

/** Path of the routes on one chunk; an id that is not a UUID names nothing (404), so it is not parsed. */
export const ItemParams = z.strictObject({ id: z.string().meta({ format: 'uuid', description: 'chunk id' }) });

export const ErasureParams = z.strictObject({ user_id: UserId });

/** Query string of GET/DELETE on one chunk. */
export const ItemQuery = z.strictObject({ user_id: UserId.optional(), tenant_id: TenantId.optional() });

export const ListQuery = z.strictObject({
  user_id: UserId.optional(),
  tenant_id: TenantId.optional(),
  limit: integer(1, LIMITS.listLimit, true).default(20),
  cursor: z.string().max(512).optional(),
});

/** Validates `input`, or throws 400 `validation_failed` naming the first problems (at most three fields, one problem each). */
export function parse<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const res = schema.safeParse(input, { error: inProjectWords });
  if (res.success) return res.data;
  const byField = new Map<string, string>();
  for (const issue of res.error.issues) {
    // A record's bad key is a problem of the record: "metadata: keys must be …".
    const path = issue.code === 'invalid_key' ? issue.path.slice(0, -1) : issue.path;
    const field = fieldName(path);
    if (!byField.has(field)) byField.set(field, path.length === 0 && issue.code === 'invalid_type' ? bodyNotObject(input) : issue.message);
    if (byField.size === 3) break;
  }
  const problems = [...byField].map(([field, message]) => (field ? `${field}: ${message}` : message));
  // Bounded: an issue can name a client's unknown keys.
  throw badRequest(ErrorCode.ValidationFailed, problems.join('; ').slice(0, 500));
}

export const IdempotencyKey = z
  .string()
  .regex(/^[\x21-\x7e]{1,255}$/)
  .meta({ description: 'makes retries safe: a repeat of the same request within 24 h returns the first answer and writes nothing' });

/** `Idempotency-Key`: 1..255 visible ASCII characters. */
export function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !IdempotencyKey.safeParse(header).success) {
    throw new ApiError(400, ErrorCode.InvalidHeader, 'Idempotency-Key must be 1..255 visible ASCII characters');
  }
  return header;
}

/**
 * `If-Match`: `*` (any version) or the chunk's version as its entity tag (`"3"`, or a bare 3).
 * Returns the version, or undefined for none given / `*`.
 */
const IF_MATCH = /^\s*(?:\*|"?(\d{1,9})"?)\s*$/;

export const IfMatch = z.string().regex(IF_MATCH).meta({ description: '* or the chunk version as an entity tag ("3"): a stale version is 412 version_mismatch' });

export function ifMatch(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(',') : header;
  const m = IF_MATCH.exec(value);
  if (!m) throw new ApiError(400, ErrorCode.InvalidHeader, 'If-Match must be * or the chunk version as an entity tag, e.g. "3"');
  return m[1] === undefined ? undefined : Number(m[1]);
}

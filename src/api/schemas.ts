import { z } from 'zod';
import { ApiError, ErrorCode, badRequest } from './errors.ts';

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
    .refine((s) => s.trim().length > 0, 'must not be empty or blank');

export const UserId = z
  .string()
  .min(1)
  .max(LIMITS.userIdChars)
  .regex(NO_CONTROL, 'must not contain control characters')
  .regex(WELL_FORMED, 'must be well-formed Unicode');

/** Only to say which tenant the caller means: it must be the token's. */
const TenantId = z.string().max(1024);

/**
 * Checks a JSON value can be stored as jsonb as it is: finite numbers, strings without NUL
 * (PostgreSQL's jsonb refuses \u0000) or lone surrogates, bounded depth.
 */
function storableJson(value: unknown, depth: number, ctx: z.RefinementCtx, path: string): void {
  if (depth > LIMITS.metadataDepth) {
    ctx.addIssue({ code: 'custom', message: `${path}: nested deeper than ${LIMITS.metadataDepth}` });
    return;
  }
  if (typeof value === 'string') {
    if (value.includes('\0') || !WELL_FORMED.test(value)) ctx.addIssue({ code: 'custom', message: `${path}: strings must be well-formed Unicode without NUL` });
  } else if (typeof value === 'number') {
    if (!Number.isFinite(value)) ctx.addIssue({ code: 'custom', message: `${path}: numbers must be finite` });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => storableJson(v, depth + 1, ctx, `${path}[${i}]`));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes('\0') || !WELL_FORMED.test(k)) ctx.addIssue({ code: 'custom', message: `${path}: keys must be well-formed Unicode without NUL` });
      storableJson(v, depth + 1, ctx, `${path}.${k.slice(0, 64)}`);
    }
  }
}

export const Metadata = z
  .record(z.string().min(1).max(LIMITS.metadataKeyChars), z.json())
  .superRefine((m, ctx) => {
    if (Object.keys(m).length > LIMITS.metadataKeys) ctx.addIssue({ code: 'custom', message: `at most ${LIMITS.metadataKeys} keys` });
    if (Buffer.byteLength(JSON.stringify(m)) > LIMITS.metadataBytes) ctx.addIssue({ code: 'custom', message: `at most ${LIMITS.metadataBytes} bytes as JSON` });
    storableJson(m, 0, ctx, 'metadata');
  });

export const WriteBody = z
  .strictObject({
    user_id: UserId.optional(),
    tenant_id: TenantId.optional(),
    text: text(LIMITS.textChars).optional(),
    chunks: z.array(text(LIMITS.chunkChars)).min(1).max(LIMITS.chunksPerWrite).optional(),
    metadata: Metadata.optional(),
    ttl_s: z.number().int().min(1).max(LIMITS.ttlSeconds).optional(),
  })
  .refine((b) => (b.text === undefined) !== (b.chunks === undefined), { message: 'give exactly one of text or chunks' });

export const QueryBody = z.strictObject({
  query: text(LIMITS.queryChars),
  user_id: UserId.optional(),
  tenant_id: TenantId.optional(),
  top_k: z.number().int().min(1).max(LIMITS.topK).default(10),
  filter: z.unknown().optional(),
  rerank: z.enum(['auto', 'on', 'off']).default('auto'),
});

export const PatchBody = z
  .strictObject({
    user_id: UserId.optional(),
    tenant_id: TenantId.optional(),
    text: text(LIMITS.chunkChars).optional(),
    metadata: Metadata.optional(),
  })
  .refine((b) => b.text !== undefined || b.metadata !== undefined, { message: 'give text and/or metadata' });

/** Query string of GET/DELETE on one chunk. */
export const ItemQuery = z.strictObject({ user_id: UserId.optional(), tenant_id: TenantId.optional() });

export const ListQuery = z.strictObject({
  user_id: UserId.optional(),
  tenant_id: TenantId.optional(),
  limit: z.coerce.number().int().min(1).max(LIMITS.listLimit).default(20),
  cursor: z.string().max(512).optional(),
});

/** Validates `input`, or throws 400 `validation_failed` naming the first problems. */
export function parse<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const res = schema.safeParse(input ?? undefined);
  if (res.success) return res.data;
  const problems = res.error.issues.slice(0, 3).map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message));
  // Bounded: an issue can name a client's unknown keys.
  throw badRequest(ErrorCode.ValidationFailed, problems.join('; ').slice(0, 500));
}

/** `Idempotency-Key`: 1..255 visible ASCII characters. */
export function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(header)) {
    throw new ApiError(400, ErrorCode.InvalidHeader, 'Idempotency-Key must be 1..255 visible ASCII characters');
  }
  return header;
}

/**
 * `If-Match`: `*` (any version) or the chunk's version as its entity tag (`"3"`, or a bare 3).
 * Returns the version, or undefined for none given / `*`.
 */
export function ifMatch(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(',') : header;
  if (value.trim() === '*') return undefined;
  const m = /^\s*"?(\d{1,9})"?\s*$/.exec(value);
  if (!m) throw new ApiError(400, ErrorCode.InvalidHeader, 'If-Match must be * or the chunk version as an entity tag, e.g. "3"');
  return Number(m[1]);
}

/** The list cursor: where the last page ended, opaque to clients. */
export function encodeCursor(pos: { createdAt: string; id: string }): string {
  return Buffer.from(JSON.stringify([pos.createdAt, pos.id])).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (
      typeof createdAt === 'string' &&
      typeof id === 'string' &&
      /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?$/.test(createdAt) &&
      /^[0-9a-f-]{36}$/i.test(id)
    ) {
      return { createdAt, id };
    }
  } catch {
    // falls through to the error below
  }
  throw badRequest(ErrorCode.InvalidCursor, 'cursor is not one this API gave out');
}

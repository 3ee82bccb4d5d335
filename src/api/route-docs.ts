import type { FastifySchema, RouteShorthandOptions } from 'fastify';
import { z } from 'zod';
import { ERROR_CATALOG } from './error-catalog.ts';
import { ErrorCode } from './errors.ts';
import { errorAnswer } from './responses.ts';
import { JsonValue } from './schemas.ts';

type JsonSchema = Record<string, unknown>;

/** One success answer: a JSON body, a body per media type, or none (204). */
export interface Answer {
  description: string;
  json?: z.ZodType;
  /** Media type → its schema (zod, or JSON Schema for what zod cannot say, like an event stream). */
  content?: Record<string, z.ZodType | JsonSchema>;
  /** Response headers worth knowing (ETag, idempotent-replayed). */
  headers?: Record<string, z.ZodType>;
}

/** What the OpenAPI document says of a route; every schema in it is one the handler parses with. */
export interface RouteDoc {
  /** A unique camelCase name: generated clients name their methods after it. */
  operationId: string;
  summary: string;
  description?: string;
  tag: 'memory' | 'operations';
  /** `required`: every /api/v1 route; `optional`: /metrics/memory (only with RELAY_METRICS_TOKEN); `none`: public. */
  bearer: 'required' | 'optional' | 'none';
  body?: z.ZodType;
  query?: z.ZodType;
  params?: z.ZodType;
  /** Request headers by name (all optional). */
  headers?: Record<string, z.ZodType>;
  answers: Record<number, Answer>;
  /** Every code the route can answer; the document groups them by status. */
  errors: readonly ErrorCode[];
}

/** Named schemas (with a zod `id`) that the document keeps once, in `components.schemas`. */
const SHARED = { JsonValue } as const;

const toComponentRefs = (schema: unknown): JsonSchema => JSON.parse(JSON.stringify(schema).replaceAll('"#/$defs/', '"#/components/schemas/')) as JsonSchema;

/**
 * JSON Schema of a zod schema: `input` for what clients send (defaults make fields optional),
 * `output` for what the API answers. Named schemas point at the document's components instead
 * of `$defs` (which, inside an OpenAPI document, would resolve against its root).
 */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const out = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  for (const name of Object.keys((out.$defs ?? {}) as JsonSchema)) {
    if (!(name in SHARED)) throw new Error(`${name}: a shared schema needs an entry in SHARED (route-docs.ts)`);
  }
  delete out.$schema;
  delete out.$defs;
  return toComponentRefs(out);
}

/**
 * An array of itself (`JsonValue[]` inside `JsonValue`) becomes an array of anything: code
 * generators write the recursion as an indexed access type, which TypeScript refuses as a
 * circular annotation (TS2502), while through an object it is deferred and compiles. Every
 * element of a JSON array is a JSON value anyway, so the document says the same.
 */
function selfArraysOpen(name: string, schema: JsonSchema): JsonSchema {
  const self = JSON.stringify({ $ref: `#/components/schemas/${name}` });
  const branches = schema.anyOf as JsonSchema[] | undefined;
  if (!branches) return schema;
  return { ...schema, anyOf: branches.map((b) => (b.type === 'array' && JSON.stringify(b.items) === self ? { ...b, items: {} } : b)) };
}

/** `components.schemas` for the SHARED schemas. */
export function sharedSchemas(): Record<string, JsonSchema> {
  return Object.fromEntries(
    Object.entries(SHARED).map(([name, schema]) => {
      // Through a wrapper, so that a recursion is a `$ref` to the component and not to `#`.
      const wrapped = z.toJSONSchema(z.object({ v: schema }), { io: 'input' }) as { $defs: Record<string, JsonSchema> };
      return [name, selfArraysOpen(name, toComponentRefs(wrapped.$defs[name]))];
    }),
  );
}

/** What every /api/v1 route can answer: the token, its scope, the parsed input, the rate limit (and its Redis), the store. */
export const API_ERRORS = [
  ErrorCode.Unauthorized,
  ErrorCode.ForbiddenScope,
  ErrorCode.ValidationFailed,
  ErrorCode.TenantShredded,
  ErrorCode.RateLimited,
  ErrorCode.Internal,
  ErrorCode.StoreUnavailable,
  ErrorCode.RateLimitUnavailable,
] as const;
/** Routes with a JSON body: Fastify's body parser and size limit. */
export const BODY_ERRORS = [ErrorCode.InvalidJson, ErrorCode.BadRequest, ErrorCode.PayloadTooLarge, ErrorCode.UnsupportedMediaType] as const;
/** Routes with a path parameter: a segment that is not valid percent-encoded UTF-8 is refused before the route runs. */
export const PATH_ERRORS = [ErrorCode.BadRequest] as const;
/** DELETE routes: Fastify reads a body it is sent (the route ignores it), so one over the body limit is refused. */
export const IGNORED_BODY_ERRORS = [ErrorCode.PayloadTooLarge] as const;
/** Routes that embed text. */
export const EMBED_ERRORS = [ErrorCode.EmbedderFailed, ErrorCode.EmbedderUnavailable] as const;

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad input',
  401: 'No token, or not a valid one',
  403: "Outside the token's scope (counted as a cross-tenant attempt)",
  404: 'Not found',
  406: 'Not an Accept this route answers',
  412: 'If-Match names a stale version',
  413: 'Body too large',
  415: 'Body not application/json',
  422: 'Idempotency-Key reused with another body',
  429: "Over the tenant's rate limit",
  500: 'Internal error',
  502: 'The embedding model refused or answered badly',
  503: 'A dependency is unavailable; retry later',
};

function headerSchema(headers: Record<string, z.ZodType>): JsonSchema {
  return { type: 'object', properties: Object.fromEntries(Object.entries(headers).map(([name, s]) => [name, jsonSchema(s, 'input')])) };
}

/** @fastify/swagger takes it as the answer's description and leaves it out of the body's schema. */
const DESCRIPTION = 'x-response-description';

function answerSchema(a: Answer): JsonSchema {
  const out: JsonSchema = { [DESCRIPTION]: a.description };
  if (a.headers) out.headers = Object.fromEntries(Object.entries(a.headers).map(([name, s]) => [name, jsonSchema(s, 'output')]));
  if (a.content) {
    out.content = Object.fromEntries(
      Object.entries(a.content).map(([type, s]) => [type, { schema: s instanceof z.ZodType ? jsonSchema(s, 'output') : s }]),
    );
  } else if (a.json) {
    Object.assign(out, jsonSchema(a.json, 'output'));
  } else {
    // No body (204).
    out.type = 'null';
  }
  return out;
}

/** The error answers of a route: one per status, each listing its codes. */
function errorSchemas(codes: readonly ErrorCode[]): Record<number, JsonSchema> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const { status } = ERROR_CATALOG[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => {
      // The catalog's links are relative to docs/; here they would point under /docs.
      const when = list.map((code) => `- \`${code}\`: ${ERROR_CATALOG[code].when.replace(/\[[^\]]*\]\(([^)]+)\)/g, 'docs/$1')}`).join('\n');
      return [status, { ...jsonSchema(errorAnswer(list), 'output'), [DESCRIPTION]: `${STATUS_TEXT[status] ?? 'Error'}\n\n${when}` }];
    }),
  );
}

/** Schemas are documentation here: the handlers parse with zod and answer the API's own errors. */
const documentationOnly = () => () => true;
const plainJson = () => (data: unknown) => JSON.stringify(data);

/**
 * Route options carrying `doc` as the route's schema, for @fastify/swagger to put in the
 * OpenAPI document. Fastify neither validates with it nor serializes with it: bad input keeps
 * its `validation_failed` (and other) codes, answers keep their exact bytes.
 */
export function documented(doc: RouteDoc): RouteShorthandOptions {
  const schema: FastifySchema & Record<string, unknown> = {
    operationId: doc.operationId,
    summary: doc.summary,
    tags: [doc.tag],
    response: { ...Object.fromEntries(Object.entries(doc.answers).map(([status, a]) => [status, answerSchema(a)])), ...errorSchemas(doc.errors) },
  };
  if (doc.description) schema.description = doc.description;
  if (doc.bearer === 'required') schema.security = [{ bearer: [] }];
  if (doc.bearer === 'optional') schema.security = [{}, { bearer: [] }];
  // Public: said outright, so that no tool reads a missing entry as an oversight.
  if (doc.bearer === 'none') schema.security = [];
  if (doc.body) schema.body = jsonSchema(doc.body, 'input');
  if (doc.query) schema.querystring = jsonSchema(doc.query, 'input');
  if (doc.params) schema.params = jsonSchema(doc.params, 'input');
  if (doc.headers) schema.headers = headerSchema(doc.headers);
  return { schema, validatorCompiler: documentationOnly, serializerCompiler: plainJson };
}

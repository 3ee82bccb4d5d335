import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FILTER_LIMITS } from '../store/index.ts';
import { ApiError, ErrorCode, badRequest } from './errors.ts';
import { LIMITS } from './schemas.ts';

/**
 * How deep a request body may nest, counting every `{` and `[` from the body's own object. No
 * valid body comes near it: metadata nests at most 8 levels inside the body (10 with the body
 * and the metadata object), a filter of 8 levels of `$and`/`$or` about 20. Checked on the raw
 * text before JSON.parse, so that nothing after it (zod, the metadata and filter rules, jsonb)
 * ever recurses over an unbounded depth.
 */
export const MAX_BODY_DEPTH = 32;

const KEY_IN_MESSAGE = 64;

/** A body's problem as the API answers it: a filter's is `invalid_filter`, any other field's `validation_failed`. */
function fieldError(field: string | null, reason: string): ApiError {
  if (field === 'filter') return badRequest(ErrorCode.InvalidFilter, `filter: ${reason}`);
  const name = field === null ? 'the body' : JSON.stringify(field.slice(0, KEY_IN_MESSAGE)).slice(1, -1);
  return badRequest(ErrorCode.ValidationFailed, `${name}: ${reason}`);
}

function depthError(field: string | null): ApiError {
  if (field === 'filter') return fieldError(field, `nested too deep (filters nest at most ${FILTER_LIMITS.depth} levels of $and/$or)`);
  if (field === 'metadata') return fieldError(field, `nested deeper than ${LIMITS.metadataDepth} levels`);
  return fieldError(field, `nested deeper than ${MAX_BODY_DEPTH} levels`);
}

/**
 * Where `text` (JSON, maybe malformed) nests deeper than `limit`: the top-level key whose value
 * does (null for the body itself), or undefined when it does not. One pass, no recursion;
 * strings are skipped with indexOf, so a long text costs little.
 */
export function nestedTooDeep(text: string, limit: number): { field: string | null } | undefined {
  let depth = 0;
  // The last string seen directly in the body object, and the key whose value we are in.
  let lastString: [number, number] | null = null;
  let key: [number, number] | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let end = i;
      for (;;) {
        end = text.indexOf('"', end + 1);
        // Unterminated: JSON.parse refuses it.
        if (end < 0) return undefined;
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      if (depth === 1) lastString = [i, end + 1];
      i = end;
    } else if (c === 0x3a) {
      if (depth === 1) key = lastString;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth > limit) return { field: depth > 1 && key ? decodeKey(text.slice(key[0], key[1])) : null };
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return undefined;
}

function decodeKey(quoted: string): string | null {
  try {
    return JSON.parse(quoted) as string;
  } catch {
    return null;
  }
}

/**
 * The top-level field under which `value` holds an own `__proto__` key, or undefined. Iterative:
 * the depth is already bounded, the size by the body limit.
 */
function protoKeyField(value: unknown): { field: string | null } | undefined {
  const stack: [unknown, string | null][] = [[value, null]];
  while (stack.length > 0) {
    const [v, field] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (const item of v) stack.push([item, field]);
      continue;
    }
    // At the top, the key is the field itself.
    if (Object.hasOwn(v, '__proto__')) return { field: field ?? '__proto__' };
    for (const [k, item] of Object.entries(v)) stack.push([item, field ?? k]);
  }
  return undefined;
}

// A key can be written with escapes (`"\u005f_proto__"`); only such a body needs the walk.
const MAYBE_PROTO = /proto|\\u/;

/**
 * Parses a JSON request body. The depth is checked on the text first; `__proto__` keys are
 * refused (they are never data anyone means, and an object that merges them gets a new
 * prototype); `constructor` and `prototype` are plain keys (JSON.parse makes own properties).
 */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') throw badRequest(ErrorCode.InvalidJson, 'the JSON body is empty');
  const deep = nestedTooDeep(text, MAX_BODY_DEPTH);
  if (deep) throw depthError(deep.field);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // V8 says where, and in newer versions quotes the text around it: only the place is kept.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    throw badRequest(ErrorCode.InvalidJson, `the body is not valid JSON${at === undefined ? '' : ` (at character ${at})`}`);
  }
  if (MAYBE_PROTO.test(text)) {
    const proto = protoKeyField(value);
    if (proto) throw fieldError(proto.field, 'the key "__proto__" is not allowed');
  }
  return value;
}

const UTF8 = /^utf-?8$/i;

function charsetOf(contentType: string | undefined): string | undefined {
  const m = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(contentType ?? '');
  return m?.[1];
}

/** Whether the matched route takes a body (its documented schema has one); none matched: no. */
function takesBody(req: FastifyRequest): boolean {
  return Boolean((req.routeOptions.schema as { body?: unknown } | undefined)?.body);
}

const notJson = () => new ApiError(415, ErrorCode.UnsupportedMediaType, 'send the body as application/json');

/**
 * Bodies are `application/json` (UTF-8; a `charset` parameter may say so) and nothing else:
 * on a route that takes a body, every other media type, `text/plain` and `application/*+json`
 * included, is 415 `unsupported_media_type` before the handler runs. A route that takes no body
 * (GET, DELETE) ignores one, whatever its type, as GET always has. Register on the root
 * instance before the routes.
 */
export function registerBodyParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  // Fastify refuses a malformed Content-Type (415) before any parser runs; for a route that takes
  // no body the header means nothing, so it is not looked at.
  app.addHook('onRequest', async (req) => {
    if (req.headers['content-type'] !== undefined && !takesBody(req)) delete req.headers['content-type'];
  });
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req: FastifyRequest, body: string | Buffer, done) => {
    if (!takesBody(req)) {
      done(null, undefined);
      return;
    }
    const charset = charsetOf(req.headers['content-type']);
    if (charset !== undefined && !UTF8.test(charset)) {
      done(new ApiError(415, ErrorCode.UnsupportedMediaType, 'send the body as application/json in UTF-8'), undefined);
      return;
    }
    try {
      done(null, parseJsonBody(typeof body === 'string' ? body : body.toString('utf8')));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  // Any other type (read within the body limit, then dropped).
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req: FastifyRequest, _body: string | Buffer, done) => {
    done(takesBody(req) ? notJson() : null, undefined);
  });
}

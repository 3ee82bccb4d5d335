import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AuthError } from '../auth/index.ts';
import { CryptoError, KeyError } from '../crypto/index.ts';
import { EmbedderError } from '../embed/index.ts';
import { MemoryError } from '../memory/index.ts';
import { FilterError, isConnectionError, ScopeError, sqlState } from '../store/index.ts';
import { ApiError, ErrorCode, errorBody } from './errors.ts';

const RETRY_AFTER_S = '5';

/** Fastify's own 4xx errors (body parser, limits), by their stable codes. */
function fastifyClientError(err: FastifyError): ApiError | null {
  const status = err.statusCode;
  if (!status || status < 400 || status >= 500) return null;
  if (status === 413) return new ApiError(413, ErrorCode.PayloadTooLarge, 'request body too large');
  if (status === 415) return new ApiError(415, ErrorCode.UnsupportedMediaType, 'send the body as application/json');
  if (status === 429) return new ApiError(429, ErrorCode.RateLimited, 'too many requests');
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new ApiError(400, ErrorCode.InvalidJson, 'the JSON body is empty');
  if (err instanceof SyntaxError || /JSON/i.test(err.code ?? '')) return new ApiError(400, ErrorCode.InvalidJson, 'the body is not valid JSON');
  return new ApiError(status, ErrorCode.BadRequest, err.message.slice(0, 300));
}

/**
 * What the log says of an unexpected error, so an operator can act without the source: its
 * type, code, message and stack. Only the error's own fields, never the request (no body, no
 * headers, no token); memory text is sealed before it reaches the store, so a store error
 * cannot quote it. Bounded, so one error cannot flood the log.
 */
export function internalErrorLog(err: unknown, code: string | undefined): { type: string; code?: string; message: string; stack?: string } {
  const e = err instanceof Error ? err : null;
  return {
    type: e?.name ?? typeof err,
    ...(code === undefined ? {} : { code }),
    message: (e ? e.message : String(err)).slice(0, 1000),
    ...(e?.stack ? { stack: e.stack.slice(0, 4000) } : {}),
  };
}

/**
 * Every failure as the API answers it. Messages of unexpected errors stay in the log; the
 * client gets a code and a fixed message (no SQL, no stack, no secret).
 */
export function toApiError(err: unknown, req: FastifyRequest): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof AuthError) return new ApiError(401, ErrorCode.Unauthorized, err.message, { 'www-authenticate': 'Bearer error="invalid_token"' });
  if (err instanceof FilterError) return new ApiError(400, ErrorCode.InvalidFilter, err.message.slice(0, 500));
  if (err instanceof MemoryError) {
    if (err.code === 'idempotency_key_reused') return new ApiError(422, ErrorCode.IdempotencyKeyReused, err.message);
    return new ApiError(400, ErrorCode.ValidationFailed, err.message);
  }
  if (err instanceof ScopeError) return new ApiError(400, ErrorCode.ValidationFailed, err.message);
  // The tenant's keys were destroyed: nothing of it can be read or written again (docs/crypto.md).
  if (err instanceof CryptoError && err.reason === 'key_shredded') {
    return new ApiError(410, ErrorCode.TenantShredded, "this tenant's keys were destroyed (crypto-shredded): its memory can no longer be read or written");
  }
  if (err instanceof EmbedderError) {
    req.log.warn({ err: { code: err.code, status: err.statusCode } }, 'embedder failed');
    // Down or overloaded: worth a retry. Answered but refused or garbled: a retry won't help.
    if (err.code === 'embedder_failed') return new ApiError(502, ErrorCode.EmbedderFailed, 'the embedding model refused the request or answered badly');
    return new ApiError(503, ErrorCode.EmbedderUnavailable, 'the embedding model is unavailable; retry later', { 'retry-after': RETRY_AFTER_S });
  }
  // 25006: a write reached a server that is not a writable primary (yet, or any more): during a
  // failover or switchover HAProxy's primary port leads to a node in recovery for a moment.
  // Nothing was written; the retry finds the new primary. (Reads never write: the store runs them
  // read-only, so no bug of ours hides behind this.)
  if (isConnectionError(err) || ['57014', '53300', '55P03', '25006'].includes(sqlState(err) ?? '')) {
    req.log.warn({ err: { code: sqlState(err) ?? (err as { code?: string }).code } }, 'store unavailable');
    return new ApiError(503, ErrorCode.StoreUnavailable, 'the memory store is unavailable; retry later', { 'retry-after': RETRY_AFTER_S });
  }
  const fe = err as FastifyError;
  const client = typeof fe?.statusCode === 'number' ? fastifyClientError(fe) : null;
  if (client) return client;
  // CryptoError/KeyError here mean the tenant's keys cannot be used (shredded, master key
  // wrong): the request cannot be served, and the log says why, without secrets.
  const code = err instanceof CryptoError || err instanceof KeyError ? err.code : sqlState(err);
  // Under `error`, not `err`: pino's err serializer would rename the type to the object's class.
  req.log.error({ error: internalErrorLog(err, code) }, 'request failed');
  return new ApiError(500, ErrorCode.Internal, 'internal error');
}

/**
 * Fastify's `frameworkErrors`: what fails before routing (a path with bad percent-encoding such
 * as `/api/v1/users/%zz/memory`) answers in the API's shape too.
 */
export function frameworkError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const e = err.code === 'FST_ERR_BAD_URL' ? new ApiError(400, ErrorCode.BadRequest, 'the path is not valid percent-encoded UTF-8') : new ApiError(400, ErrorCode.BadRequest, 'the request could not be routed');
  // Before routing, so no route's hooks run: the request id is set here.
  void reply.code(e.statusCode).header('x-request-id', req.id).send(errorBody(e.code, e.message));
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    const e = toApiError(err, req);
    return reply.code(e.statusCode).headers(e.headers).send(errorBody(e.code, e.message));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(ErrorCode.NotFound, `no route ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}`));
  });
}

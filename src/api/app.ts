import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Metrics } from '../metrics/index.ts';
import type { Store } from '../store/index.ts';
import { ApiError, ErrorCode, errorBody } from './errors.ts';

export interface AppOptions {
  store: Store;
  metrics: Metrics;
  /** Fastify's logger option: a pino instance, options, or false. */
  logger?: FastifyServerOptions['logger'];
}

/** Builds the HTTP app without listening; `server.ts` listens, tests use inject() or a real port. */
export function buildApp(opts: AppOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: 1024 * 1024,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : crypto.randomUUID();
    },
  });

  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(ErrorCode.NotFound, `no route ${req.method} ${req.url.split('?')[0]}`));
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof ApiError) return reply.code(err.statusCode).send(errorBody(err.code, err.message));
    const status = err.statusCode;
    if (status === 413) return reply.code(413).send(errorBody(ErrorCode.PayloadTooLarge, 'request body too large'));
    if (status && status >= 400 && status < 500) return reply.code(status).send(errorBody(ErrorCode.BadRequest, err.message));
    req.log.error({ err: { type: err.name, code: err.code } }, 'request failed');
    return reply.code(500).send(errorBody(ErrorCode.Internal, 'internal error'));
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_req, reply) => {
    const r = await opts.store.readiness();
    const body = {
      status: r.ok ? 'ready' : 'not_ready',
      checks: {
        store: r.error ? 'unreachable' : 'ok',
        migrations: r.schemaVersion === r.expectedVersion ? 'current' : `at ${r.schemaVersion}, expected ${r.expectedVersion}`,
      },
    };
    return reply.code(r.ok ? 200 : 503).send(body);
  });

  app.get('/metrics/memory', async (_req, reply) => {
    reply.header('content-type', opts.metrics.registry.contentType);
    return opts.metrics.registry.metrics();
  });

  return app;
}

import type { FastifyServerOptions } from 'fastify';

type LogRequest = { method: string; url: string; routeOptions?: { url?: string } };

/**
 * Fastify's logger settings for the service: pino JSON with the request id. A request is logged
 * by its route pattern (`/api/v1/users/:user_id/memory`), never its URL, whose path and query
 * can hold user ids; headers are never logged (tokens), and bodies never are (memory and query
 * text). An unexpected error (a 500) is logged by the error handler with its type, code,
 * message and stack, never the request it came with.
 */
export function logOptions(level: string): NonNullable<Exclude<FastifyServerOptions['logger'], boolean>> {
  return {
    level,
    serializers: {
      req: (req: LogRequest) => ({ method: req.method, route: req.routeOptions?.url ?? `unmatched ${req.url.split('?')[0]!.slice(0, 100)}` }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
    // Whatever a future serializer includes, these never reach a log line.
    redact: { paths: ['req.headers.authorization', 'req.headers["idempotency-key"]', 'headers.authorization'], censor: '[redacted]' },
  };
}

import cors from '@fastify/cors';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** Request headers a browser client sends beyond the CORS-safelisted ones. */
const ALLOWED_HEADERS = ['authorization', 'content-type', 'accept', 'idempotency-key', 'if-match', 'x-request-id', 'relay-consistency'];
/** Response headers a browser client may read. */
const EXPOSED_HEADERS = ['x-request-id', 'retry-after', 'idempotent-replayed', 'relay-consistency', 'www-authenticate', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'];

/**
 * CORS for the browser origins in RELAY_CORS_ORIGINS (`*` for any); none: no CORS headers at
 * all, so only same-origin pages can call the API. Tokens travel in `Authorization`, never in
 * cookies, so credentials are never allowed.
 */
export async function registerCors(app: FastifyInstance, origins: readonly string[] | undefined): Promise<void> {
  if (!origins || origins.length === 0) return;
  await app.register(cors, {
    origin: origins.includes('*') ? '*' : [...origins],
    methods: ['GET', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: ALLOWED_HEADERS,
    exposedHeaders: EXPOSED_HEADERS,
    credentials: false,
    maxAge: 600,
  });
}

/**
 * The headers Fastify's hooks set on `reply` (CORS, rate limit), for a hijacked response (an SSE
 * stream) that writes its head itself: without them a browser could not read the stream.
 */
export function hookHeaders(reply: FastifyReply): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return out;
}

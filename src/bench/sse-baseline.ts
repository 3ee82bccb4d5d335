import Fastify, { type FastifyInstance } from 'fastify';
import { formatEvent, SSE_HEADERS } from '../api/sse.ts';

const RESULT = formatEvent({
  event: 'result',
  id: '00000000-0000-4000-8000-000000000000',
  data: JSON.stringify({ id: '00000000-0000-4000-8000-000000000000', text: 'static', score: 1, metadata: {}, created_at: '2026-01-01T00:00:00.000Z' }),
});
const DONE = formatEvent({ event: 'done', data: JSON.stringify({ count: 1, skipped: 0, ttfv_ms: 0, timings: { embed_ms: 0, search_ms: 0, open_ms: 0, rerank_ms: 0 } }) });

/**
 * The framework's floor for `bench query`: Fastify parsing the same JSON body and streaming one
 * static result and done, with the service's SSE headers. No auth, no store, no embedding.
 */
export function buildBaselineApp(): FastifyInstance {
  const app = Fastify({ logger: false });
  app.post('/api/v1/memory/query', async (_req, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, SSE_HEADERS);
    reply.raw.write(RESULT);
    reply.raw.end(DONE);
  });
  return app;
}

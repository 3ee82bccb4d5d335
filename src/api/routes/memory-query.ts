import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { compileFilter, parseFilter, type Predicate } from '../../store/index.ts';
import type { QueryOutcome } from '../../memory/index.ts';
import { abortOnClose } from '../abort.ts';
import { ConsistencyToken, readPosition } from '../consistency.ts';
import type { ApiDeps } from '../context.ts';
import { hookHeaders } from '../cors.ts';
import { ApiError, ErrorCode, errorBody } from '../errors.ts';
import { toApiError } from '../error-handler.ts';
import { resultBody } from '../present.ts';
import { QueryAnswer, QueryDone, QueryResult, StreamError } from '../responses.ts';
import { API_ERRORS, BODY_ERRORS, documented, EMBED_ERRORS, jsonSchema } from '../route-docs.ts';
import { parse, QueryBody } from '../schemas.ts';
import { actingFor } from '../scope.ts';
import { SseWriter } from '../sse.ts';

type Format = 'sse' | 'json';

/** How well one media range matches a type: 2 exact, 1 a type's wildcard (text/ + *), 0 the full wildcard, -1 not at all. */
function specificity(range: string, type: string): number {
  if (range === type) return 2;
  if (range === '*/*') return 0;
  return range.endsWith('/*') && type.startsWith(range.slice(0, -1)) ? 1 : -1;
}

/**
 * The answer's format by the Accept header (RFC 9110 §12.5.1): each of text/event-stream and
 * application/json gets the q of the most specific range that matches it (`text/*` matches the
 * stream, `application/*` the JSON), and the higher q wins. On a tie the more specific match
 * wins, and between equals the stream, except that the full wildcard alone (or no Accept) means JSON.
 * Neither acceptable: 406.
 */
export function negotiate(accept: string | undefined): Format {
  if (!accept || !accept.trim()) return 'json';
  const ranges = accept.split(',').flatMap((part) => {
    const [range = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => /^q\s*=/.test(p));
    const weight = q === undefined ? 1 : Number(q.slice(q.indexOf('=') + 1).trim());
    // A malformed q is not a preference anyone can act on: that range is left out.
    return range && Number.isFinite(weight) && weight >= 0 && weight <= 1 ? [{ range, q: weight }] : [];
  });
  const score = (type: string) => {
    let best = { q: 0, specificity: -1 };
    for (const r of ranges) {
      const s = specificity(r.range, type);
      if (s > best.specificity) best = { q: r.q, specificity: s };
    }
    return best;
  };
  const sse = score('text/event-stream');
  const json = score('application/json');
  if (sse.q === 0 && json.q === 0) throw new ApiError(406, ErrorCode.NotAcceptable, 'this endpoint answers text/event-stream or application/json');
  if (sse.q !== json.q) return sse.q > json.q ? 'sse' : 'json';
  if (sse.specificity !== json.specificity) return sse.specificity > json.specificity ? 'sse' : 'json';
  return sse.specificity === 0 ? 'json' : 'sse';
}

function compiled(filter: unknown): Predicate | undefined {
  if (filter === undefined) return undefined;
  const parsed = parseFilter(filter);
  return (first) => compileFilter(parsed, first);
}

/** The event stream, one event at a time (OpenAPI 3.1 has no schema for a stream's items). */
const eventStream = {
  description:
    'Server-sent events: one `result` per chunk, best first, with `id:` the chunk id; then one `done`. A failure after the first event is an `error` event, and the stream ends. `data` is JSON text. `: heartbeat` comments keep the connection alive until the answer is ready.',
  oneOf: [
    { title: 'result', type: 'object', properties: { event: { enum: ['result'] }, id: { type: 'string', format: 'uuid' }, data: jsonSchema(QueryResult, 'output') }, required: ['event', 'id', 'data'] },
    { title: 'done', type: 'object', properties: { event: { enum: ['done'] }, data: jsonSchema(QueryDone, 'output') }, required: ['event', 'data'] },
    { title: 'error', type: 'object', properties: { event: { enum: ['error'] }, data: jsonSchema(StreamError, 'output') }, required: ['event', 'data'] },
  ],
};

const doc = documented({
  operationId: 'queryMemory',
  summary: 'Recall: the chunks that best answer a query, streamed or in one body',
  description:
    'Accept: text/event-stream (or text/*) streams the results as they are ready; application/json (or application/*), */* or no Accept answers in one body; q-values choose between the two (the most specific range that matches each counts); anything else is 406. A failure before the first event is a plain HTTP error.',
  tag: 'memory',
  bearer: 'required',
  body: QueryBody,
  headers: { 'Relay-Consistency': ConsistencyToken },
  answers: { 200: { description: 'min(top_k, matching chunks) results', content: { 'application/json': QueryAnswer, 'text/event-stream': eventStream } } },
  errors: [...API_ERRORS, ...BODY_ERRORS, ...EMBED_ERRORS, ErrorCode.InvalidFilter, ErrorCode.NotAcceptable, ErrorCode.InvalidConsistencyToken],
});

const msSince = (t: number) => Math.round((performance.now() - t) * 100) / 100;

/** POST /api/v1/memory/query: embed → scoped search → open → rerank → stream or one body. */
export function memoryQueryRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.post('/api/v1/memory/query', doc, async (req, reply) => {
    const body = parse(QueryBody, req.body);
    const who = actingFor(req, deps.metrics, { userId: body.user_id, tenantId: body.tenant_id }, deps.scopeChecks);
    const filter = compiled(body.filter);
    const format = negotiate(req.headers.accept);
    const input = { query: body.query, topK: body.top_k, filter, rerank: body.rerank, after: await readPosition(req, deps.memory, who.tenantId) };
    const signal = abortOnClose(req, reply);
    const run = () => deps.memory.query(who.tenantId, who.userId, input, signal);
    if (format === 'json') {
      const out = await run();
      const ttfv = performance.now() - req.acceptedAt;
      deps.metrics.api.ttfv(ttfv / 1000);
      return reply.send({
        results: out.results.map(resultBody),
        count: out.results.length,
        skipped: out.skipped.length,
        reranked: out.reranked,
        ttfv_ms: Math.round(ttfv * 100) / 100,
        timings: out.timings,
      } satisfies QueryAnswer);
    }
    reply.hijack();
    await stream(req, reply, deps, run, signal);
  });
}

/**
 * The SSE answer. Headers wait for the first event (or heartbeat), so a failure before then is
 * still a plain HTTP error; after, it is an `error` event and the stream ends. Every stream
 * ends in exactly one outcome: success (done sent), error, or client_abort.
 */
async function stream(req: FastifyRequest, reply: FastifyReply, deps: ApiDeps, run: () => Promise<QueryOutcome>, signal: AbortSignal): Promise<void> {
  const res = reply.raw;
  const sse = new SseWriter(res, { ...hookHeaders(reply), 'x-request-id': req.id });
  const heartbeat = setInterval(() => sse.comment('heartbeat'), deps.limits.heartbeatMs);
  heartbeat.unref();
  try {
    const out = await run();
    signal.throwIfAborted();
    res.cork();
    let ttfv_ms: number | undefined;
    const firstValue = () => {
      if (ttfv_ms !== undefined) return;
      ttfv_ms = msSince(req.acceptedAt);
      deps.metrics.api.ttfv(ttfv_ms / 1000);
    };
    for (const r of out.results) {
      sse.send({ event: 'result', id: r.id, data: JSON.stringify(resultBody(r)) });
      firstValue();
    }
    // With no result, the done event is the first value.
    firstValue();
    const done: QueryDone = { count: out.results.length, skipped: out.skipped.length, reranked: out.reranked, ttfv_ms, timings: out.timings };
    sse.send({ event: 'done', data: JSON.stringify(done) });
    const outcome = signal.aborted || !sse.open ? 'client_abort' : 'success';
    // Ended inside the cork: headers, events and the chunked terminator leave in one write.
    sse.close();
    res.uncork();
    deps.metrics.api.stream(outcome);
  } catch (err) {
    if (signal.aborted) {
      deps.metrics.api.stream('client_abort');
      return;
    }
    deps.metrics.api.stream('error');
    const e = toApiError(err, req);
    if (!sse.headersSent) {
      res.writeHead(e.statusCode, { ...hookHeaders(reply), 'content-type': 'application/json; charset=utf-8', 'x-request-id': req.id, ...e.headers });
      res.end(JSON.stringify(errorBody(e.code, e.message)));
      return;
    }
    sse.send({ event: 'error', data: JSON.stringify({ code: e.code, message: e.message } satisfies StreamError) });
  } finally {
    clearInterval(heartbeat);
    sse.close();
  }
}

import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { OpenedChunk, Unreadable } from '../../memory/index.ts';
import type { ApiDeps } from '../context.ts';
import { chunkBody } from '../present.ts';
import { ChunkAnswer } from '../responses.ts';
import { API_ERRORS, documented, jsonSchema, PATH_ERRORS } from '../route-docs.ts';
import { ErasureParams, ItemQuery, parse } from '../schemas.ts';
import { actingFor } from '../scope.ts';

const TenantOnly = ItemQuery.omit({ user_id: true });

export const NDJSON = 'application/x-ndjson';

const doc = documented({
  operationId: 'exportUserMemory',
  summary: 'Export every live chunk of a user, decrypted, as NDJSON (data-access requests)',
  description:
    'One JSON object per line, each as GET /api/v1/memory/{id} answers it, newest first; expired chunks are left out. ' +
    'Streamed a page at a time (memory stays bounded whatever the user holds). Chunks that do not open (tampered, moved, key destroyed) ' +
    'are skipped and counted in relay_open_failures_total. A failure before the first page is a plain HTTP error; after it the connection ' +
    'is cut before the end of the chunked body, which a client sees as an error, never as a short export.',
  tag: 'memory',
  bearer: 'required',
  params: ErasureParams,
  query: TenantOnly,
  answers: {
    200: {
      description: 'the user\'s chunks, one per line',
      content: { [NDJSON]: { description: 'each line is one of these', ...jsonSchema(ChunkAnswer, 'output') } },
    },
  },
  errors: [...API_ERRORS, ...PATH_ERRORS],
});

type Pages = AsyncGenerator<{ items: OpenedChunk[]; skipped: Unreadable[] }, void, undefined>;

/** The lines of every page, one string per page; pages are read only as the client takes them. */
async function* ndjson(pages: Pages, first: IteratorResult<{ items: OpenedChunk[]; skipped: Unreadable[] }, void>, counts: { exported: number; skipped: number }) {
  try {
    for (let page = first; !page.done; page = await pages.next()) {
      counts.exported += page.value.items.length;
      counts.skipped += page.value.skipped.length;
      if (page.value.items.length > 0) yield page.value.items.map((c) => `${JSON.stringify(chunkBody(c))}\n`).join('');
    }
  } finally {
    // The client went away, or a page failed: nothing more is read.
    await pages.return(undefined);
  }
}

/** GET /api/v1/users/:user_id/memory/export: the user's memory, for a data-access request. Scope as erasure. */
export function exportRoute(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/api/v1/users/:user_id/memory/export', doc, async (req, reply) => {
    const q = parse(TenantOnly, req.query);
    const { user_id: userId } = parse(ErasureParams, req.params);
    const who = actingFor(req, deps.metrics, { userId, tenantId: q.tenant_id }, deps.scopeChecks);
    const pages = deps.memory.exportPages(who.tenantId, who.userId);
    // The first page before any header: a shredded tenant or an unreachable store is a plain error answer.
    const first = await pages.next();
    const counts = { exported: 0, skipped: 0 };
    // highWaterMark 1 byte: a page is read from the store only when the previous one was written out.
    const body = Readable.from(ndjson(pages, first, counts), { objectMode: false, highWaterMark: 1 });
    reply.raw.once('close', () => req.log.info({ exported: counts.exported, skipped: counts.skipped, complete: body.readableEnded }, 'export'));
    return reply.header('content-type', `${NDJSON}; charset=utf-8`).header('cache-control', 'no-store').send(body);
  });
}

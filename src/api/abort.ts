import type { FastifyReply, FastifyRequest } from 'fastify';

/** The reason a request's work is aborted when its client goes away. */
export class ClientGone extends Error {
  readonly code = 'client_abort';
  constructor() {
    super('the client closed the connection');
  }
}

/**
 * A signal that fires when the client disconnects before the response is complete, so the
 * work on its behalf (database statement, embedder or reranker call) stops.
 */
export function abortOnClose(req: FastifyRequest, reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const res = reply.raw;
  res.once('close', () => {
    if (!res.writableFinished) ac.abort(new ClientGone());
  });
  req.raw.once('aborted', () => ac.abort(new ClientGone()));
  return ac.signal;
}

import httpProxy from '@fastify/http-proxy';
import Fastify, { type FastifyInstance } from 'fastify';
import { routeToCandidate, stickyKey } from './bucket.ts';
import { CanaryActionError, statusView, type CanaryController } from './controller.ts';
import type { Side } from './metrics-source.ts';
import type { Plan } from './plan.ts';
import { bearerMatches } from './state.ts';
import { createRouterMetrics } from './router-metrics.ts';
import { statusPage } from './status-page.ts';

declare module 'fastify' {
  interface FastifyRequest {
    canarySide?: Side;
  }
}

export interface RouterOptions {
  controller: CanaryController;
  plan: Plan;
  /** Bearer token of the admin calls (`POST /canary/admin/*`). */
  adminToken: string;
  /** Reverse-proxy every other request (the builtin traffic layer). Default true; false when HAProxy splits. */
  proxy?: boolean;
}

const ADMIN_ACTIONS = ['pause', 'resume', 'abort', 'promote', 'retry'] as const;
type AdminAction = (typeof ADMIN_ACTIONS)[number];

/**
 * The controller's HTTP side, on one port: `/canary/status` (JSON), `/canary` (the page),
 * `/canary/metrics` (the router's own Prometheus metrics),
 * `POST /canary/admin/:action` (bearer token), and every other request reverse-proxied
 * (@fastify/http-proxy over undici) to the release the user's bucket picks at this moment's weight.
 * Responses stream as they come (SSE unbuffered); a client that goes away closes the upstream
 * request; every proxied answer, errors included, says `X-Relay-Release`.
 */
export async function buildRouter(opts: RouterOptions): Promise<FastifyInstance> {
  const { controller } = opts;
  const app = Fastify({ logger: false, return503OnClosing: false });

  app.get('/canary/status', async (_req, reply) => {
    reply.header('cache-control', 'no-store');
    return statusView(controller.state, opts.plan);
  });
  // The router's own metrics: stage, weight, status, decisions and analyses (router-metrics.ts).
  const metrics = createRouterMetrics(controller);
  app.addHook('onClose', async () => metrics.close());
  app.get('/canary/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType).header('cache-control', 'no-store');
    return metrics.registry.metrics();
  });
  app.get('/canary', async (_req, reply) => {
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      // Self-contained: nothing but this page's own inline code and its own status endpoint.
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:")
      .header('x-content-type-options', 'nosniff');
    return statusPage();
  });
  app.post<{ Params: { action: string }; Body: { force?: boolean } | undefined }>('/canary/admin/:action', async (req, reply) => {
    if (!bearerMatches(req.headers.authorization, opts.adminToken)) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: { code: 'unauthorized', message: 'the admin token (admin.token in the state directory) is required' } });
    }
    const action = req.params.action as AdminAction;
    if (!ADMIN_ACTIONS.includes(action)) return reply.code(404).send({ error: { code: 'not_found', message: `no admin action ${req.params.action}` } });
    const force = req.body?.force === true;
    try {
      if (action === 'pause') await controller.pause();
      else if (action === 'resume') await controller.resume();
      else if (action === 'abort') await controller.abort();
      else if (action === 'retry') await controller.retry(force);
      else {
        if (!force) return reply.code(400).send({ error: { code: 'force_required', message: 'promote skips the remaining stages and their guardrails: it needs --force' } });
        await controller.forcePromote();
      }
    } catch (err) {
      if (err instanceof CanaryActionError) return reply.code(err.status).send({ error: { code: 'conflict', message: err.message } });
      throw err;
    }
    return statusView(controller.state, opts.plan);
  });

  if (opts.proxy === false) return app;
  await app.register(async (proxy) => {
    proxy.addHook('onRequest', async (req, reply) => {
      const side: Side = routeToCandidate(stickyKey(req.headers.authorization, req.ip), controller.weight) ? 'candidate' : 'stable';
      req.canarySide = side;
      reply.header('x-relay-release', controller.targets[side].release);
    });
    await proxy.register(httpProxy, {
      upstream: '',
      // Each request's origin is chosen at that moment (getUpstream), so one undici agent
      // keeps pooled connections to both releases.
      undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 },
      replyOptions: {
        getUpstream: (req) => controller.targets[req.canarySide ?? 'stable'].url,
      },
    });
  });
  return app;
}

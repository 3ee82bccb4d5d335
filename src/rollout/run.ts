import type { FastifyInstance } from 'fastify';
import { CanaryController } from './controller.ts';
import { MetricsSourceError, parseMetricsSourceSpec, prometheusSource, scrapeSource, snapshotFromText, type MetricsSource, type Side } from './metrics-source.ts';
import type { Plan } from './plan.ts';
import { buildRouter } from './router.ts';
import { StateStore } from './state.ts';
import { haproxyTraffic, parseTrafficSpec, type TrafficLayer } from './traffic/index.ts';

export interface CanaryRunOptions {
  stableUrl: string;
  candidateUrl: string;
  plan: Plan;
  /** `host:port` of the router; port 0 picks a free one. Default 127.0.0.1:8080. */
  listen?: string;
  /** `scrape` (default) or `prometheus=URL`. */
  metricsSource?: string;
  /** State file, audit log and admin token. Default ./.relay-canary. */
  stateDir?: string;
  /**
   * `builtin` (default: the router splits) or `haproxy=<runtime API socket>`: HAProxy splits and
   * the controller sets its weights (`haproxy` names the backend and servers).
   */
  traffic?: string;
  haproxy?: { backend: string; stableServer: string; candidateServer: string };
  /** The services' RELAY_METRICS_TOKEN, when /metrics/memory is guarded. */
  metricsToken?: string;
  /** Release names; read from each service's relay_build_info when omitted. */
  releases?: Partial<Record<Side, string>>;
  log?: (entry: Record<string, unknown>) => void;
}

export interface CanaryRun {
  url: string;
  controller: CanaryController;
  store: StateStore;
  adminToken: string;
  router: FastifyInstance;
  traffic: TrafficLayer | null;
  close(): Promise<void>;
}

async function releaseOf(url: string, metricsToken: string | undefined): Promise<string> {
  const res = await fetch(new URL('/metrics/memory', url), { headers: metricsToken ? { authorization: `Bearer ${metricsToken}` } : {}, signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new MetricsSourceError(`${url}/metrics/memory: HTTP ${res.status}`);
  const release = snapshotFromText(await res.text()).release;
  if (!release) throw new MetricsSourceError(`${url}: no relay_build_info{release}`);
  return release;
}

/**
 * `relay canary run`: the controller, its router (or HAProxy, with `traffic: haproxy=…`) and its
 * analysis loop. Either way the analysis reads each release's own /metrics/memory at the
 * --stable/--candidate URLs (or Prometheus by release label): with HAProxy the router sees no
 * request, and nothing in the analysis needs it to.
 */
export async function startCanary(opts: CanaryRunOptions): Promise<CanaryRun> {
  const trafficSpec = parseTrafficSpec(opts.traffic ?? 'builtin');
  let traffic: TrafficLayer | null = null;
  if (trafficSpec.kind === 'haproxy') {
    if (!opts.haproxy) throw new MetricsSourceError('--traffic haproxy=… needs --backend, --stable-server and --candidate-server');
    traffic = haproxyTraffic({ socket: trafficSpec.socket, ...opts.haproxy });
    // Fails at start on a socket that does not answer or a backend/server HAProxy does not have.
    await traffic.read();
  }
  const urls: Record<Side, string> = { stable: opts.stableUrl, candidate: opts.candidateUrl };
  const releases: Record<Side, string> = {
    stable: opts.releases?.stable ?? (await releaseOf(urls.stable, opts.metricsToken)),
    candidate: opts.releases?.candidate ?? (await releaseOf(urls.candidate, opts.metricsToken)),
  };
  if (releases.stable === releases.candidate) throw new MetricsSourceError(`stable and candidate both say release ${releases.stable}: give each its own RELAY_RELEASE`);
  const spec = parseMetricsSourceSpec(opts.metricsSource ?? 'scrape');
  const source: MetricsSource = spec.kind === 'scrape' ? scrapeSource({ urls, metricsToken: opts.metricsToken }) : prometheusSource({ url: spec.url, releases });
  const store = new StateStore(opts.stateDir ?? '.relay-canary');
  const adminToken = store.adminToken();
  const controller = new CanaryController({
    plan: opts.plan,
    source,
    store,
    targets: { stable: { url: urls.stable, release: releases.stable }, candidate: { url: urls.candidate, release: releases.candidate } },
    ...(traffic ? { traffic } : {}),
    log: opts.log,
  });
  // The router (and its metrics) first, so they count the controller's first decision too.
  const router = await buildRouter({ controller, plan: opts.plan, adminToken, proxy: traffic === null });
  controller.start();
  await controller.synced;
  const [host, port] = (opts.listen ?? '127.0.0.1:8080').split(/:(?=\d+$)/);
  try {
    await router.listen({ host: host || '127.0.0.1', port: Number(port ?? 8080) });
  } catch (err) {
    await controller.stop();
    throw err;
  }
  const addr = router.server.address();
  const url = typeof addr === 'object' && addr ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : String(addr);
  return {
    url,
    controller,
    store,
    adminToken,
    router,
    traffic,
    async close() {
      await controller.stop();
      await router.close();
    },
  };
}

import type { Principal, TokenVerifier } from '../auth/index.ts';
import type { ApiConfig } from '../config/index.ts';
import type { MemoryService } from '../memory/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { Store } from '../store/index.ts';
import type { ScopeChecks } from './scope.ts';

/** Everything the routes need, built once by the caller and passed in (no config read at import). */
export interface ApiDeps {
  store: Store;
  metrics: Metrics;
  memory: MemoryService;
  verifier: TokenVerifier;
  /** With `redisUrl`, the rate limit is counted in Redis for every replica (src/api/rate-limit.ts). */
  limits: Pick<ApiConfig, 'rateLimitPerMin' | 'bodyLimitBytes' | 'heartbeatMs'> & Partial<Pick<ApiConfig, 'corsOrigins' | 'redisUrl' | 'rateLimitRequired'>>;
  /** RELAY_METRICS_TOKEN: when set, /metrics/memory needs `Authorization: Bearer <it>`. */
  metricsToken?: string;
  /** Models loaded in the background (the reranker): /readyz is not ready until each is. */
  models?: Record<string, { check(): { ok: boolean; detail: string } }>;
  /** Whether the configured master key opens the key catalog (`checkMasterKey`): /readyz is not ready until it does. */
  masterKeyCheck?: () => Promise<{ ok: boolean; detail: string }>;
  /** Tests only: the scope checks of `actingFor`; default both on (`relay serve` never sets it). */
  scopeChecks?: Readonly<ScopeChecks>;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every /api route; null elsewhere. */
    principal: Principal | null;
    /** performance.now() when the request arrived: TTFV starts here. */
    acceptedAt: number;
  }
}

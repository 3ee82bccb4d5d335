import type { RerankProvider } from './types.ts';

export interface ModelReadiness {
  /** Loaded: ok with the model's id; not yet, or failed: not ok, and a load is retried. */
  check(): { ok: boolean; detail: string };
  /** Starts loading (also called by `check` after a failure, at most once per `retryMs`). */
  load(): void;
}

/**
 * Tracks a model that loads in the background, for /readyz: not ready until it has loaded,
 * and a failed load is tried again (after `retryMs`) whenever readiness is asked, so the
 * service recovers by itself once the model folder or service is there.
 */
export function trackModel(load: () => Promise<RerankProvider>, opts: { retryMs?: number; onError?: (err: unknown) => void } = {}): ModelReadiness {
  let loaded: RerankProvider | null = null;
  let loading = false;
  let failedAt = -Infinity;
  let failure = '';
  const start = () => {
    if (loaded || loading) return;
    loading = true;
    load().then(
      (p) => {
        loaded = p;
        loading = false;
      },
      (err: unknown) => {
        loading = false;
        failedAt = performance.now();
        failure = (err as { code?: string }).code ?? (err as Error)?.name ?? 'error';
        opts.onError?.(err);
      },
    );
  };
  return {
    load: start,
    check() {
      if (loaded) return { ok: true, detail: loaded.id };
      if (!loading && performance.now() - failedAt >= (opts.retryMs ?? 5000)) start();
      return { ok: false, detail: failure ? `not loaded (${failure}); retrying` : 'loading' };
    },
  };
}

import type { FastifyInstance } from 'fastify';
import type { SweepOutcome } from '../metrics/index.ts';
import type { Store } from '../store/index.ts';
import { buildApp, type AppOptions } from './app.ts';

export interface ServerOptions extends AppOptions {
  host: string;
  port: number;
  /** How long in-flight requests (streams) may take to finish on shutdown before their connections are cut. Default 10 s. */
  shutdownGraceMs?: number;
  /**
   * How long `drain()` keeps serving, with /readyz at 503, before the close: long enough for a
   * load balancer's health check to take the replica out (RELAY_DRAIN_MS). Default 0: no drain.
   */
  drainMs?: number;
  /** Seconds between expiry sweeps; 0 turns the sweep off. Default 60. */
  sweepIntervalS?: number;
}

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  /**
   * Turns /readyz to 503 (check `draining`) and keeps serving every request, in flight and new,
   * for `drainMs`; resolves then, or at once when `endDrain()` is called. Safe to call twice.
   */
  drain(): Promise<void>;
  /** Cuts a drain short (a second signal): `drain()` resolves now. */
  endDrain(): void;
  /** Whether the drain has begun (it stays true through the close). */
  readonly draining: boolean;
  /** Drains (if not yet done), then stops accepting, lets in-flight requests finish (bounded), stops the sweep, closes the store. */
  close(): Promise<void>;
}

/**
 * Deletes expired rows for good, every `intervalS`. Reads never return an expired row in the
 * meantime. Replicas on one server database take turns (`Store.sweep`): one sweeps each
 * interval, the others skip (`onTurn` counts both). A turn is due again after 0.9 of the
 * interval, so the replica that swept last keeps the turn although its timer and its
 * transaction's start wander a little. A failure is logged and tried again next tick.
 */
export function startSweeper(
  store: Store,
  intervalS: number,
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void },
  onTurn?: (outcome: SweepOutcome) => void,
): () => Promise<void> {
  let running: Promise<void> | null = null;
  const minGapMs = Math.round(intervalS * 900);
  const tick = async () => {
    try {
      const swept = await store.sweep({ minGapMs });
      onTurn?.(swept.ran ? 'ran' : 'skipped');
      if (swept.chunks > 0 || swept.idempotencyKeys > 0) log.info({ chunks: swept.chunks, idempotencyKeys: swept.idempotencyKeys }, 'expiry sweep');
    } catch (err) {
      log.warn({ err: { code: (err as { code?: string }).code } }, 'expiry sweep failed');
    }
  };
  const timer = setInterval(() => {
    running ??= tick().finally(() => {
      running = null;
    });
  }, intervalS * 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/** Builds the app, listens, and returns a handle whose `close` shuts down gracefully. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  let draining = false;
  let drained: Promise<void> | null = null;
  let endDrain = () => undefined as void;
  const app = await buildApp({ ...opts, draining: () => draining });
  await app.listen({ host: opts.host, port: opts.port });
  const stopSweep = opts.sweepIntervalS === 0 ? async () => undefined : startSweeper(opts.store, opts.sweepIntervalS ?? 60, app.log, opts.metrics.sweep);
  const addr = app.server.address();
  const url = typeof addr === 'object' && addr ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : String(addr);
  const drain = () =>
    (drained ??= new Promise<void>((resolve) => {
      draining = true;
      // No drain: close in this turn, not a timer's later one, so the listener stops before
      // anything else can connect.
      if (!((opts.drainMs ?? 0) > 0)) return resolve();
      const timer = setTimeout(resolve, opts.drainMs);
      endDrain = () => {
        clearTimeout(timer);
        resolve();
      };
    }));
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      await drain();
      const grace = opts.shutdownGraceMs ?? 10_000;
      // Fastify stops accepting, answers new requests on kept-alive sockets with 503, closes idle
      // sockets, and resolves once in-flight requests are done; past the grace, cut them.
      const cut = setTimeout(() => app.server.closeAllConnections(), grace);
      try {
        await app.close();
      } finally {
        clearTimeout(cut);
        await stopSweep();
        await opts.store.close();
      }
    })());
  return {
    app,
    url,
    drain,
    endDrain: () => endDrain(),
    get draining() {
      return draining;
    },
    close,
  };
}

import { freePort, portAccepts, startDaemon, type Daemon } from './daemon.ts';

export interface RedisOptions {
  /** Default: a free port. Given, a Redis can come back on the port of one that was killed. */
  port?: number;
  /** `requirepass`: clients must AUTH with it (the URL carries it). Default: none. */
  password?: string;
}

export interface RedisServer {
  /** `redis://[:password@]127.0.0.1:<port>`: what RELAY_REDIS_URL takes. */
  url: string;
  port: number;
  /** Stop it with `daemon.stop()`; `daemon.kill('SIGKILL')` is a crash. */
  daemon: Daemon;
}

/**
 * A redis-server of the caller's own (Debian's package), on a free port of 127.0.0.1, as OS user
 * redis when we are root, with nothing written to disk (`--save ''`, no append-only file): a
 * rate-limit store for tests and benchmarks, never the machine's shared Redis.
 */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const auth = opts.password ? ['--requirepass', opts.password] : [];
  const daemon = await startDaemon({
    name: 'redis',
    program: 'redis-server',
    user: 'redis',
    args: (dir) => ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', '', ...auth],
    ready: () => portAccepts(port),
  });
  const user = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  return { url: `redis://${user}127.0.0.1:${port}`, port, daemon };
}

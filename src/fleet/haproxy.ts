import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { freePort, portAccepts, startDaemon, type Daemon } from './daemon.ts';

/** One `relay serve` replica behind the balancer. */
export interface Backend {
  host: string;
  port: number;
}

export interface HaproxyOptions {
  /**
   * The replicas, named r0, r1, … in this order. A replica restarted on the same address is the
   * same server to HAProxy: its health check takes it out while it drains and puts it back once
   * its /readyz answers 200 again, so nothing is reconfigured during a rolling restart.
   */
  backends: readonly Backend[];
  /** How often each replica's `GET /readyz` is checked. Default 500 ms. */
  checkIntervalMs?: number;
  /** Failed checks in a row that take a replica out. Default 2 (out within about 1 s at 500 ms). */
  fall?: number;
  /** Passed checks in a row that put it back. Default 2. */
  rise?: number;
  /**
   * The longest a replica's answer may stay silent (`timeout server`, and `timeout tunnel`):
   * must be above RELAY_SSE_HEARTBEAT_MS (15 s), or idle SSE streams are cut. Default 60 s.
   */
  serverTimeoutMs?: number;
  /** The longest a client may stay silent on its connection. Default 60 s. */
  clientTimeoutMs?: number;
  /** The port to listen on. Default: a free one. */
  port?: number;
  /** The address to listen on. Default 127.0.0.1. */
  bindAddress?: string;
}

/** A server's state as HAProxy sees it: `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (coming up), `MAINT`, … */
export interface ServerState {
  name: string;
  status: string;
}

export interface Haproxy {
  /** http://127.0.0.1:port: the service as clients reach it. */
  url: string;
  port: number;
  daemon: Daemon;
  /** The configuration it runs with (haproxy.cfg). */
  config: string;
  /** Each backend server's state now (from the stats socket's `show stat`). */
  servers(): Promise<ServerState[]>;
  /** Resolves once server `name` (r0, r1, …) is in `status` (`UP` or `DOWN`); rejects after `ms`. */
  waitFor(name: string, status: 'UP' | 'DOWN', ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The `defaults` section both configurations run (startHaproxy's and the canary's,
 * src/rollout/traffic/): HTTP mode, a log line per health-check state change, timeouts long
 * enough for SSE streams, and retries only of connections that never reached a server.
 */
export function haproxyDefaults(o: { clientTimeout: string; serverTimeoutMs: number; checkIntervalMs: number }): string[] {
  return [
    'defaults',
    '  mode http',
    // In the foreground (-db) HAProxy writes its warnings to stderr: with this, each health
    // check that changes a server's state (taken out, put back), not one line per request.
    '  option log-health-checks',
    '  timeout connect 2s',
    `  timeout client ${o.clientTimeout}`,
    `  timeout server ${o.serverTimeoutMs}ms`,
    `  timeout tunnel ${o.serverTimeoutMs}ms`,
    '  timeout http-request 10s',
    '  timeout http-keep-alive 10s',
    `  timeout check ${Math.max(1000, 2 * o.checkIntervalMs)}ms`,
    // Only the default retry-on (conn-failure): a request that never reached a server is tried
    // again, on another one (redispatch on every retry). A request that did reach one is never
    // replayed: a write could land twice.
    '  retries 3',
    '  option redispatch 1',
    '',
  ];
}

/**
 * The configuration startHaproxy runs: round robin over the replicas, each checked with
 * `GET /readyz` (only a 200 keeps it in), connection failures retried on another replica (safe
 * for any request: it never reached a replica), and timeouts long enough for SSE streams.
 */
export function haproxyConfig(opts: HaproxyOptions & { port: number; statsSocket: string }): string {
  const inter = opts.checkIntervalMs ?? 500;
  const serverTimeout = opts.serverTimeoutMs ?? 60_000;
  const lines = [
    'global',
    '  maxconn 4096',
    `  stats socket ${opts.statsSocket} mode 600 level operator`,
    '',
    ...haproxyDefaults({ clientTimeout: `${opts.clientTimeoutMs ?? 60_000}ms`, serverTimeoutMs: serverTimeout, checkIntervalMs: inter }),
    'frontend relay',
    `  bind ${opts.bindAddress ?? '127.0.0.1'}:${opts.port}`,
    '  default_backend replicas',
    '',
    'backend replicas',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    `  default-server inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall ${opts.fall ?? 2} rise ${opts.rise ?? 2}`,
    ...opts.backends.map((b, i) => `  server r${i} ${b.host}:${b.port} check`),
    '',
  ];
  return lines.join('\n');
}

/** One command on HAProxy's stats socket; resolves with its whole answer. */
function ask(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket);
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.once('error', reject);
    s.once('end', () => resolve(out));
    s.once('connect', () => s.write(`${command}\n`));
  });
}

/** The `show stat` CSV's server rows of one backend. */
export function parseServerStates(csv: string, backend: string): ServerState[] {
  const [header, ...rows] = csv.trim().split('\n');
  const cols = (header ?? '').replace(/^# /, '').split(',');
  const px = cols.indexOf('pxname');
  const sv = cols.indexOf('svname');
  const st = cols.indexOf('status');
  return rows
    .map((r) => r.split(','))
    .filter((c) => c[px] === backend && c[sv] !== 'BACKEND' && c[sv] !== 'FRONTEND')
    .map((c) => ({ name: c[sv]!, status: c[st]! }));
}

/**
 * Debian's HAProxy (/usr/sbin/haproxy, 2.6) in the foreground (`-db`) in front of the given
 * replicas, on a free port, as OS user haproxy when we are root; resolves once it accepts
 * connections. Stopped by PID (stop()).
 */
export async function startHaproxy(opts: HaproxyOptions): Promise<Haproxy> {
  if (opts.backends.length === 0) throw new Error('haproxy: no backends');
  const port = opts.port ?? (await freePort());
  let config = '';
  let statsSocket = '';
  const daemon = await startDaemon({
    name: 'haproxy',
    program: 'haproxy',
    user: 'haproxy',
    prepare: (dir) => {
      statsSocket = join(dir, 'stats.sock');
      config = haproxyConfig({ ...opts, port, statsSocket });
      writeFileSync(join(dir, 'haproxy.cfg'), config);
    },
    args: (dir) => ['-db', '-f', join(dir, 'haproxy.cfg')],
    ready: () => portAccepts(port),
  });
  const servers = async () => parseServerStates(await ask(statsSocket, 'show stat'), 'replicas');
  return {
    url: `http://${opts.bindAddress && opts.bindAddress !== '0.0.0.0' ? opts.bindAddress : '127.0.0.1'}:${port}`,
    port,
    daemon,
    config,
    servers,
    async waitFor(name, status, ms = 30_000) {
      const deadline = Date.now() + ms;
      let last: ServerState[] = [];
      while (Date.now() < deadline) {
        last = await servers().catch(() => []);
        if (last.find((s) => s.name === name)?.status === status) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`haproxy: ${name} not ${status} after ${ms} ms (${JSON.stringify(last)}):\n${daemon.output().slice(-2000)}`);
    },
    stop: () => daemon.stop(),
  };
}

/** HAProxy running a configuration its caller wrote (e.g. the canary's: src/rollout/traffic/). */
export interface HaproxyWith {
  url: string;
  port: number;
  daemon: Daemon;
  config: string;
  /** The runtime API socket (`admin.sock` in its temp folder). */
  socket: string;
}

/**
 * Debian's HAProxy in the foreground with the configuration `config` writes for a free port and a
 * runtime API socket in its temp folder (owned by the OS user haproxy, mode 600: only that user
 * and root may use it); resolves once it accepts connections. Stopped by PID (daemon.stop()).
 */
export async function startHaproxyWith(opts: { config: (o: { port: number; socket: string }) => string }): Promise<HaproxyWith> {
  const port = await freePort();
  let config = '';
  let socket = '';
  const daemon = await startDaemon({
    name: 'haproxy',
    program: 'haproxy',
    user: 'haproxy',
    prepare: (dir) => {
      socket = join(dir, 'admin.sock');
      config = opts.config({ port, socket });
      writeFileSync(join(dir, 'haproxy.cfg'), config);
    },
    args: (dir) => ['-db', '-f', join(dir, 'haproxy.cfg')],
    ready: () => portAccepts(port),
  });
  return { url: `http://127.0.0.1:${port}`, port, daemon, config, socket };
}

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fleet part (redis-server, pgbouncer, haproxy, …) run from its Debian package in the
 * foreground by the benchmark or test that needs it: on a free port, with its files in a temp
 * folder of its own, as an unprivileged OS user when we are root (pgbouncer refuses root), and
 * stopped by PID. Never systemd, never the machine's shared services.
 */
export interface Daemon {
  name: string;
  pid: number;
  /** Its temp folder (config, logs, sockets); removed by stop(). */
  dir: string;
  /** The last 20,000 characters it wrote to stdout and stderr. */
  output(): string;
  /** Resolves with the exit code once it has exited (null: by a signal). */
  exited: Promise<number | null>;
  /** Sends a signal (SIGKILL: a crash; SIGTERM: a clean stop). */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; removes its folder. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

/** A TCP port on 127.0.0.1 that nothing listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no free port'))));
    });
  });
}

/** The path of a Debian package's program (`/usr/sbin/haproxy`, …), or null when it is not installed. */
export function findProgram(name: string): string | null {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  return null;
}

/** Uid and gid of an OS user, or null when there is none. */
function osUser(name: string): { uid: number; gid: number } | null {
  const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) return null;
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Whether a TCP connection to 127.0.0.1:port is accepted now. */
export function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface DaemonOptions {
  name: string;
  /** A program name looked up with findProgram, or an absolute path. */
  program: string;
  /** Its arguments; `dir` is the temp folder (write its config there first with `prepare`). */
  args: (dir: string) => string[];
  /** Writes config files into the folder before the start. */
  prepare?: (dir: string) => void;
  /** Run as this OS user when we are root (the folder is given to it). Default: as we are. */
  user?: string;
  /** Resolves true once it serves; polled every 100 ms. */
  ready: () => Promise<boolean>;
  /** How long it may take to be ready. Default 30 s. */
  readyMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Starts a fleet part in the foreground and waits until `ready` says it serves. */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const program = opts.program.startsWith('/') ? opts.program : findProgram(opts.program);
  if (!program) throw new Error(`${opts.name}: ${opts.program} is not installed (Debian package; .ci/run and scripts/install-fleet.sh install it)`);
  const dir = mkdtempSync(join(tmpdir(), `relay-${opts.name}-`));
  const asRoot = process.getuid?.() === 0;
  const user = asRoot && opts.user ? osUser(opts.user) : null;
  if (asRoot && opts.user && !user) throw new Error(`${opts.name}: no OS user ${opts.user}`);
  opts.prepare?.(dir);
  if (user) {
    chmodSync(dir, 0o755);
    spawnSync('chown', ['-R', `${user.uid}:${user.gid}`, dir]);
    chownSync(dir, user.uid, user.gid);
  }
  const proc: ChildProcess = spawn(program, opts.args(dir), {
    cwd: dir,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let stopped = false;
  const daemon: Daemon = {
    name: opts.name,
    pid: proc.pid ?? -1,
    dir,
    output: () => out,
    exited,
    kill: (signal) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
    stop: async (graceMs = 10_000) => {
      if (stopped) return;
      stopped = true;
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const killer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + (opts.readyMs ?? 30_000);
  try {
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${opts.name} exited (${proc.exitCode ?? proc.signalCode}):\n${out}`);
      if (await opts.ready().catch(() => false)) return daemon;
      if (Date.now() > deadline) throw new Error(`${opts.name} not ready after ${opts.readyMs ?? 30_000} ms:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await daemon.stop(1000);
    throw err;
  }
}

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { join } from 'node:path';

/**
 * A throwaway PostgreSQL cluster of the test's own (initdb into a temp folder, a free port on
 * 127.0.0.1, trust auth, its socket in the folder), for fault tests that stop, restart or lock
 * the database: never the machine's shared server. `relay db setup` makes the roles, pgvector
 * and the schema in it. Run as root, the server runs as the `postgres` OS user (it refuses root).
 */
export interface PgCluster {
  port: number;
  /** superuser login */
  adminUrl: string;
  /** `app_user` login of the relay database (DATABASE_URL) */
  appUrl: string;
  /** owner login of the relay database (RELAY_MIGRATE_URL) */
  ownerUrl: string;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  /** `pg_ctl restart -m fast` */
  restart(): Promise<void>;
  /** Stops the server and removes its folder. */
  destroy(): void;
}

/** The newest PostgreSQL installation's bin folder with initdb and pg_ctl, or null (a Node-only machine). */
export function postgresBinDir(): string | null {
  const fromEnv = process.env.RELAY_TEST_PG_BINDIR;
  if (fromEnv) return existsSync(join(fromEnv, 'initdb')) ? fromEnv : null;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(root, v, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin;
  }
  return null;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** A server in a temp folder of its own, run as the postgres OS user when the test runs as root. */
async function serverIn(bin: string, prefix: string, fileSizeBytes?: number) {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const data = join(root, 'data');
  const asRoot = process.getuid?.() === 0;
  // As root: everything below runs as the postgres OS user, which must own the folder.
  if (asRoot) {
    chmodSync(root, 0o755);
    execFileSync('chown', ['postgres:postgres', root]);
  }
  // A file-size limit on the server's processes (util-linux's prlimit), inherited by each backend.
  const limit = fileSizeBytes === undefined ? [] : ['prlimit', `--fsize=${fileSizeBytes}`];
  const command = (cmd: string, args: string[]): [string, string[]] => {
    const line = [...limit, join(bin, cmd), ...args];
    return asRoot ? ['runuser', ['-u', 'postgres', '--', ...line]] : [line[0]!, line.slice(1)];
  };
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(...command(cmd, args), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  // pg_ctl without blocking the test's event loop: its load keeps running while the server stops and starts.
  const runAsync = async (cmd: string, args: string[]) => {
    await promisify(execFile)(...command(cmd, args)).catch((err: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`${cmd} ${args.join(' ')} failed:\n${err.stdout}\n${err.stderr}`);
    });
  };
  const port = await freePort();
  /** Server control once `data` holds a cluster; `settings` are extra `-c` options. */
  const control = (settings: string[] = []) => {
    const opts = [`-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c max_connections=50`, ...settings.map((s) => `-c ${s}`)].join(' ');
    const startArgs = ['-D', data, '-l', join(root, 'log'), '-o', opts, '-w', '-t', '60', 'start'];
    const stopArgs = (mode: string) => ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'];
    let running = false;
    return {
      start: async () => {
        await runAsync('pg_ctl', startArgs);
        running = true;
      },
      stop: async (mode: 'fast' | 'immediate' = 'fast') => {
        await runAsync('pg_ctl', stopArgs(mode));
        running = false;
      },
      restart: () => runAsync('pg_ctl', ['-D', data, '-l', join(root, 'log'), '-o', opts, '-m', 'fast', '-w', '-t', '60', 'restart']),
      destroy: () => {
        try {
          if (running) run('pg_ctl', stopArgs('immediate'));
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      },
    };
  };
  return { root, data, port, run, control };
}

export interface PgClusterOptions {
  /** Extra server settings (`-c name=value`). */
  settings?: string[];
  /**
   * The largest file the server may write (RLIMIT_FSIZE): a dynamic shared memory segment above it
   * cannot be sized, as one larger than Docker's 64 MB /dev/shm cannot (PostgreSQL ignores SIGXFSZ
   * and reports the error). Keep it above 16 MB, a WAL segment.
   */
  fileSizeBytes?: number;
}

export async function startPgCluster(bin: string, opts: PgClusterOptions = {}): Promise<PgCluster> {
  const { data, port, run, control } = await serverIn(bin, 'relay-pgcluster-', opts.fileSizeBytes);
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const cluster: PgCluster = {
    port,
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    appUrl: '',
    ownerUrl: '',
    ...control(opts.settings),
  };
  try {
    await cluster.start();
    const setup = spawnSync(process.execPath, ['bin/relay.mjs', 'db', 'setup', '--admin-url', cluster.adminUrl, '--db', 'relay_faults'], { encoding: 'utf8', env: { ...process.env, LOG_LEVEL: 'warn' } });
    const url = (name: string) => new RegExp(`^${name}=(.+)$`, 'm').exec(setup.stdout ?? '')?.[1];
    const appUrl = url('DATABASE_URL');
    const ownerUrl = url('RELAY_MIGRATE_URL');
    if (setup.status !== 0 || !appUrl || !ownerUrl) throw new Error(`relay db setup failed (${setup.status}):\n${setup.stdout}\n${setup.stderr}`);
    cluster.appUrl = appUrl;
    cluster.ownerUrl = ownerUrl;
    return cluster;
  } catch (err) {
    cluster.destroy();
    throw err;
  }
}

/** A hot standby of a `startPgCluster` cluster, streaming from it. */
export interface PgStandby {
  port: number;
  /** The primary's `app_user` login, on the standby. */
  appUrl: string;
  adminUrl: string;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  destroy(): void;
}

/**
 * `pg_basebackup -R` of `primary` into a temp folder, started as a hot standby on a free port.
 * `applyDelayMs` sets `recovery_min_apply_delay`: the standby then replays each commit that much
 * after the primary made it, so a read that goes there too early visibly misses a write.
 */
export async function startStandby(bin: string, primary: PgCluster, opts: { applyDelayMs?: number } = {}): Promise<PgStandby> {
  const { data, port, run, control } = await serverIn(bin, 'relay-pgstandby-');
  run('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', data, '-R', '-X', 'stream', '--no-sync', '--checkpoint=fast']);
  const server = control(['hot_standby=on', `recovery_min_apply_delay=${opts.applyDelayMs ?? 0}`]);
  const url = (login: string) => {
    const u = new URL(login);
    u.port = String(port);
    return u.href;
  };
  const standby: PgStandby = { port, appUrl: url(primary.appUrl), adminUrl: url(primary.adminUrl), ...server };
  try {
    await standby.start();
    return standby;
  } catch (err) {
    standby.destroy();
    throw err;
  }
}

/** One session of its own on `url`, ended after `fn`. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

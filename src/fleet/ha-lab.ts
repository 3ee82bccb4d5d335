import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * The high-availability lab of scripts/ha-lab.sh for failover tests and `relay bench failover`: etcd, two Patroni-managed
 * PostgreSQL nodes (synchronous replication, pg_rewind) and HAProxy with a primary port (follows
 * Patroni's leader) and a replica port, on free ports under one temp folder. `startHaLab()` runs
 * `ha-lab.sh up`, `down()` runs `ha-lab.sh down`: the same lab a person starts by hand.
 * Needs Debian's patroni, etcd-server, haproxy and PostgreSQL (scripts/install-fleet.sh); as root
 * the servers run as the postgres / etcd OS users.
 */
export interface HaLab {
  /** The lab's folder (state.env, logs, node configs). */
  dir: string;
  /** `app_user` through HAProxy's primary port (DATABASE_URL). */
  databaseUrl: string;
  /** `app_user` through HAProxy's replica port (RELAY_READ_DATABASE_URL). */
  readUrl: string;
  /** Owner through HAProxy's primary port (RELAY_MIGRATE_URL). */
  migrateUrl: string;
  /** The `postgres` superuser through HAProxy's primary port. */
  adminUrl: string;
  /** Patroni's ttl, loop_wait and retry_timeout in seconds: a failover takes about `ttl`. */
  ttl: number;
  loopWait: number;
  retryTimeout: number;
  nodes: HaLabNode[];
  /** The node that passes Patroni's REST `/primary` now (null: none, e.g. mid-failover). */
  primary(): Promise<string | null>;
  /**
   * Polls `/primary` until a node passes it (`not`: one other than that node; `is`: that node) and
   * returns its name; throws after `timeoutMs` (default 60 s) with the lab's logs.
   */
  waitForPrimary(opts?: { not?: string; is?: string; timeoutMs?: number }): Promise<string>;
  /** kill -9 of the node's Patroni and then its postmaster (a crash of the machine, as the cluster sees it). */
  killNode(name: string): void;
  /** kill -9 of the node's postmaster alone: Patroni, still running, starts it again in place. */
  killPostmaster(name: string): void;
  /**
   * Patroni's `synchronous_mode` on or off (`patronictl edit-config`); resolves once the primary's
   * `synchronous_standby_names` says so.
   */
  setSynchronous(on: boolean): Promise<void>;
  /** Starts the node's Patroni again: it rejoins as a replica (pg_rewind when its timeline diverged). */
  startNode(name: string): Promise<void>;
  /** `patronictl switchover --leader <primary> --candidate <other or given> --force`; resolves once the candidate passes /primary. */
  switchover(candidate?: string): Promise<string>;
  /** `patronictl list` as data. */
  status(): Promise<HaLabMember[]>;
  /** The last `lines` (default 60) lines of every log of the lab, each under a header. */
  logs(lines?: number): string;
  /** `ha-lab.sh down`: stops everything and removes the folder. */
  down(): Promise<void>;
}

export interface HaLabNode {
  name: string;
  /** Patroni's REST API, e.g. http://127.0.0.1:PORT */
  restUrl: string;
}

export interface HaLabMember {
  name: string;
  /** `Leader`, `Sync Standby`, `Replica` */
  role: string;
  /** `running`, `streaming`, `starting`, `stopped`, `crashed`, … */
  state: string;
  timeline: number | null;
  /** Replication lag in MB; null for the leader or when Patroni does not know it. */
  lagMb: number | null;
}

const script = fileURLToPath(new URL('../../scripts/ha-lab.sh', import.meta.url));
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** Whether a PostgreSQL installation with initdb is there (as scripts/ha-lab.sh looks for one). */
function hasPostgres(): boolean {
  const root = '/usr/lib/postgresql';
  return existsSync(root) && readdirSync(root).some((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')));
}

/** Whether this machine has what the lab needs (Linux, patroni, etcd, haproxy, PostgreSQL). */
export function haLabAvailable(): boolean {
  if (process.platform !== 'linux') return false;
  return ['/usr/bin/patroni', '/usr/bin/patronictl', '/usr/bin/etcd', '/usr/sbin/haproxy'].every((p) => existsSync(p)) && hasPostgres();
}

/** The environment for patronictl and the script: none of the caller's PATRONI_* (they override a Patroni config). */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PATRONI_')));
}

async function runScript(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run('bash', [script, ...args], { cwd: repoRoot, env: cleanEnv(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string; code?: number | string; signal?: string };
    throw new Error(`ha-lab.sh ${args.join(' ')} failed (${e.code ?? e.signal}):\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

async function httpStatus(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1500) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}

/** A PID from the lab only when it is alive and its command line names the lab's folder (no PID reuse accident). */
function labPid(dir: string, pidText: string | undefined): number | null {
  const pid = Number(pidText?.trim().split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    return cmdline.includes(`${dir}/`) ? pid : null;
  } catch {
    return null;
  }
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function tail(path: string, lines: number): string | null {
  const text = readOrUndefined(path);
  if (text === undefined) return null;
  return text.split('\n').slice(-lines - 1).join('\n');
}

/** One setting of the server behind `url` (a short session of its own). */
async function showSetting(url: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const res = await client.query<{ value: string }>('SELECT current_setting($1) AS value', [name]);
    return res.rows[0]?.value ?? '';
  } finally {
    await client.end().catch(() => undefined);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startHaLab(): Promise<HaLab> {
  const { stdout } = await runScript(['up'], 600_000);
  const vars = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) vars.set(m[1]!, m[2]!);
  }
  const need = (name: string): string => {
    const v = vars.get(name);
    if (!v) throw new Error(`ha-lab.sh up printed no ${name}:\n${stdout}`);
    return v;
  };
  const dir = need('RELAY_HA_LAB');
  try {
    // RELAY_HA_PATRONICTL is `patronictl -c <dir>/node1.yml`; built here again so a folder name with a space cannot split it.
    const patronictl = ['patronictl', '-c', join(dir, 'node1.yml')];
    const nodes: HaLabNode[] = [
      { name: 'node1', restUrl: need('RELAY_HA_NODE1_REST') },
      { name: 'node2', restUrl: need('RELAY_HA_NODE2_REST') },
    ];
    const node = (name: string): HaLabNode => {
      const found = nodes.find((n) => n.name === name);
      if (!found) throw new Error(`no node ${name} in the HA lab (${nodes.map((n) => n.name).join(', ')})`);
      return found;
    };
    const ctl = async (args: string[]): Promise<string> => {
      try {
        const { stdout: out } = await run(patronictl[0]!, [...patronictl.slice(1), ...args], { env: cleanEnv(), timeout: 60_000, encoding: 'utf8' });
        return out;
      } catch (err) {
        const e = err as Error & { stdout?: string; stderr?: string };
        throw new Error(`patronictl ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
      }
    };
    const primary = async (): Promise<string | null> => {
      const codes = await Promise.all(nodes.map((n) => httpStatus(`${n.restUrl}/primary`)));
      const i = codes.indexOf(200);
      return i < 0 ? null : nodes[i]!.name;
    };
    const status = async (): Promise<HaLabMember[]> => {
      const rows = JSON.parse(await ctl(['list', '-f', 'json'])) as Array<Record<string, unknown>>;
      return rows.map((r) => {
        const lag = r['Lag in MB'];
        const tl = r.TL;
        return {
          name: String(r.Member),
          role: String(r.Role),
          state: String(r.State),
          timeline: typeof tl === 'number' ? tl : null,
          lagMb: typeof lag === 'number' ? lag : null,
        };
      });
    };
    const logs = (lines = 60): string => {
      const files = ['etcd/etcd.log', 'haproxy/haproxy.log', 'db-setup.log'];
      for (const n of nodes) files.push(`${n.name}/patroni.log`, `${n.name}/pglog/postgresql.log`);
      return files
        .map((f) => [f, tail(join(dir, f), lines)] as const)
        .filter(([, text]) => text !== null)
        .map(([f, text]) => `----- ${join(dir, f)} (last ${lines} lines)\n${text}`)
        .join('\n');
    };
    const waitForPrimary = async (opts: { not?: string; is?: string; timeoutMs?: number } = {}): Promise<string> => {
      const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
      for (;;) {
        const name = await primary();
        if (name !== null && name !== opts.not && (opts.is === undefined || name === opts.is)) return name;
        if (Date.now() > deadline) {
          const want = opts.is ?? (opts.not ? `a node other than ${opts.not}` : 'any node');
          throw new Error(`HA lab: no primary (wanted ${want}, have ${name ?? 'none'}) within ${opts.timeoutMs ?? 60_000} ms\n${logs()}`);
        }
        await sleep(200);
      }
    };
    const adminUrl = need('RELAY_HA_ADMIN_URL');
    const lab: HaLab = {
      dir,
      databaseUrl: need('DATABASE_URL'),
      readUrl: need('RELAY_READ_DATABASE_URL'),
      migrateUrl: need('RELAY_MIGRATE_URL'),
      adminUrl,
      ttl: Number(need('RELAY_HA_TTL')),
      loopWait: Number(need('RELAY_HA_LOOP_WAIT')),
      retryTimeout: Number(vars.get('RELAY_HA_RETRY_TIMEOUT') ?? NaN),
      nodes,
      primary,
      waitForPrimary,
      killNode: (name) => {
        node(name);
        // Patroni first, so it cannot start PostgreSQL again; then the postmaster (its children
        // exit once they see it gone).
        const patroni = labPid(dir, readOrUndefined(join(dir, name, 'patroni.pid')));
        if (patroni !== null) process.kill(patroni, 'SIGKILL');
        const postmaster = labPid(dir, readOrUndefined(join(dir, name, 'data', 'postmaster.pid')));
        if (postmaster !== null) process.kill(postmaster, 'SIGKILL');
        if (patroni === null && postmaster === null) throw new Error(`HA lab: ${name} has neither Patroni nor PostgreSQL running`);
      },
      killPostmaster: (name) => {
        node(name);
        const postmaster = labPid(dir, readOrUndefined(join(dir, name, 'data', 'postmaster.pid')));
        if (postmaster === null) throw new Error(`HA lab: ${name} has no PostgreSQL running`);
        process.kill(postmaster, 'SIGKILL');
      },
      setSynchronous: async (on) => {
        await ctl(['edit-config', '--set', `synchronous_mode=${on}`, '--force']);
        const deadline = Date.now() + 60_000;
        for (;;) {
          const names = await showSetting(adminUrl, 'synchronous_standby_names').catch(() => undefined);
          if (names !== undefined && (names !== '') === on) return;
          if (Date.now() > deadline) throw new Error(`HA lab: synchronous_standby_names is still ${JSON.stringify(names)} after turning synchronous_mode ${on ? 'on' : 'off'}\n${logs()}`);
          await sleep(200);
        }
      },
      startNode: async (name) => {
        node(name);
        await runScript(['start-node', name, dir], 60_000);
      },
      switchover: async (candidate) => {
        const leader = await primary();
        if (leader === null) throw new Error('HA lab: no primary to switch over from');
        const to = candidate ?? nodes.find((n) => n.name !== leader)!.name;
        node(to);
        // synchronous_mode: Patroni switches over only to the synchronous standby, and a node that
        // just rejoined is a plain Replica for a loop or two.
        const deadline = Date.now() + 60_000;
        for (;;) {
          const m = (await status()).find((s) => s.name === to);
          if (m?.role === 'Sync Standby' && (m.state === 'running' || m.state === 'streaming')) break;
          if (Date.now() > deadline) throw new Error(`HA lab: ${to} is not a running synchronous standby (${JSON.stringify(m)})\n${logs()}`);
          await sleep(500);
        }
        // patronictl 3.0.2 exits 0 when Patroni refuses ("Switchover failed, details: 412, …").
        const out = await ctl(['switchover', '--leader', leader, '--candidate', to, '--force']);
        if (!/Successfully switched over/.test(out)) throw new Error(`HA lab: switchover ${leader} -> ${to} failed:\n${out}`);
        return waitForPrimary({ is: to, timeoutMs: 60_000 });
      },
      status,
      logs,
      down: async () => {
        await runScript(['down', dir], 60_000);
      },
    };
    return lab;
  } catch (err) {
    await runScript(['down', dir], 60_000).catch(() => undefined);
    throw err;
  }
}

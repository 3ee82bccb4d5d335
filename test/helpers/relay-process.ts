import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintToken } from '../../src/auth/index.ts';

/**
 * The master key of every service the suites start on a server database. One database has one
 * master key (its key catalog's, which `relay serve` proves at start): the suites share the test
 * database, so they share this key. Test-only, derived from a fixed label.
 */
export const SERVER_TEST_MASTER_KEY = createHash('sha256').update('relay-memory test master key (server suites)').digest('base64');

/** `relay serve` as its own process, as an operator starts it. */
export interface RelayProcess {
  url: string;
  /** Everything the process wrote to stdout (its JSON log) so far. */
  log(): string;
  /**
   * The log once it matches `pattern`, waiting up to `ms` for it: a response can reach the test
   * before the log line the server wrote for it has come through the pipe.
   */
  logged(pattern: RegExp, ms?: number): Promise<string>;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** A token of `tenant` for `user`, or a service token when `user` is omitted. */
  token(tenant: string, user?: string): Promise<string>;
  /** The value of one Prometheus sample of /metrics/memory (0 when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Its OS process id (e.g. to find its database connections). */
  pid: number;
  /** Sends a signal to the process (SIGTERM: a graceful shutdown). */
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code once the process has exited (null: killed by a signal). */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** A server PostgreSQL of the test's own (test/helpers/pg-cluster.ts). */
export interface ServerUrls {
  appUrl: string;
  ownerUrl: string;
}

/**
 * Starts `node bin/relay.mjs serve` on a free port over the embedded store (a fresh data folder)
 * or the server PostgreSQL of RELAY_TEST_DATABASE_URL, with its own token secret and master key;
 * resolves once /readyz says ready.
 */
export async function startRelayProcess(store: 'pglite' | 'pg' | ServerUrls, extraEnv: Record<string, string> = {}): Promise<RelayProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'relay-proc-'));
  // Two releases of one deployment share the token secret (and master key): pass them in extraEnv.
  const secret = extraEnv.RELAY_JWT_SECRET ?? randomBytes(32).toString('base64url');
  const env: NodeJS.ProcessEnv = {};
  // Nothing of the developer's own configuration leaks in.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RELAY_') && k !== 'DATABASE_URL' && k !== 'PORT' && k !== 'HOST') env[k] = v;
  Object.assign(env, {
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    RELAY_DATA_DIR: dataDir,
    RELAY_JWT_SECRET: secret,
    RELAY_MASTER_KEY: store === 'pglite' ? randomBytes(32).toString('base64') : SERVER_TEST_MASTER_KEY,
    RELAY_SHUTDOWN_GRACE_MS: '2000',
    // No balancer in front of most suites' process: stop() closes at once (the rolling-restart
    // suite, which has one, sets RELAY_DRAIN_MS itself).
    RELAY_DRAIN_MS: '0',
  });
  if (store !== 'pglite') {
    const appUrl = store === 'pg' ? process.env.RELAY_TEST_DATABASE_URL : store.appUrl;
    const ownerUrl = store === 'pg' ? process.env.RELAY_TEST_MIGRATE_URL : store.ownerUrl;
    if (!appUrl || !ownerUrl) throw new Error('the server store needs RELAY_TEST_DATABASE_URL and RELAY_TEST_MIGRATE_URL');
    Object.assign(env, { DATABASE_URL: appUrl, RELAY_MIGRATE_URL: ownerUrl, RELAY_DB_POOL_MAX: '4' });
  }
  Object.assign(env, extraEnv);

  const child: ChildProcess = spawn(process.execPath, ['bin/relay.mjs', 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const cleanup = () => rmSync(dataDir, { recursive: true, force: true });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    cleanup();
  };

  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay serve did not start in 90 s:\n${stderr}`)), 90_000);
      const look = () => {
        for (const line of stdout.split('\n')) {
          if (!line.includes('relay memory is serving')) continue;
          clearTimeout(timer);
          resolve((JSON.parse(line) as { url: string }).url);
          return;
        }
      };
      child.stdout!.on('data', look);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`relay serve exited with ${code}:\n${stderr}`));
      });
    });
    for (let i = 0; ; i++) {
      const res = await fetch(`${url}/readyz`).catch(() => null);
      if (res?.status === 200) break;
      await res?.body?.cancel();
      if (i > 300) throw new Error(`relay serve at ${url} never became ready:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      url,
      log: () => stdout,
      async logged(pattern, ms = 5000) {
        for (const deadline = Date.now() + ms; !pattern.test(stdout) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
        return stdout;
      },
      stderr: () => stderr,
      token: (tenant, user) => mintToken({ secret, tenant, ...(user === undefined ? { service: true } : { user }), ttlSeconds: 3600 }),
      async metric(name, labels = {}) {
        const text = await (await fetch(`${url}/metrics/memory`)).text();
        for (const line of text.split('\n')) {
          const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
          if (!m || m[1] !== name) continue;
          const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
          if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
        }
        return 0;
      },
      pid: child.pid!,
      kill: (signal) => void child.kill(signal),
      exited,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * `relay …` (the key CLI, reindex) as an operator runs it, in a process of its own, against the
 * server test database (or `urls`) with the suites' master key; resolves when it has exited.
 */
export function relayCli(args: string[], urls?: ServerUrls, extraEnv: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RELAY_') && k !== 'DATABASE_URL') env[k] = v;
  Object.assign(env, {
    DATABASE_URL: urls?.appUrl ?? process.env.RELAY_TEST_DATABASE_URL,
    RELAY_MIGRATE_URL: urls?.ownerUrl ?? process.env.RELAY_TEST_MIGRATE_URL,
    RELAY_MASTER_KEY: SERVER_TEST_MASTER_KEY,
    ...extraEnv,
  });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/relay.mjs', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export interface ServiceProcess {
  /** http://127.0.0.1:PORT */
  url: string;
  child: ChildProcess;
  /** Everything the process wrote so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * `relay serve` as a real child process (what `npm start` runs), on a free port of 127.0.0.1.
 * `env` is added to a copy of this process's environment without the store variables, so the
 * embedded store is used unless `env` names a server. Resolves once it logs that it serves.
 */
export async function startServiceProcess(env: NodeJS.ProcessEnv, opts: { timeoutMs?: number } = {}): Promise<ServiceProcess> {
  const base = { ...process.env };
  for (const name of ['DATABASE_URL', 'RELAY_MIGRATE_URL', 'RELAY_MASTER_KEY', 'RELAY_MASTER_KEY_FILE', 'RELAY_JWT_SECRET']) delete base[name];
  const child = spawn(process.execPath, ['bin/relay.mjs', 'serve'], {
    env: { ...base, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`relay serve did not start within ${opts.timeoutMs ?? 60_000} ms:\n${out}`)), opts.timeoutMs ?? 60_000);
    const onData = () => {
      const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)".*"msg":"relay memory is serving"/.exec(out);
      if (m) done(() => resolve(m[1]!));
    };
    const onExit = (code: number | null) => fail(new Error(`relay serve exited with ${code}:\n${out}`));
    const done = (then: () => void) => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      then();
    };
    const fail = (err: Error) => done(() => (child.kill('SIGKILL'), reject(err)));
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
  return {
    url,
    child,
    output: () => out,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const [code] = (await exited) as [number | null];
      clearTimeout(timer);
      return code;
    },
  };
}

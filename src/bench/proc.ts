import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Child processes and synthetic text shared by the benches that run the real service
// (`bench query`, `bench load`).

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export { freePort } from '../fleet/index.ts';

/** A child process whose output is kept (and shown if it dies), stopped with SIGTERM then SIGKILL. */
export function child(args: string[], env: NodeJS.ProcessEnv): { proc: ChildProcess; output: () => string; stop: () => Promise<void> } {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(killer);
  };
  return { proc, output: () => out, stop };
}

export async function waitFor(what: string, probe: () => Promise<boolean>, proc: ChildProcess, output: () => string, seconds = 120): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited (${proc.exitCode}):\n${output()}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not ready after ${seconds} s:\n${output()}`);
}

/** Word-like tokens from syllables: the hash embedder needs words, and queries must share some with the notes. */
export function vocabulary(rand: () => number, size: number): string[] {
  const syl = ['ka', 'lo', 'mi', 'ren', 'sa', 'tor', 'vi', 'del', 'an', 'bru', 'che', 'fo', 'gal', 'hin', 'jo', 'kel', 'mar', 'nu', 'pex', 'quin', 'ru', 'sol', 'tem', 'ul', 'wen', 'yar', 'zo'];
  const words = new Set<string>();
  while (words.size < size) {
    const n = 2 + Math.floor(rand() * 2);
    words.add(Array.from({ length: n }, () => syl[Math.floor(rand() * syl.length)]).join(''));
  }
  return [...words];
}

export function sentence(rand: () => number, words: string[], n: number): string {
  return Array.from({ length: n }, () => words[Math.floor(rand() * words.length)]).join(' ');
}

/**
 * Erases every chunk of `users` through the API (`DELETE /api/v1/users/:user_id/memory`), 16 at a
 * time, so a bench leaves no rows behind; best effort, as the run's figures are already taken.
 */
export async function eraseUsers(base: string, users: ReadonlyArray<{ user: string; auth: Record<string, string> }>): Promise<void> {
  for (let i = 0; i < users.length; i += 16) {
    await Promise.all(
      users.slice(i, i + 16).map((u) =>
        fetch(`${base}/api/v1/users/${encodeURIComponent(u.user)}/memory`, { method: 'DELETE', headers: u.auth }).then((r) => r.body?.cancel(), () => undefined),
      ),
    );
  }
}

import { spawn } from 'node:child_process';
import type { Hook } from './plan.ts';

export interface HookResult {
  name: string;
  run: string;
  /** Exit status; null when killed (timeout) or not started. */
  exitCode: number | null;
  timedOut: boolean;
  /** Not run because an earlier hook failed. */
  skipped: boolean;
  ms: number;
  /** stdout and stderr interleaved, the last 16 KiB. */
  output: string;
}

const KEEP = 16 * 1024;

/**
 * Runs one hook with `sh -c` in its own process group, so a timeout kills the whole command
 * (a `sleep` under a shell, a `npm run` with its children), not just the shell.
 */
export function runHook(hook: Hook, env: Record<string, string>): Promise<HookResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    let output = '';
    let timedOut = false;
    const keep = (b: Buffer) => {
      output = (output + b.toString()).slice(-KEEP);
    };
    const child = spawn('sh', ['-c', hook.run], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const kill = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      setTimeout(() => kill('SIGKILL'), 2000).unref();
    }, hook.timeoutMs);
    const done = (exitCode: number | null, extra = '') => {
      clearTimeout(timer);
      resolve({ name: hook.name, run: hook.run, exitCode, timedOut, skipped: false, ms: Math.round(performance.now() - started), output: (output + extra).slice(-KEEP) });
    };
    child.once('error', (err) => done(null, `\n[could not start: ${err.message}]`));
    child.once('close', (code) => done(timedOut ? null : code));
  });
}

/** Runs hooks in order; after the first failure (non-zero, timeout) the rest are skipped, since later steps may depend on it. */
export async function runHooks(hooks: readonly Hook[], env: Record<string, string>): Promise<HookResult[]> {
  const results: HookResult[] = [];
  let failed = false;
  for (const hook of hooks) {
    if (failed) {
      results.push({ name: hook.name, run: hook.run, exitCode: null, timedOut: false, skipped: true, ms: 0, output: '' });
      continue;
    }
    const r = await runHook(hook, env);
    results.push(r);
    failed = r.exitCode !== 0;
  }
  return results;
}

export const hookSucceeded = (r: HookResult) => r.exitCode === 0 && !r.timedOut && !r.skipped;

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StatusView } from '../../src/rollout/index.ts';
import { SERVER_TEST_MASTER_KEY } from './relay-process.ts';

/** `relay canary run` as its own process, as an operator starts it. */
export interface ControllerProcess {
  url: string;
  stateDir: string;
  status(): Promise<StatusView>;
  /** Polls /canary/status until `pred` holds (every 200 ms, up to `seconds`). */
  until(what: string, pred: (s: StatusView) => boolean, seconds?: number): Promise<StatusView>;
  output(): string;
  /** SIGKILL: a crash, nothing saved on the way out. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Both releases of one deployment share the token secret and the master key (on the shared
 * server test database, the one master key of its key catalog).
 */
export function sharedKeys(): Record<string, string> {
  return { RELAY_JWT_SECRET: randomBytes(32).toString('base64url'), RELAY_MASTER_KEY: SERVER_TEST_MASTER_KEY };
}

export function scratchDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startController(opts: { stable: string; candidate: string; plan: string; stateDir?: string; extraArgs?: string[] }): Promise<ControllerProcess> {
  const stateDir = opts.stateDir ?? scratchDir('canary-e2e-');
  const planFile = join(stateDir, 'rollout.yaml');
  writeFileSync(planFile, opts.plan);
  const args = ['bin/relay.mjs', 'canary', 'run', '--stable', opts.stable, '--candidate', opts.candidate, '--listen', '127.0.0.1:0', '--plan', planFile, '--state-dir', stateDir, ...(opts.extraArgs ?? [])];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay canary run did not start in 60 s:\n${out}`)), 60_000);
    const look = () => {
      const line = out.split('\n').find((l) => l.includes('relay canary is routing') || l.includes('relay canary is driving haproxy'));
      if (!line) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    };
    child.stdout!.on('data', look);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`relay canary run exited:\n${out}`));
    });
  });
  const status = async () => (await (await fetch(`${url}/canary/status`)).json()) as StatusView;
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  return {
    url,
    stateDir,
    status,
    async until(what, pred, seconds = 90) {
      const deadline = Date.now() + seconds * 1000;
      let last: StatusView | null = null;
      while (Date.now() < deadline) {
        last = await status();
        if (pred(last)) return last;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`canary: ${what} did not happen in ${seconds} s; last status ${JSON.stringify({ status: last?.status, stage: last?.stage, weight: last?.weight, decisions: last?.decisions.slice(-5), guardrails: last?.report?.guardrails.map((g) => [g.name, g.value, g.verdict]) })}\n${out.slice(-3000)}`);
    },
    output: () => out,
    kill: () => stopWith('SIGKILL'),
    stop: () => stopWith('SIGTERM'),
  };
}

export interface StreamOutcome {
  release: string | null;
  /** HAProxy's X-Relay-Server (stable, candidate) when HAProxy split the traffic. */
  server?: string | null;
  status: number;
  ok: boolean;
  /** Date.now() when the first result (or done) arrived. */
  firstAt: number | null;
}

/**
 * Closed-loop query streams through the router, one loop per token, `pauseMs` between requests
 * (the machine is small and shared); `stop()` ends the loops and gives every outcome.
 */
export function startLoad(url: string, tokens: string[], pauseMs = 30): { outcomes: StreamOutcome[]; stop(): Promise<StreamOutcome[]> } {
  const outcomes: StreamOutcome[] = [];
  let running = true;
  const loops = tokens.map(async (token) => {
    while (running) {
      outcomes.push(await queryStream(url, token));
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  });
  return {
    outcomes,
    async stop() {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

export async function queryStream(url: string, token: string): Promise<StreamOutcome> {
  try {
    const res = await fetch(`${url}/api/v1/memory/query`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: 'where are the keys?' }),
    });
    const release = res.headers.get('x-relay-release');
    const server = res.headers.get('x-relay-server');
    if (!res.body) return { release, server, status: res.status, ok: false, firstAt: null };
    let text = '';
    let firstAt: number | null = null;
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      text += decoder.decode(chunk as Uint8Array, { stream: true });
      if (firstAt === null && /event: (result|done)/.test(text)) firstAt = Date.now();
    }
    return { release, server, status: res.status, ok: res.status === 200 && text.includes('event: done') && !text.includes('event: error'), firstAt };
  } catch {
    return { release: null, status: 0, ok: false, firstAt: null };
  }
}

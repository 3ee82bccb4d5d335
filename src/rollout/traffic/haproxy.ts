import { askHaproxy, TrafficError } from './runtime-api.ts';
import type { TrafficLayer } from './types.ts';

export interface HaproxyTrafficOptions {
  /** The runtime API: a UNIX socket path (`stats socket … level admin`) or `host:port`. */
  socket: string;
  /** The backend that holds both releases (`backend relay`). */
  backend: string;
  /** The server lines of each release in that backend. */
  stableServer: string;
  candidateServer: string;
  /** How long one runtime API call may take. Default 2000 ms. */
  timeoutMs?: number;
}

/** HAProxy's weight range is 0..256; the share maps onto 0..100 of it (stable gets the rest). */
const SCALE = 100;

/** `get weight b/s` answers `50 (initial 0)`. */
export function parseGetWeight(answer: string): number | null {
  const m = /^(\d+) \(initial \d+\)\s*$/.exec(answer.trim());
  return m ? Number(m[1]) : null;
}

/**
 * The candidate's share when HAProxy holds these weights: `candidate / (stable + candidate)` in
 * percent; null when both are 0 (no server would take traffic: not a share the controller sets).
 */
export function shareOf(stable: number, candidate: number): number | null {
  if (stable + candidate === 0) return null;
  return Math.round((candidate * 10_000) / (stable + candidate)) / 100;
}

/**
 * The split in HAProxy: the controller writes both servers' weights with `set server b/s weight N`
 * (candidate = share, stable = 100 − share) and believes only what `get weight` reads back. HAProxy
 * keeps the last weights when the controller is gone, and its consistent hash (docs/canary.md)
 * only moves users from stable to the candidate as the candidate's weight rises.
 */
export function haproxyTraffic(opts: HaproxyTrafficOptions): TrafficLayer {
  const timeout = opts.timeoutMs ?? 2000;
  const server = (s: string) => `${opts.backend}/${s}`;
  const weightOf = async (s: string) => {
    const answer = await askHaproxy(opts.socket, `get weight ${server(s)}`, timeout);
    const w = parseGetWeight(answer);
    if (w === null) throw new TrafficError(`HAProxy runtime API ${opts.socket}: get weight ${server(s)} answered ${JSON.stringify(answer.trim().slice(0, 200))}`);
    return w;
  };
  const set = async (s: string, weight: number) => {
    const answer = (await askHaproxy(opts.socket, `set server ${server(s)} weight ${weight}`, timeout)).trim();
    // Success is an empty answer; anything else is HAProxy saying no (unknown server, bad weight, level).
    if (answer !== '') throw new TrafficError(`HAProxy runtime API ${opts.socket}: set server ${server(s)} weight ${weight}: ${answer.slice(0, 200)}`);
  };
  const read = async () => {
    const [stable, candidate] = [await weightOf(opts.stableServer), await weightOf(opts.candidateServer)];
    return { stable, candidate, share: shareOf(stable, candidate) };
  };
  return {
    kind: 'haproxy',
    describe: () => `haproxy=${opts.socket} ${opts.backend}/{${opts.stableServer},${opts.candidateServer}}`,
    async read() {
      return (await read()).share;
    },
    async apply(share) {
      const candidate = Math.round((share * SCALE) / 100);
      const stable = SCALE - candidate;
      const now = await read();
      if (now.candidate !== candidate || now.stable !== stable) {
        // The candidate first: between the two calls the share lies between the old and the new
        // one (a rollback takes traffic off the candidate at the first call). Only when stable
        // holds 0 does it go first, so that both are never 0 at once.
        if (candidate < now.candidate && now.stable === 0) {
          await set(opts.stableServer, stable);
          await set(opts.candidateServer, candidate);
        } else {
          await set(opts.candidateServer, candidate);
          await set(opts.stableServer, stable);
        }
      }
      const after = now.candidate === candidate && now.stable === stable ? now : await read();
      if (after.candidate !== candidate || after.stable !== stable) {
        throw new TrafficError(`HAProxy holds ${server(opts.stableServer)} ${after.stable}, ${server(opts.candidateServer)} ${after.candidate} after setting ${stable}/${candidate}`);
      }
      return after.share ?? 0;
    },
  };
}

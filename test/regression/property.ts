import fc from 'fast-check';
import type { FuzzHarness } from './harness.ts';
import { opsArb, worldArb } from './ops.ts';
import { Scenario } from './scenario.ts';

/** How much to fuzz, and from where: the defaults are fixed (CI); the environment makes a run larger or replays one. */
export interface FuzzSettings {
  runs: number;
  seed: number;
  /** fast-check's path of one counterexample: replays exactly it (and skips the others). */
  path?: string;
  /** Longest operation sequence of one scenario. */
  maxOps: number;
}

/**
 * RELAY_FUZZ_RUNS (scenarios), RELAY_FUZZ_SEED (a number, or `random`), RELAY_FUZZ_PATH (from a
 * failure's report), RELAY_FUZZ_MAX_OPS; `defaults` otherwise.
 */
export function fuzzSettings(defaults: FuzzSettings, env: NodeJS.ProcessEnv = process.env): FuzzSettings {
  const int = (name: string, fallback: number) => {
    const v = env[name];
    if (v === undefined || v === '') return fallback;
    if (!/^-?\d+$/.test(v)) throw new Error(`${name} must be a whole number, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const seed = env.RELAY_FUZZ_SEED === 'random' ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : int('RELAY_FUZZ_SEED', defaults.seed);
  return { runs: int('RELAY_FUZZ_RUNS', defaults.runs), seed, path: env.RELAY_FUZZ_PATH || defaults.path, maxOps: int('RELAY_FUZZ_MAX_OPS', defaults.maxOps) };
}

export function isolationProperty(h: FuzzHarness, maxOps: number, stats?: Map<string, number>) {
  return fc.asyncProperty(worldArb, opsArb(maxOps), (world, ops) => new Scenario(h, world, stats).run(ops));
}

/**
 * Runs the property. `endOnFailure` stops at the first failure without shrinking (for the
 * mutation tests, where a failure is the expected outcome).
 */
export function checkIsolation(h: FuzzHarness, s: FuzzSettings, opts: { endOnFailure?: boolean; stats?: Map<string, number> } = {}) {
  return fc.check(isolationProperty(h, s.maxOps, opts.stats), { numRuns: s.runs, seed: s.seed, path: s.path, endOnFailure: opts.endOnFailure ?? false });
}

/** Runs the property and throws with fast-check's report and the command that replays the failure. */
export async function assertIsolation(h: FuzzHarness, s: FuzzSettings, stats?: Map<string, number>): Promise<{ runs: number; seed: number }> {
  const out = await checkIsolation(h, s, { stats });
  if (out.failed) {
    const replay =
      `replay: RELAY_FUZZ_SEED=${out.seed} RELAY_FUZZ_PATH=${out.counterexamplePath ?? ''} RELAY_FUZZ_MAX_OPS=${s.maxOps} ` +
      `RELAY_FUZZ_TARGET=${h.target.name} npm run test:regression`;
    console.error(`isolation fuzz failed on ${h.target.name}\n${replay}`);
    const why = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
    throw new Error(`${fc.defaultReportMessage(out) ?? 'failed'}\nviolation: ${why}\n${replay}`);
  }
  return { runs: out.numRuns, seed: out.seed };
}

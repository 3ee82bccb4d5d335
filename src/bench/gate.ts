/** One gated figure as bench/baseline.json records it. */
export interface BaselineFigure {
  /** The figure from the run that set the baseline (a ratio against a same-run baseline). */
  value: number;
  better: 'higher' | 'lower';
  /** Allowed regression as a share of `value`: 0.2 lets a higher-is-better figure fall to 0.8 × value. */
  tolerance: number;
  /** What the figure is, and why its tolerance is what it is. */
  note?: string;
}

export interface BaselineFile {
  about: string;
  updated: string;
  figures: Record<string, BaselineFigure>;
}

export interface Verdict {
  figure: string;
  /** not_run: the figure was not measured (its bench failed, could not start, or gave no finite
   * value), and fails the gate; skipped: its bench was left out on purpose (`--only`). */
  status: 'pass' | 'fail' | 'not_run' | 'skipped';
  baseline: number;
  value: number | null;
  /** The worst value still allowed. */
  bound: number;
  better: 'higher' | 'lower';
  reason?: string;
}

const round = (x: number) => Math.round(x * 10_000) / 10_000;

/** The worst value a figure may take: baseline × (1 − tolerance) when higher is better, × (1 + tolerance) when lower is. */
export function boundOf(f: BaselineFigure): number {
  return round(f.better === 'higher' ? f.value * (1 - f.tolerance) : f.value * (1 + f.tolerance));
}

/**
 * Each figure of the baseline against this run's: pass within its bound, fail beyond it,
 * not_run when the run has no finite value for it (`notRun` says why, by bench name: the part of
 * the figure's name before the first dot), skipped when its bench is in `leftOut` (left out on
 * purpose, with the reason). A figure that was not run never passes: see `exitCode`.
 */
export function judge(
  baseline: BaselineFile,
  measured: Record<string, number>,
  notRun: Record<string, string> = {},
  leftOut: Record<string, string> = {},
): Verdict[] {
  return Object.entries(baseline.figures).map(([figure, f]) => {
    const bound = boundOf(f);
    const value = measured[figure];
    const bench = figure.split('.')[0]!;
    if (leftOut[bench] !== undefined) return { figure, status: 'skipped', baseline: f.value, value: null, bound, better: f.better, reason: leftOut[bench] };
    if (value === undefined || !Number.isFinite(value)) {
      return { figure, status: 'not_run', baseline: f.value, value: null, bound, better: f.better, reason: notRun[bench] ?? 'no finite value in this run' };
    }
    const ok = f.better === 'higher' ? value >= bound : value <= bound;
    return { figure, status: ok ? 'pass' : 'fail', baseline: f.value, value, bound, better: f.better };
  });
}

/** The gate's exit status: 1 when any figure regressed or was not measured, 0 otherwise. */
export function exitCode(verdicts: readonly Verdict[]): 0 | 1 {
  return verdicts.some((v) => v.status === 'fail' || v.status === 'not_run') ? 1 : 0;
}

/**
 * A figure read from a bench's summary line: a finite number, or NaN (which the gate reports as
 * not measured). JSON has no NaN: a bench that computed one prints null, and Number(null) is 0,
 * which a lower-is-better figure would pass — so anything but a finite number is NaN here.
 */
export function figureOf(summary: Record<string, unknown>, key: string): number {
  const v = summary[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : Number.NaN;
}

/** The baseline rewritten from a run: measured figures take the run's value; others keep theirs. */
export function updated(current: BaselineFile, defs: Record<string, Omit<BaselineFigure, 'value'>>, measured: Record<string, number>, now = new Date()): BaselineFile {
  const figures: Record<string, BaselineFigure> = {};
  for (const [name, def] of Object.entries(defs)) {
    const value = measured[name];
    const old = current.figures[name];
    if (value !== undefined && Number.isFinite(value)) figures[name] = { value: round(value), ...def };
    else if (old) figures[name] = { ...old, ...def };
  }
  return { about: current.about, updated: now.toISOString(), figures };
}

/** A verdict as one line a person reads: the figure, its value, the baseline and the bound. */
export function describe(v: Verdict): string {
  const dir = v.better === 'higher' ? '≥' : '≤';
  if (v.status === 'not_run') return `NOT RUN ${v.figure} (baseline ${v.baseline}): ${v.reason}`;
  if (v.status === 'skipped') return `SKIPPED ${v.figure} (baseline ${v.baseline}): ${v.reason}`;
  return `${v.status === 'pass' ? 'pass   ' : 'FAIL   '} ${v.figure} = ${v.value}, baseline ${v.baseline}, allowed ${dir} ${v.bound} (${v.better} is better)`;
}

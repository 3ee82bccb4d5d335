// Deterministic weights: the same seed gives the same bytes on every machine and Node version,
// which `Math.random` cannot promise. The project's one mulberry32 (fast enough to draw the ~22M
// values of a MiniLM-shaped model in well under a second).
import { rng as mulberry32 } from '../../bench/synthetic.ts';

/** FNV-1a of a string, so each tensor draws from its own stream whatever order they are built in. */
export function seedOf(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Uniform values of the given standard deviation around `mean`, from the stream named `name`. */
export function uniform(name: string, size: number, std: number, mean = 0): Float32Array {
  const next = mulberry32(seedOf(name));
  const half = std * Math.sqrt(3);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = mean + (next() * 2 - 1) * half;
  return out;
}

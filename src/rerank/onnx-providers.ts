import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export interface Backend {
  name: string;
  bundled: boolean;
}

/** Where onnxruntime-node keeps its native libraries, installed execution providers included. */
function bindingDir(): string | null {
  try {
    const index = createRequire(import.meta.url).resolve('onnxruntime-node');
    const dir = join(dirname(index), '..', 'bin', 'napi-v6', process.platform, process.arch);
    return existsSync(dir) ? dir : null;
  } catch {
    return null;
  }
}

function providerLibrary(name: string): string {
  if (process.platform === 'win32') return `onnxruntime_providers_${name}.dll`;
  return `libonnxruntime_providers_${name}${process.platform === 'darwin' ? '.dylib' : '.so'}`;
}

/** The execution providers this install can actually start: bundled ones, and others whose libraries are present. */
export function installedProviders(backends: readonly Backend[]): string[] {
  const dir = bindingDir();
  return backends.filter((b) => b.bundled || (dir !== null && existsSync(join(dir, providerLibrary(b.name))))).map((b) => b.name);
}

/**
 * Why the requested execution providers cannot all be used here, or null when they can. A
 * missing provider must stop the service at startup: onnxruntime would otherwise leave the model
 * on whatever else is listed, and a GPU deployment would quietly serve from the CPU.
 */
export function missingProviders(requested: readonly string[], backends: readonly Backend[]): string | null {
  const installed = installedProviders(backends);
  const known = backends.map((b) => b.name);
  const problems: string[] = [];
  for (const name of requested) {
    if (installed.includes(name)) continue;
    if (known.includes(name)) {
      const hint = name === 'cuda' || name === 'tensorrt' ? ' (install onnxruntime-node with `--onnxruntime-node-install=cuda12` on a machine with CUDA 12)' : '';
      problems.push(`"${name}" is known to this onnxruntime-node build but its libraries are not installed${hint}`);
    } else {
      problems.push(`"${name}" is not an execution provider of this onnxruntime-node build`);
    }
  }
  if (problems.length === 0) return null;
  return `${problems.join('; ')}. Available here: ${installed.join(', ') || 'none'} (RELAY_RERANK_EXECUTION_PROVIDERS)`;
}

#!/usr/bin/env node
// Builds `relay-memory/client` (tsconfig.client.json → dist/client). npm runs it on install
// (`prepare`) and before `npm test`. A production install without TypeScript skips it: the
// server runs from the sources through tsx and does not need it.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.error('build-client: typescript is not installed (a production install?): dist/client not built');
  process.exit(0);
}
rmSync(new URL('../dist/client', import.meta.url), { recursive: true, force: true });
const run = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.client.json'], { cwd: root, stdio: 'inherit' });
process.exit(run.status ?? 1);

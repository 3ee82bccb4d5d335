#!/usr/bin/env node
// `npm test`: every *.test.ts under src/ and test/, one file at a time (the server
// suites share one database), TypeScript through tsx's loader. The node test
// runner's summary (tests / pass / fail) closes the output.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  let out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out = out.concat(find(path));
    else if (entry.name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const only = process.argv.slice(2);
const files = only.length > 0 ? only : [...find('src'), ...find('test')].sort();
if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}
// The observability suite runs the real promtool and Prometheus, the browser suites headless
// Chromium: install them when missing.
for (const script of ['scripts/install-prometheus.sh', 'scripts/install-chromium.sh']) {
  const tools = spawnSync('bash', [script], { stdio: 'inherit' });
  if (tools.status !== 0) process.exit(tools.status ?? 1);
}
if (process.env.RELAY_TEST_DATABASE_URL) {
  // The replica suites start Redis, PgBouncer and HAProxy themselves (Debian's packages).
  const fleet = spawnSync('bash', ['scripts/install-fleet.sh'], { stdio: 'inherit' });
  if (fleet.status !== 0) process.exit(fleet.status ?? 1);
  console.error(`run-tests: server suites run against ${process.env.RELAY_TEST_DATABASE_URL.replace(/:[^:@/]*@/, ':***@')}`);
} else {
  console.error('run-tests: RELAY_TEST_DATABASE_URL is not set: only the embedded (PGlite) suites run');
}
const run = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(run.status ?? 1);

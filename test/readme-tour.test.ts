// README's 60-second tour, run as it is written: the shell block after the `tour` marker, with
// bash, against `relay serve` in a child process on the embedded store. What it prints must be
// what README says it prints.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config/index.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

/** The first fenced block after `marker` (its language and its text). */
function blockAfter(markdown: string, marker: string): { lang: string; text: string } {
  const at = markdown.indexOf(marker);
  assert.ok(at >= 0, `README has no "${marker}"`);
  const m = /```(\w*)\n([\s\S]*?)```/.exec(markdown.slice(at));
  assert.ok(m, `no code block after "${marker}"`);
  return { lang: m[1]!, text: m[2]! };
}

/** SSE frames as [event, parsed data]. */
function frames(text: string): [string, Record<string, unknown>][] {
  return text
    .split('\n\n')
    .map((f) => ({ event: /^event: (.+)$/m.exec(f)?.[1], data: /^data: (.+)$/m.exec(f)?.[1] }))
    .filter((f): f is { event: string; data: string } => f.event !== undefined && f.data !== undefined)
    .map((f) => [f.event, JSON.parse(f.data) as Record<string, unknown>]);
}

describe("README's 60-second tour", () => {
  let dir: string;
  let service: RelayProcess;
  let readme: string;

  before(async () => {
    readme = await readFile('README.md', 'utf8');
    dir = await mkdtemp(join(tmpdir(), 'relay-tour-'));
    // The embedded store's own development secret and master key, as after `npm start`.
    service = await startRelayProcess('pglite', { RELAY_DATA_DIR: dir, RELAY_JWT_SECRET: '', RELAY_MASTER_KEY: '' });
  });

  after(async () => {
    await service?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs as written and prints what it promises', () => {
    const tour = blockAfter(readme, '<!-- tour:');
    assert.equal(tour.lang, 'sh');
    // Its default address is the service's default address.
    const cfg = loadConfig({});
    assert.match(tour.text, new RegExp(`^BASE=\\$\\{RELAY_URL:-http://${cfg.host.replace(/\./g, '\\.')}:${cfg.port}\\}$`, 'm'));
    const run = spawnSync('bash', ['-euo', 'pipefail', '-c', tour.text], {
      env: { ...process.env, RELAY_URL: service.url, RELAY_DATA_DIR: dir, DATABASE_URL: '', RELAY_MIGRATE_URL: '' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(run.status, 0, `tour failed:\n${run.stdout}\n${run.stderr}`);

    const ids = /^\{"ids":\["([0-9a-f-]{36})"\]\}/m.exec(run.stdout);
    assert.ok(ids, `the store step printed no {"ids": [...]}:\n${run.stdout}`);
    const events = frames(run.stdout.slice(run.stdout.indexOf('event:')));
    assert.deepEqual(events.map(([e]) => e), ['result', 'done'], run.stdout);
    const [[, result], [, done]] = events as [[string, Record<string, unknown>], [string, Record<string, unknown>]];
    assert.equal(result.id, ids[1]);
    assert.equal(result.text, 'Alice keeps her spare keys under the blue pot.');
    assert.equal(done.count, 1);

    // The sample stream README shows has the fields the real one has.
    const sample = frames(blockAfter(readme, 'The stream looks like this').text.replace(/,…\}/g, '}').replace(/"[^"]*…"/g, '"x"').replace(/\{…\}/g, '{}'));
    assert.deepEqual(sample.map(([e]) => e), ['result', 'done']);
    for (const [i, [event, data]] of sample.entries()) {
      for (const key of Object.keys(data)) assert.ok(key in events[i]![1], `README's ${event} event shows "${key}", the real one has no such field`);
    }
  });
});

// README's 60-second tour, run as it is written: the shell block after the `tour` marker, with
// bash, against `relay serve` in a child process on the embedded store. What it prints must be
// what README says it prints.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
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

// The server start block, on a database of its own (a master key belongs to one database).
const adminUrl = process.env.RELAY_TEST_ADMIN_URL;
describe("README's server start block", { skip: adminUrl ? false : 'needs RELAY_TEST_ADMIN_URL' }, () => {
  const db = `relay_readme_${randomBytes(4).toString('hex')}`;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'relay-readme-server-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await c.end();
  });

  it('starts the service as written: ready, and the API asks for a token', async () => {
    const block = blockAfter(await readFile('README.md', 'utf8'), '<!-- server start:');
    assert.equal(block.lang, 'sh');
    const setup = spawnSync(process.execPath, ['bin/relay.mjs', 'db', 'setup', '--admin-url', adminUrl!, '--db', db], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(setup.status, 0, setup.stderr);
    const urls = Object.fromEntries(setup.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    // The block's URLs are the ones `db setup` prints for --db relay; here, for this test's database.
    let text = block.text;
    for (const name of ['DATABASE_URL', 'RELAY_MIGRATE_URL']) {
      const re = new RegExp(`^export ${name}=\\S+$`, 'm');
      assert.match(text, re);
      text = text.replace(re, `export ${name}=${urls[name]}`);
    }
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RELAY_') && k !== 'DATABASE_URL') env[k] = v;
    // No balancer in front: the stop need not wait out the drain.
    Object.assign(env, { PORT: '0', HOST: '127.0.0.1', RELAY_DATA_DIR: dir, RELAY_DRAIN_MS: '0' });
    const child = spawn('bash', ['-euo', 'pipefail', '-c', text], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    try {
      const url = await new Promise<string>((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no start in 120 s:\n${out}\n${err}`)), 120_000);
        child.once('exit', (code) => fail(new Error(`the block exited with ${code}:\n${out}\n${err}`)));
        child.stdout.on('data', () => {
          const line = out.split('\n').find((l) => l.includes('relay memory is serving'));
          if (line) {
            clearTimeout(timer);
            ok((JSON.parse(line) as { url: string }).url);
          }
        });
      });
      let ready = 0;
      for (let i = 0; i < 100 && ready !== 200; i++) {
        ready = (await fetch(`${url}/readyz`)).status;
        if (ready !== 200) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(ready, 200);
      const anonymous = await fetch(`${url}/api/v1/memory?user_id=alice`);
      assert.equal(anonymous.status, 401);
    } finally {
      // npm start's whole process group.
      process.kill(-child.pid!, 'SIGTERM');
      await new Promise((r) => child.once('close', r));
    }
  });
});

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { loadMigrations } from '../src/store/index.ts';

function relay(args: string[], env: NodeJS.ProcessEnv = {}) {
  const clean = { ...process.env };
  delete clean.DATABASE_URL;
  delete clean.RELAY_MIGRATE_URL;
  const run = spawnSync(process.execPath, ['bin/relay.mjs', ...args], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('relay CLI (embedded store)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { RELAY_DATA_DIR: join(dir, 'data') };

  it('migrates up, reports status, and migrates down', () => {
    const pending = relay(['migrate', 'status'], env);
    assert.equal(pending.code, 0, pending.stderr);
    assert.match(pending.stdout, /^0001 memory_chunks\s+pending$/m);
    const up = relay(['migrate', 'up'], env);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /applied 1, 2/);
    const status = relay(['migrate', 'status'], env).stdout;
    assert.match(status, /^0001 memory_chunks\s+applied \d{4}-/m);
    assert.match(status, /^0002 tenant_keys\s+applied \d{4}-/m);
    assert.match(relay(['migrate', 'up'], env).stdout, /nothing to apply/);
    const down = relay(['migrate', 'down', '--to', '0'], env);
    assert.equal(down.code, 0, down.stderr);
    const every = loadMigrations().map((m) => m.version).reverse();
    assert.ok(every.length >= 5, 'the migrations through 0005 exist');
    assert.equal(down.stdout.trim(), `reverted ${every.join(', ')}`);
  });

  it('exits 2 with usage on a bad command or flag', () => {
    const bad = relay(['fly']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown command fly/);
    const badTo = relay(['migrate', 'down', '--to', 'two'], env);
    assert.equal(badTo.code, 2);
    assert.match(badTo.stderr, /--to must be a whole number/);
  });

  it('fails fast naming a bad environment variable', () => {
    const run = relay(['migrate', 'status'], { ...env, RELAY_EMBED_DIM: 'big' });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /RELAY_EMBED_DIM/);
  });

  it('manages keys: dev master key 0600, rotate, rotate-master, shred (only with --yes), nothing after a shred', () => {
    const keyEnv = { RELAY_DATA_DIR: join(dir, 'keys') };
    const first = relay(['keys', 'rotate', '--tenant', 'acme'], keyEnv);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /data key version 1\b/);
    assert.match(first.stderr, /DEVELOPMENT ONLY/);
    const keyFile = join(dir, 'keys', 'master.key');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.match(relay(['keys', 'rotate', '--tenant', 'acme'], keyEnv).stdout, /data key version 2\b/);

    const next = randomBytes(32).toString('base64');
    const rewrap = relay(['keys', 'rotate-master'], { ...keyEnv, RELAY_NEW_MASTER_KEY: next });
    assert.equal(rewrap.code, 0, rewrap.stderr);
    assert.match(rewrap.stdout, /rewrapped 2 tenant keys/);
    assert.equal(readFileSync(keyFile, 'utf8').trim(), next);
    // Opening the catalog again under the new key file proves the rewrap.
    assert.match(relay(['keys', 'rotate', '--tenant', 'acme'], keyEnv).stdout, /data key version 3\b/);

    const unconfirmed = relay(['keys', 'shred', '--tenant', 'acme'], keyEnv);
    assert.equal(unconfirmed.code, 2);
    assert.match(unconfirmed.stderr, /--yes/);
    const shred = relay(['keys', 'shred', '--tenant', 'acme', '--yes'], keyEnv);
    assert.equal(shred.code, 0, shred.stderr);
    assert.match(shred.stdout, /destroyed 3 keys/);
    const after = relay(['keys', 'rotate', '--tenant', 'acme'], keyEnv);
    assert.equal(after.code, 1);
    assert.match(after.stderr, /shredded/);
    assert.doesNotMatch(after.stderr + shred.stdout + rewrap.stdout + rewrap.stderr, new RegExp(next.slice(0, 16).replace(/[+/]/g, '.')));
  });

  it('refuses bench ann without a server store', () => {
    const run = relay(['bench', 'ann'], env);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /DATABASE_URL and RELAY_MIGRATE_URL/);
  });

  it('says which --shape and --peer values bench ann takes', () => {
    const shape = relay(['bench', 'ann', '--shape', 'wide'], env);
    assert.equal(shape.code, 2);
    assert.match(shape.stderr, /--shape must be standard or peer, got "wide"/);
    const peer = relay(['bench', 'ann', '--peer', 'pinecone'], env);
    assert.equal(peer.code, 2);
    assert.match(peer.stderr, /--peer must be mastra, got "pinecone"/);
  });
});

const adminUrl = process.env.RELAY_TEST_ADMIN_URL;
if (adminUrl) {
  describe('relay db setup (server)', () => {
    const db = `relay_setup_${randomBytes(4).toString('hex')}`;
    after(async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await c.end();
    });

    it('creates database, roles, pgvector and schema, and a second run changes nothing', async () => {
      const first = relay(['db', 'setup', '--admin-url', adminUrl, '--db', db]);
      assert.equal(first.code, 0, first.stderr);
      const lines = first.stdout.trim().split('\n');
      assert.equal(lines.length, 2);
      assert.match(lines[0]!, new RegExp(`^DATABASE_URL=postgres://app_user@[^/]+/${db}$`));
      assert.match(lines[1]!, new RegExp(`^RELAY_MIGRATE_URL=postgres://relay_owner@[^/]+/${db}$`));
      assert.match(first.stderr, new RegExp(`created database ${db}`));

      const second = relay(['db', 'setup', '--admin-url', adminUrl, '--db', db]);
      assert.equal(second.code, 0, second.stderr);
      assert.equal(second.stdout, first.stdout);
      assert.match(second.stderr, /everything was already in place/);

      const c = new pg.Client({ connectionString: lines[0]!.slice('DATABASE_URL='.length) });
      await c.connect();
      try {
        const me = await c.query("SELECT current_user AS u, (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS v");
        assert.equal(me.rows[0].u, 'app_user');
        assert.match(me.rows[0].v, /^0\.8\./);
        const seen = await c.query('SELECT count(*)::int AS n FROM memory_chunks');
        assert.equal(seen.rows[0].n, 0);
        await assert.rejects(c.query('CREATE TABLE sneaky (x int)'), (e: { code?: string }) => e.code === '42501');
      } finally {
        await c.end();
      }
    });

    it('refuses names that are not plain identifiers', () => {
      const run = relay(['db', 'setup', '--admin-url', adminUrl, '--db', 'x; DROP DATABASE postgres']);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /database name must match/);
    });
  });
}

describe('embedded data folder', () => {
  it('refuses a second process while the first holds it, and is free again after', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-lock-'));
    try {
      const { createPgliteDriver } = await import('../src/store/index.ts');
      const first = await createPgliteDriver({ dataDir: dir });
      try {
        const second = relay(['migrate', 'status'], { RELAY_DATA_DIR: dir });
        assert.equal(second.code, 1);
        assert.match(second.stderr, new RegExp(`in use by process ${process.pid}`));
      } finally {
        await first.close();
      }
      const after = relay(['migrate', 'status'], { RELAY_DATA_DIR: dir });
      assert.equal(after.code, 0, after.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Runs relay with its stdout a pipe whose reader is gone before anything is written. */
async function relayIntoClosedPipe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['bin/relay.mjs', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  // As `relay … | head -n 0` would: the reading end closes at once.
  child.stdout.destroy();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  return { code, stderr };
}

describe('relay writing into a closed pipe (relay … | head)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-pipe-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [name, args, env] of [
    ['--help', ['--help'], {}],
    ['token', ['token', '--tenant', 'dev', '--user', 'alice'], { RELAY_DATA_DIR: join(dir, 'data'), RELAY_JWT_SECRET: randomBytes(32).toString('base64url') }],
  ] as const) {
    it(`${name}: exits quietly, no EPIPE stack`, async () => {
      const run = await relayIntoClosedPipe([...args], env);
      assert.doesNotMatch(run.stderr, /EPIPE|\n\s+at /, run.stderr);
      assert.equal(run.code, 0, run.stderr);
    });
  }
});

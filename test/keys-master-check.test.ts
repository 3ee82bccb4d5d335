import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalKeyProvider } from '../src/crypto/index.ts';
import { checkMasterKey } from '../src/memory/index.ts';
import type { Store } from '../src/store/index.ts';
import { call, startTestApi, type TestApi } from './helpers/api.ts';
import { SERVER_TEST_MASTER_KEY, startRelayProcess } from './helpers/relay-process.ts';
import { targets } from './helpers/targets.ts';

const key = () => randomBytes(32).toString('base64');
const provider = (b64: string) => new LocalKeyProvider(Buffer.from(b64, 'base64'));

/**
 * A wrong master key (issue 17): readiness proves that the configured master key opens the key
 * catalog (the master key check, migration 0004), and `relay serve` refuses to start with one
 * that does not, naming the problem and no secret.
 */
for (const target of targets()) {
  describe(`master key check and /readyz (${target.name})`, () => {
    let store: Store;
    // The server test database has one master key; the embedded one gets its own here.
    const right = target.name === 'pg' ? SERVER_TEST_MASTER_KEY : key();
    const wrong = key();
    const apis: TestApi[] = [];
    before(async () => {
      store = await target.open();
    });
    after(async () => {
      for (const a of apis) await a.close();
      await store?.close();
    });

    it('a database without a check gets one with the key given; that key passes, another does not', async () => {
      const first = await checkMasterKey(store.driver, provider(right));
      assert.equal(first.ok, true);
      if (target.name === 'pglite') assert.equal(first.created, true, 'a fresh database: written now');
      const again = await checkMasterKey(store.driver, provider(right));
      assert.deepEqual(again, { ok: true, created: false, detail: 'ok' });
      assert.deepEqual(await checkMasterKey(store.driver, provider(wrong)), { ok: false, created: false, detail: 'wrong key' });
    });

    it('/readyz: 200 with master_key ok for the right key, 503 with master_key "wrong key" for another', async () => {
      const good = await startTestApi(target, { masterKeyCheck: () => checkMasterKey(store.driver, provider(right)) });
      apis.push(good);
      const bad = await startTestApi(target, { masterKeyCheck: () => checkMasterKey(store.driver, provider(wrong)) });
      apis.push(bad);
      const ok = await call(`${good.url}/readyz`, 'GET', null);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal((ok.body as { checks: Record<string, string> }).checks.master_key, 'ok');
      const no = await call(`${bad.url}/readyz`, 'GET', null);
      assert.equal(no.status, 503);
      assert.equal((no.body as { status: string }).status, 'not_ready');
      assert.equal((no.body as { checks: Record<string, string> }).checks.master_key, 'wrong key');
    });
  });
}

function relay(args: string[], env: NodeJS.ProcessEnv) {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RELAY_') && k !== 'DATABASE_URL') clean[k] = v;
  const run = spawnSync(process.execPath, ['bin/relay.mjs', ...args], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('relay serve refuses a master key that does not open the key catalog (pglite)', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-master-check-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'data');
  const old = key();
  const next = key();

  it('the old key after keys rotate-master: start-up fails naming the problem, no secret; the new key serves', async () => {
    const made = relay(['keys', 'rotate', '--tenant', 'acme'], { RELAY_DATA_DIR: dataDir, RELAY_MASTER_KEY: old });
    assert.equal(made.code, 0, made.stderr);
    const rotated = relay(['keys', 'rotate-master'], { RELAY_DATA_DIR: dataDir, RELAY_MASTER_KEY: old, RELAY_NEW_MASTER_KEY: next });
    assert.equal(rotated.code, 0, rotated.stderr);
    // Run again (as after a run cut short once the check had moved): it finishes, rewrapping nothing.
    const again = relay(['keys', 'rotate-master'], { RELAY_DATA_DIR: dataDir, RELAY_MASTER_KEY: old, RELAY_NEW_MASTER_KEY: next });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /rewrapped 0 tenant keys/);
    // Neither key the catalog's: refused.
    const stranger = relay(['keys', 'rotate-master'], { RELAY_DATA_DIR: dataDir, RELAY_MASTER_KEY: key(), RELAY_NEW_MASTER_KEY: key() });
    assert.equal(stranger.code, 1);
    assert.match(stranger.stderr, /does not open this database's key catalog/);
    // The key CLI refuses the old key too (it would mint keys no service can unwrap).
    const cli = relay(['keys', 'rotate', '--tenant', 'acme'], { RELAY_DATA_DIR: dataDir, RELAY_MASTER_KEY: old });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /does not open this database's key catalog/);

    const failed = await startRelayProcess('pglite', { RELAY_DATA_DIR: dataDir, RELAY_MASTER_KEY: old }).then(
      () => assert.fail('relay serve started with the old master key'),
      (err: Error) => err.message,
    );
    assert.match(failed, /exited with 1/);
    assert.match(failed, /the configured master key \(local:[0-9a-f]{16}\) does not open this database's key catalog/);
    assert.match(failed, /rotate-master/);
    for (const secret of [old, next]) assert.ok(!failed.includes(secret) && !failed.includes(Buffer.from(secret, 'base64').toString('hex')), 'no key in the message');

    const served = await startRelayProcess('pglite', { RELAY_DATA_DIR: dataDir, RELAY_MASTER_KEY: next });
    try {
      const ready = await call(`${served.url}/readyz`, 'GET', null);
      assert.equal(ready.status, 200);
      assert.equal((ready.body as { checks: Record<string, string> }).checks.master_key, 'ok');
      const token = await served.token('acme', 'alice');
      assert.equal((await call(`${served.url}/api/v1/memory`, 'POST', token, { text: 'opens under the new key' })).status, 201);
    } finally {
      await served.stop();
    }
  });

  it('a database from before the check: the first start writes it with the key given, and says so', async () => {
    const fresh = await startRelayProcess('pglite', { RELAY_MASTER_KEY: key() });
    try {
      assert.match(fresh.stderr(), /wrote the master key check with the configured master key/);
    } finally {
      await fresh.stop();
    }
  });
});

const appUrl = process.env.RELAY_TEST_DATABASE_URL;
describe('relay serve refuses a wrong master key on the server store (pg)', { skip: !appUrl ? 'RELAY_TEST_DATABASE_URL not set' : false, timeout: 120_000 }, () => {
  it('exits 1 with the message; the database\'s own key starts', async () => {
    const failed = await startRelayProcess('pg', { RELAY_MASTER_KEY: key(), RELAY_RERANK: 'off' }).then(
      () => assert.fail('relay serve started with a wrong master key'),
      (err: Error) => err.message,
    );
    assert.match(failed, /exited with 1/);
    assert.match(failed, /does not open this database's key catalog/);
    const served = await startRelayProcess('pg', { RELAY_RERANK: 'off' });
    const ready = await call(`${served.url}/readyz`, 'GET', null);
    await served.stop();
    assert.equal((ready.body as { checks: Record<string, string> }).checks.master_key, 'ok');
  });
});

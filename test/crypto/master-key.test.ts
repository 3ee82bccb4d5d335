import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { KeyError, loadMasterKey } from '../../src/crypto/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'relay-master-key-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const code = (c: string) => (e: unknown) => e instanceof KeyError && e.code === c;

test('RELAY_MASTER_KEY: base64 of 32 bytes, anything else refused with a clear error', () => {
  const key = randomBytes(32);
  const got = loadMasterKey({ env: { RELAY_MASTER_KEY: key.toString('base64') } });
  assert.deepEqual(got.key, key);
  assert.equal(got.source, 'env');
  assert.deepEqual(got.warnings, []);
  assert.throws(() => loadMasterKey({ env: { RELAY_MASTER_KEY: randomBytes(16).toString('base64') } }), /must decode to 32 bytes, got 16/);
  assert.throws(() => loadMasterKey({ env: { RELAY_MASTER_KEY: randomBytes(33).toString('base64') } }), /got 33/);
  assert.throws(() => loadMasterKey({ env: { RELAY_MASTER_KEY: 'not base64 at all!' } }), /not valid base64/);
  assert.throws(() => loadMasterKey({ env: { RELAY_MASTER_KEY: key.toString('base64url') } }), code('invalid_master_key'));
  assert.throws(
    () => loadMasterKey({ env: { RELAY_MASTER_KEY: key.toString('base64'), RELAY_MASTER_KEY_FILE: '/x' } }),
    /not both/,
  );
});

test('RELAY_MASTER_KEY_FILE: read when 0600, refused when group or others can read it', () => {
  const key = randomBytes(32);
  const path = join(dir, 'kek.b64');
  writeFileSync(path, `${key.toString('base64')}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  const got = loadMasterKey({ env: { RELAY_MASTER_KEY_FILE: path } });
  assert.deepEqual(got.key, key);
  assert.equal(got.source, 'file');
  chmodSync(path, 0o644);
  assert.throws(() => loadMasterKey({ env: { RELAY_MASTER_KEY_FILE: path } }), (e: unknown) => code('master_key_file_permissions')(e) && /0644.*chmod 600/.test((e as Error).message));
  assert.throws(() => loadMasterKey({ env: { RELAY_MASTER_KEY_FILE: join(dir, 'missing') } }), /cannot read .*ENOENT/);
  const bad = join(dir, 'short.b64');
  writeFileSync(bad, randomBytes(8).toString('base64'), { mode: 0o600 });
  assert.throws(() => loadMasterKey({ env: { RELAY_MASTER_KEY_FILE: bad } }), /must decode to 32 bytes, got 8/);
});

test('embedded default: <dataDir>/master.key created 0600 on first use, with a development-only warning; reused after', () => {
  const dataDir = join(dir, 'data');
  const warned: string[] = [];
  const first = loadMasterKey({ env: {}, dataDir, warn: (m) => warned.push(m) });
  const path = join(dataDir, 'master.key');
  assert.equal(first.source, 'embedded_default');
  assert.equal(first.created, true);
  assert.equal(first.path, path);
  assert.equal(first.key.length, 32);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64').toString('hex'), first.key.toString('hex'));
  assert.equal(warned.length, 1);
  assert.match(warned[0] as string, /DEVELOPMENT ONLY/);
  assert.match(warned[0] as string, /RELAY_MASTER_KEY/);
  const second = loadMasterKey({ env: {}, dataDir });
  assert.equal(second.created, false);
  assert.deepEqual(second.key, first.key);
  assert.equal(second.warnings.length, 1);
  chmodSync(path, 0o640);
  assert.throws(() => loadMasterKey({ env: {}, dataDir }), code('master_key_file_permissions'));
});

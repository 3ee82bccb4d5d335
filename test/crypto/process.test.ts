import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ctxFor, makeRig } from './helpers.ts';

const cryptoIndex = fileURLToPath(new URL('../../src/crypto/index.ts', import.meta.url));

/** Runs `body` in a fresh node process whose keyring has the given master key and key rows. */
function inChild(masterKey: Buffer, repoJson: unknown, body: string): string {
  const script = `
    import(${JSON.stringify(cryptoIndex)}).then(async (c) => {
      const { key } = c.loadMasterKey({ env: { RELAY_MASTER_KEY: process.env.RELAY_MASTER_KEY } });
      const keyring = new c.Keyring({ provider: new c.LocalKeyProvider(key), repository: c.MemoryKeyRepository.fromJSON(JSON.parse(process.env.REPO)) });
      ${body}
    }).catch((e) => { console.error(e); process.exit(1); });`;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    env: { ...process.env, RELAY_MASTER_KEY: masterKey.toString('base64'), REPO: JSON.stringify(repoJson) },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout.trim();
}

test('hmacUser is stable across processes, and a value sealed here opens in another process', async () => {
  const masterKey = randomBytes(32);
  const { keyring, repo } = makeRig({ masterKey });
  const here = (await keyring.hmacUser('tenant-a', 'alice')).toString('hex');
  const ctx = ctxFor('tenant-a');
  const sealed = await keyring.seal('cross-process', ctx);
  const out = inChild(
    masterKey,
    repo.toJSON(),
    `const h = await keyring.hmacUser('tenant-a', 'alice');
     const ctx = { tenantId: 'tenant-a', userHash: Buffer.alloc(32, 7), chunkId: 'chunk-1', purpose: 'chunk.text' };
     const text = (await keyring.openSealed(Buffer.from(${JSON.stringify(sealed.toString('base64'))}, 'base64'), ctx)).toString();
     console.log(h.toString('hex') + ' ' + text);`,
  );
  assert.equal(out, `${here} cross-process`);
});

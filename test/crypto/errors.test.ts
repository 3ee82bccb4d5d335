import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { CryptoError, encodeKeyAad, KeyError, loadMasterKey, OPEN_FAILURE_REASONS } from '../../src/crypto/index.ts';
import { createMetrics } from '../../src/metrics/index.ts';
import { ctxFor, makeRig } from './helpers.ts';

/** Every way bytes could show up in text: hex (both cases), base64, base64url, latin1/utf8. */
function forms(bytes: Buffer): string[] {
  const out = [bytes.toString('hex'), bytes.toString('hex').toUpperCase(), bytes.toString('base64'), bytes.toString('base64url')];
  // also a middle piece, in case only part of a value were printed
  if (bytes.length >= 16) {
    const mid = bytes.subarray(4, 12);
    out.push(mid.toString('hex'), mid.toString('base64').slice(0, 8));
  }
  return out;
}

test('no error message, stack or inspection carries key, plaintext, ciphertext or user id bytes', async () => {
  const { keyring, repo, provider, masterKey } = makeRig();
  const plaintext = 'the user confided SECRET-PLAINTEXT-4711';
  const ctx = ctxFor('tenant-a');
  const sealed = await keyring.seal(plaintext, ctx);
  await keyring.hmacUser('tenant-a', 'alice@example.com');
  const rows = await repo.list('tenant-a');
  const roots = await Promise.all(rows.map((r) => provider.unwrap(r.wrapped, encodeKeyAad(r))));
  const secrets = [masterKey, ...roots, ...rows.map((r) => r.wrapped), sealed.subarray(55), Buffer.from(plaintext)];

  const errors: unknown[] = [];
  const capture = async (p: Promise<unknown>) => p.then(() => assert.fail('should have failed'), (e: unknown) => errors.push(e));
  const flipped = Buffer.from(sealed);
  flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 1;
  await capture(keyring.openSealed(flipped, ctx));
  await capture(keyring.openSealed(sealed, { ...ctx, chunkId: 'other' }));
  await capture(keyring.openSealed(sealed.subarray(0, 30), ctx));
  await capture(keyring.openSealed(sealed, ctxFor('tenant-z')));
  await repo.shred('tenant-a');
  keyring.forget('tenant-a');
  await capture(keyring.openSealed(sealed, ctx));
  const badEnv = `${masterKey.toString('base64').slice(0, 40)}!!!!`;
  try {
    loadMasterKey({ env: { RELAY_MASTER_KEY: badEnv } });
  } catch (e) {
    errors.push(e);
  }
  const short = randomBytes(16).toString('base64');
  try {
    loadMasterKey({ env: { RELAY_MASTER_KEY: short } });
  } catch (e) {
    errors.push(e);
  }
  assert.equal(errors.length, 7);
  assert.deepEqual(
    new Set(errors.map((e) => (e instanceof CryptoError ? e.reason : (e as KeyError).code))),
    new Set(['wrong_context_or_tampered', 'bad_format', 'unknown_key', 'key_shredded', 'invalid_master_key']),
  );
  const needles = [...secrets.flatMap(forms), plaintext, 'SECRET-PLAINTEXT', 'alice@example.com', badEnv, badEnv.slice(0, 20), short];
  for (const e of errors) {
    const text = [String(e), (e as Error).stack ?? '', inspect(e, { depth: 5 }), JSON.stringify(e)].join('\n');
    for (const n of needles) assert.ok(!text.includes(n), `error text contains a secret form (${(e as Error).message})`);
  }
});

test('relay_open_failures_total{reason} counts through the keyring hook, every reason present from the start', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const before = await metrics.registry.getSingleMetricAsString('relay_open_failures_total');
  for (const reason of OPEN_FAILURE_REASONS) assert.match(before, new RegExp(`relay_open_failures_total\\{reason="${reason}"\\} 0`));
  const { keyring } = makeRig({ onOpenFailure: metrics.openFailure });
  const ctx = ctxFor();
  const sealed = await keyring.seal('x', ctx);
  await assert.rejects(keyring.openSealed(sealed, { ...ctx, purpose: 'other' }), CryptoError);
  await assert.rejects(keyring.openSealed(Buffer.from('junk'), ctx), CryptoError);
  const after = await metrics.registry.getSingleMetricAsString('relay_open_failures_total');
  assert.match(after, /relay_open_failures_total\{reason="wrong_context_or_tampered"\} 1/);
  assert.match(after, /relay_open_failures_total\{reason="bad_format"\} 1/);
  assert.match(after, /relay_open_failures_total\{reason="unknown_key"\} 0/);
});

test('a throwing failure hook does not change the error the caller gets', async () => {
  const { keyring } = makeRig({
    onOpenFailure: () => {
      throw new Error('hook broke');
    },
  });
  await assert.rejects(keyring.openSealed(Buffer.from('junk'), ctxFor()), (e: unknown) => e instanceof CryptoError && e.reason === 'bad_format');
});

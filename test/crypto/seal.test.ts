import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  gcmEncryptInto,
  openWithKey,
  parseSealed,
  prepareDataKey,
  sealWithKey,
  SEALED_FORMAT_V1,
  encodeContext,
  type SealContext,
} from '../../src/crypto/index.ts';
import { ctxFor, makeRig, reasonOf } from './helpers.ts';

test('round trips of 0 B, 1 B, 1 KiB and 1 MiB through the keyring', async () => {
  const { keyring } = makeRig();
  for (const size of [0, 1, 1024, 1024 * 1024]) {
    const pt = randomBytes(size);
    const ctx = ctxFor('tenant-a', { chunkId: `c-${size}` });
    const sealed = await keyring.seal(pt, ctx);
    assert.equal(sealed.length, 55 + size + 16);
    assert.deepEqual(await keyring.openSealed(sealed, ctx), pt, `size ${size}`);
  }
  const text = 'Grüße, 世界 🌍';
  const ctx = ctxFor();
  assert.equal((await keyring.openSealed(await keyring.seal(text, ctx), ctx)).toString('utf8'), text);
});

test('each context field changed alone fails with wrong_context_or_tampered', async () => {
  const key = prepareDataKey(randomBytes(32), 'dk', 1);
  const ctx = ctxFor('tenant-a');
  const sealed = sealWithKey(key, Buffer.from('secret memory'), ctx);
  const changes: SealContext[] = [
    { ...ctx, tenantId: 'tenant-b' },
    { ...ctx, userHash: Buffer.alloc(32, 8) },
    { ...ctx, userHash: ctx.userHash.subarray(0, 31) },
    { ...ctx, chunkId: 'chunk-2' },
    { ...ctx, purpose: 'chunk.summary' },
  ];
  for (const other of changes) {
    assert.equal(await reasonOf(() => openWithKey(key, sealed, other)), 'wrong_context_or_tampered');
  }
  assert.equal(openWithKey(key, sealed, { ...ctx }).toString(), 'secret memory');
});

test('through the keyring: other user, chunk or purpose → wrong_context_or_tampered; other tenant never opens', async () => {
  const { keyring, failures } = makeRig();
  const ctx = ctxFor('tenant-a');
  const sealed = await keyring.seal('secret memory', ctx);
  for (const other of [{ ...ctx, userHash: Buffer.alloc(32, 9) }, { ...ctx, chunkId: 'x' }, { ...ctx, purpose: 'y' }]) {
    assert.equal(await reasonOf(keyring.openSealed(sealed, other)), 'wrong_context_or_tampered');
  }
  // tenant-b has no keys yet: its version 1 does not exist
  assert.equal(await reasonOf(keyring.openSealed(sealed, { ...ctx, tenantId: 'tenant-b' })), 'unknown_key');
  // once it has a version 1, that key's commitment does not match
  await keyring.seal('x', ctxFor('tenant-b'));
  assert.equal(await reasonOf(keyring.openSealed(sealed, { ...ctx, tenantId: 'tenant-b' })), 'wrong_context_or_tampered');
  assert.deepEqual(failures, [
    'wrong_context_or_tampered',
    'wrong_context_or_tampered',
    'wrong_context_or_tampered',
    'unknown_key',
    'wrong_context_or_tampered',
  ]);
});

test('every bit flip of header, nonce, commitment, ciphertext and tag fails', async () => {
  const { keyring, failures } = makeRig();
  const ctx = ctxFor();
  const sealed = await keyring.seal(Buffer.from('hi!!!'), ctx);
  const parts = parseSealed(sealed);
  const prefixEnd = parts.header.length - 12 - 32;
  let flips = 0;
  for (let byte = 0; byte < sealed.length; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      const bad = Buffer.from(sealed);
      bad[byte] = (bad[byte] as number) ^ (1 << bit);
      const reason = await reasonOf(keyring.openSealed(bad, ctx));
      // magic/format/key id/version may read as another format or key; everything after must fail authentication
      if (byte >= prefixEnd) assert.equal(reason, 'wrong_context_or_tampered', `byte ${byte} bit ${bit}`);
      flips++;
    }
  }
  assert.equal(flips, sealed.length * 8);
  assert.equal(failures.length, flips);
  assert.deepEqual(new Set(failures), new Set(['bad_format', 'unknown_key', 'wrong_context_or_tampered']));
  assert.equal((await keyring.openSealed(sealed, ctx)).toString(), 'hi!!!');
});

test('truncation at every length, and appended bytes, fail', async () => {
  const { keyring } = makeRig();
  const ctx = ctxFor();
  const sealed = await keyring.seal(Buffer.from('truncate me'), ctx);
  for (let n = 0; n < sealed.length; n++) {
    const reason = await reasonOf(keyring.openSealed(sealed.subarray(0, n), ctx));
    assert.ok(reason === 'bad_format' || reason === 'wrong_context_or_tampered', `length ${n}: ${reason}`);
  }
  assert.equal(await reasonOf(keyring.openSealed(Buffer.concat([sealed, Buffer.from([0])]), ctx)), 'wrong_context_or_tampered');
});

test('wrong key: the commitment check refuses it, even when GCM itself would accept', () => {
  const a = prepareDataKey(randomBytes(32), 'dk', 1);
  const b = prepareDataKey(randomBytes(32), 'dk', 1);
  const ctx = ctxFor();
  const sealedA = sealWithKey(a, Buffer.from('for key a'), ctx);
  assert.equal(openWithKey(a, sealedA, ctx).toString(), 'for key a');
  assert.throws(() => openWithKey(b, sealedA, ctx), (e: unknown) => (e as { reason?: string }).reason === 'wrong_context_or_tampered');

  // Someone holding key b builds a value that authenticates under b but carries a's
  // commitment: GCM under b accepts it, so only the commitment check stands in the way.
  const header = Buffer.from(parseSealed(sealedA).header);
  const aad = Buffer.concat([header, encodeContext(SEALED_FORMAT_V1, ctx)]);
  const pt = Buffer.from('forged');
  const forged = Buffer.alloc(header.length + pt.length + 16);
  header.copy(forged);
  gcmEncryptInto(b.encKey, header.subarray(11, 23), pt, aad, forged, header.length);
  assert.throws(() => openWithKey(b, forged, ctx), (e: unknown) => (e as { reason?: string }).reason === 'wrong_context_or_tampered');
  assert.throws(() => openWithKey(a, forged, ctx), (e: unknown) => (e as { reason?: string }).reason === 'wrong_context_or_tampered');
  // and with b's own commitment in the header it does open under b: the check above is what refused it
  b.commitment.copy(header, 23);
  const aad2 = Buffer.concat([header, encodeContext(SEALED_FORMAT_V1, ctx)]);
  header.copy(forged);
  gcmEncryptInto(b.encKey, header.subarray(11, 23), pt, aad2, forged, header.length);
  assert.equal(openWithKey(b, forged, ctx).toString(), 'forged');
});

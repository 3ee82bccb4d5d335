import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  CryptoError,
  decodeKeyAad,
  describeSealed,
  encodeContext,
  encodeKeyAad,
  openWithKey,
  parseSealed,
  prepareDataKey,
  sealWithKey,
} from '../../src/crypto/index.ts';
import { ctxFor } from './helpers.ts';

test('context encoding is length-prefixed in a fixed order (pinned bytes)', () => {
  const enc = encodeContext(1, { tenantId: 'ab', userHash: Buffer.from([0xff]), chunkId: 'c', purpose: 'p' });
  assert.equal(enc.toString('hex'), '01' + '00000002' + '6162' + '00000001' + 'ff' + '00000001' + '63' + '00000001' + '70');
});

test('("ab","c") and ("a","bc") encode differently, and a value sealed for one does not open as the other', () => {
  const userHash = Buffer.alloc(0);
  const a = { tenantId: 'ab', userHash, chunkId: 'c', purpose: 'p' };
  const b = { tenantId: 'a', userHash, chunkId: 'bc', purpose: 'p' };
  assert.notDeepEqual(encodeContext(1, a), encodeContext(1, b));
  const c = { tenantId: 't', userHash, chunkId: 'ab', purpose: 'c' };
  const d = { tenantId: 't', userHash, chunkId: 'a', purpose: 'bc' };
  const key = prepareDataKey(randomBytes(32), 'dk', 1);
  assert.throws(() => openWithKey(key, sealWithKey(key, Buffer.from('x'), a), b), CryptoError);
  assert.throws(() => openWithKey(key, sealWithKey(key, Buffer.from('x'), c), d), CryptoError);
});

test('contexts that would not encode canonically are refused', () => {
  assert.throws(() => encodeContext(1, ctxFor('a', { chunkId: 'x\uD800' })), /well-formed/);
  assert.throws(() => encodeContext(1, ctxFor('')), /tenantId/);
  assert.throws(() => encodeContext(1, ctxFor('a', { userHash: 'nope' as unknown as Buffer })), /userHash/);
});

test('sealed layout: magic, format, key id, version, nonce, commitment, ciphertext, tag', () => {
  const key = prepareDataKey(randomBytes(32), 'dk', 0x01020304);
  const pt = Buffer.from('hello world');
  const sealed = sealWithKey(key, pt, ctxFor());
  assert.equal(sealed.subarray(0, 4).toString('latin1'), 'RLY\x01');
  assert.equal(sealed[4], 2);
  assert.equal(sealed.subarray(5, 7).toString('ascii'), 'dk');
  assert.equal(sealed.readUInt32BE(7), 0x01020304);
  assert.deepEqual(sealed.subarray(23, 55), key.commitment);
  assert.equal(sealed.length, 55 + pt.length + 16);
  const parts = parseSealed(sealed);
  assert.equal(parts.nonce.length, 12);
  assert.equal(parts.header.length, 55);
  assert.equal(parts.ciphertext.length, pt.length);
  assert.notDeepEqual(parts.ciphertext, pt);
  assert.deepEqual(describeSealed(sealed), { formatVersion: 1, keyId: 'dk', keyVersion: 0x01020304 });
});

test('nonces are fresh: the same plaintext and context never seal to the same bytes', () => {
  const key = prepareDataKey(randomBytes(32), 'dk', 1);
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const parts = parseSealed(sealWithKey(key, Buffer.from('same'), ctxFor()));
    seen.add(parts.nonce.toString('hex'));
  }
  assert.equal(seen.size, 2000);
});

test('an unsealed framing and garbage are bad_format, not a crash', () => {
  for (const v of [Buffer.from('RLY0hello'), Buffer.alloc(0), Buffer.from('RLY'), randomBytes(100)]) {
    assert.throws(() => parseSealed(v), (e: unknown) => e instanceof CryptoError && e.reason === 'bad_format');
  }
});

test('tenant key AAD binds tenant, kind and version and decodes back (for KMS encryption contexts)', () => {
  const aad = encodeKeyAad({ tenantId: 'acme', kind: 'data', version: 3 });
  assert.deepEqual(decodeKeyAad(aad), { tenantId: 'acme', kind: 'data', version: 3 });
  assert.notDeepEqual(aad, encodeKeyAad({ tenantId: 'acme', kind: 'hmac', version: 3 }));
  assert.notDeepEqual(aad, encodeKeyAad({ tenantId: 'acme', kind: 'data', version: 4 }));
  assert.throws(() => decodeKeyAad(Buffer.concat([aad, Buffer.from([0])])), RangeError);
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CryptoError, gcmDecrypt, gcmEncrypt } from '../../src/crypto/index.ts';

interface Vector {
  tcId: number;
  comment: string;
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}
interface File {
  provenance: { counts: { valid: number; invalid: number } };
  testGroups: { keySize: number; ivSize: number; tagSize: number; tests: Vector[] }[];
}

const file = JSON.parse(readFileSync(new URL('./vectors/wycheproof-aes-gcm-256.json', import.meta.url), 'utf8')) as File;
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

test('Wycheproof AES-256-GCM (96-bit IV, 128-bit tag) through gcmEncrypt/gcmDecrypt', () => {
  let valid = 0;
  let invalid = 0;
  for (const group of file.testGroups) {
    assert.deepEqual([group.keySize, group.ivSize, group.tagSize], [256, 96, 128]);
    for (const v of group.tests) {
      const [key, iv, aad, msg, ct, tag] = [v.key, v.iv, v.aad, v.msg, v.ct, v.tag].map(hex) as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer];
      if (v.result === 'valid') {
        const enc = gcmEncrypt(key, iv, msg, aad);
        assert.equal(enc.ciphertext.toString('hex'), v.ct, `tcId ${v.tcId} ciphertext`);
        assert.equal(enc.tag.toString('hex'), v.tag, `tcId ${v.tcId} tag`);
        assert.equal(gcmDecrypt(key, iv, ct, tag, aad).toString('hex'), v.msg, `tcId ${v.tcId} plaintext`);
        valid++;
      } else if (v.result === 'invalid') {
        assert.throws(
          () => gcmDecrypt(key, iv, ct, tag, aad),
          (err: unknown) => err instanceof CryptoError && err.reason === 'wrong_context_or_tampered',
          `tcId ${v.tcId} (${v.comment}) must not open`,
        );
        invalid++;
      } else {
        assert.fail(`tcId ${v.tcId}: no 'acceptable' vectors expected in this subset`);
      }
    }
  }
  assert.ok(valid > 0 && invalid > 0);
  assert.equal(valid, file.provenance.counts.valid);
  assert.equal(invalid, file.provenance.counts.invalid);
  assert.deepEqual({ valid, invalid }, { valid: 39, invalid: 27 });
});

test('the primitive refuses other nonce and tag sizes instead of accepting them', () => {
  const key = Buffer.alloc(32, 1);
  assert.throws(() => gcmEncrypt(key, Buffer.alloc(16), Buffer.from('x'), Buffer.alloc(0)), RangeError);
  const { ciphertext, tag } = gcmEncrypt(key, Buffer.alloc(12), Buffer.from('hello'), Buffer.alloc(0));
  assert.throws(() => gcmDecrypt(key, Buffer.alloc(12), ciphertext, tag.subarray(0, 12), Buffer.alloc(0)), CryptoError);
  assert.throws(() => gcmDecrypt(key, Buffer.alloc(8), ciphertext, tag, Buffer.alloc(0)), RangeError);
});

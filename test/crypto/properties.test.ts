import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { CryptoError, encodeContext, openWithKey, prepareDataKey, sealWithKey, type SealContext } from '../../src/crypto/index.ts';
import { makeRig } from './helpers.ts';

const text = fc.string({ unit: 'grapheme', maxLength: 40 });
const ctxArb: fc.Arbitrary<SealContext> = fc.record({
  tenantId: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  userHash: fc.uint8Array({ maxLength: 48 }).map((u) => Buffer.from(u)),
  chunkId: text,
  purpose: text,
});
const payload = fc.uint8Array({ maxLength: 4096 }).map((u) => Buffer.from(u));
type Field = keyof SealContext;
const fields: Field[] = ['tenantId', 'userHash', 'chunkId', 'purpose'];

function differs(a: SealContext, b: SealContext): boolean {
  return a.tenantId !== b.tenantId || !a.userHash.equals(b.userHash) || a.chunkId !== b.chunkId || a.purpose !== b.purpose;
}

test('property: any payload and context round-trips through the keyring', async () => {
  const { keyring } = makeRig();
  await fc.assert(
    fc.asyncProperty(payload, ctxArb, async (pt, ctx) => {
      const opened = await keyring.openSealed(await keyring.seal(pt, ctx), ctx);
      assert.deepEqual(opened, pt);
    }),
    { numRuns: 200 },
  );
});

test('property: changing any single context field makes open fail with wrong_context_or_tampered', () => {
  const key = prepareDataKey(randomBytes(32), 'dk', 1);
  fc.assert(
    fc.property(payload, ctxArb, ctxArb, fc.constantFrom(...fields), (pt, ctx, other, field) => {
      const changed = { ...ctx, [field]: other[field] } as SealContext;
      fc.pre(differs(ctx, changed));
      const sealed = sealWithKey(key, pt, ctx);
      assert.throws(() => openWithKey(key, sealed, changed), (e: unknown) => e instanceof CryptoError && e.reason === 'wrong_context_or_tampered');
    }),
    { numRuns: 300 },
  );
});

test('property: the context encoding is injective', () => {
  fc.assert(
    fc.property(ctxArb, ctxArb, (a, b) => {
      assert.equal(encodeContext(1, a).equals(encodeContext(1, b)), !differs(a, b));
    }),
    { numRuns: 500 },
  );
});

test('property: arbitrary bytes never open and only ever fail with a CryptoError', async () => {
  const { keyring } = makeRig();
  const ctx = { tenantId: 't', userHash: Buffer.alloc(32), chunkId: 'c', purpose: 'p' };
  const real = await keyring.seal('real', ctx);
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
    // the real header followed by random bytes: passes parsing, must fail authentication
    fc.uint8Array({ minLength: 16, maxLength: 200 }).map((u) => Buffer.concat([real.subarray(0, 55), u])),
  );
  await fc.assert(
    fc.asyncProperty(bytes, async (b) => {
      await assert.rejects(keyring.openSealed(b, ctx), CryptoError);
    }),
    { numRuns: 300 },
  );
});

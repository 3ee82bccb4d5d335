import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCryptoBench } from '../../src/crypto/index.ts';

test('runCryptoBench returns the six numbers of `relay bench crypto --json`', async () => {
  const r = await runCryptoBench({ durationMs: 100, rounds: 2 });
  assert.deepEqual(Object.keys(r).sort(), ['hmac_ops_s', 'open_ops_s_1k', 'ratio_1k', 'raw_ops_s_1k', 'seal_mb_s_16k', 'seal_ops_s_1k']);
  for (const v of Object.values(r)) assert.ok(Number.isFinite(v) && v > 0);
  assert.ok(Math.abs(r.ratio_1k - r.seal_ops_s_1k / r.raw_ops_s_1k) < 0.01);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCryptoBench } from '../../src/crypto/index.ts';

test('runCryptoBench returns the ten numbers of `relay bench crypto --json`', async () => {
  const r = await runCryptoBench({ durationMs: 100, rounds: 2 });
  assert.deepEqual(Object.keys(r).sort(), [
    'dense_ns_per_vector',
    'derive_ns',
    'hmac_ops_s',
    'open_ops_s_1k',
    'ratio_1k',
    'raw_ops_s_1k',
    'seal_mb_s_16k',
    'seal_ops_s_1k',
    'transform_ns_per_vector',
    'transform_vs_dense',
  ]);
  for (const v of Object.values(r)) assert.ok(Number.isFinite(v) && v > 0);
  assert.ok(Math.abs(r.ratio_1k - r.seal_ops_s_1k / r.raw_ops_s_1k) < 0.01);
  assert.ok(Math.abs(r.transform_vs_dense - r.transform_ns_per_vector / r.dense_ns_per_vector) < 0.01);
});

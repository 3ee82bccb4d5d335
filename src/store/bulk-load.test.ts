import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildMemoryMb } from './bulk-load.ts';

test('buildMemoryMb: 1 GB up to ~500,000 rows, then 2 KB a row in steps of 256 MB, at most 4 GB', () => {
  assert.equal(buildMemoryMb(0), 1024);
  assert.equal(buildMemoryMb(300_000), 1024);
  assert.equal(buildMemoryMb(524_288), 1024); // exactly 1 GB at 2 KB a row
  assert.equal(buildMemoryMb(524_289), 1280);
  assert.equal(buildMemoryMb(1_000_000), 2048); // 1.91 GB of graph, rounded up
  assert.equal(buildMemoryMb(2_000_000), 4096);
  assert.equal(buildMemoryMb(50_000_000), 4096);
  for (const rows of [1, 700_001, 1_500_000, 1_999_999]) assert.ok(buildMemoryMb(rows) * 1024 * 1024 >= Math.min(4 * 2 ** 30, rows * 2048), `${rows} rows`);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildMemoryMb, isSharedMemoryShortage, withSerialBuildFallback } from './hnsw-build.ts';

test('buildMemoryMb: 2 KB a row in steps of 64 MB, at least 64 MB, at most 4 GB', () => {
  assert.equal(buildMemoryMb(0), 64);
  assert.equal(buildMemoryMb(20_000), 64); // 39 MB of graph: a parallel build fits Docker's 64 MB /dev/shm
  assert.equal(buildMemoryMb(32_768), 64); // exactly 64 MB at 2 KB a row
  assert.equal(buildMemoryMb(32_769), 128);
  assert.equal(buildMemoryMb(300_000), 640);
  assert.equal(buildMemoryMb(1_000_000), 1984); // 1.91 GB of graph, rounded up
  assert.equal(buildMemoryMb(2_000_000), 3968);
  assert.equal(buildMemoryMb(2_100_000), 4096);
  assert.equal(buildMemoryMb(50_000_000), 4096);
  for (const rows of [1, 32_769, 700_001, 1_500_000, 1_999_999]) assert.ok(buildMemoryMb(rows) * 1024 * 1024 >= Math.min(4 * 2 ** 30, rows * 2048), `${rows} rows`);
});

test('withSerialBuildFallback: once more, serially, only when shared memory ran short', async () => {
  const shortage = (code: string) => Object.assign(new Error('could not resize shared memory segment "/PostgreSQL.1" to 1073741824 bytes'), { code });
  for (const code of ['53100', '53200']) {
    assert.ok(isSharedMemoryShortage(shortage(code)));
    const calls: boolean[] = [];
    const seen: Error[] = [];
    const out = await withSerialBuildFallback(
      async (serial) => {
        calls.push(serial);
        if (!serial) throw shortage(code);
        return 'built';
      },
      (err) => seen.push(err),
    );
    assert.equal(out, 'built');
    assert.deepEqual(calls, [false, true]);
    assert.equal(seen.length, 1);
  }
  // Any other error is the caller's, untouched, after one try.
  for (const err of [Object.assign(new Error('duplicate'), { code: '42P07' }), new Error('no code')]) {
    const calls: boolean[] = [];
    await assert.rejects(
      withSerialBuildFallback(async (serial) => {
        calls.push(serial);
        throw err;
      }),
      (e) => e === err,
    );
    assert.deepEqual(calls, [false]);
  }
  // The serial try's own failure is thrown as it came.
  const second = shortage('53100');
  await assert.rejects(
    withSerialBuildFallback(async (serial) => {
      throw serial ? second : shortage('53100');
    }),
    (e) => e === second,
  );
});

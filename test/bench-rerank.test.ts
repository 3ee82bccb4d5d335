// `relay bench rerank` end to end on the generated `tiny` model: every summary key is there
// and sane. No timing thresholds: the machine running the tests is not the one measured.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { benchRerank } from '../src/bench/rerank.ts';

let scratch: string | undefined;
after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('benchRerank on the tiny model returns a complete, sane summary', async () => {
  scratch = await mkdtemp(join(tmpdir(), 'relay-bench-rerank-'));
  const lines: string[] = [];
  const s = await benchRerank({ model: 'tiny', queries: 3, candidates: 4, warmup: 1, floorRuns: 2, threads: 1, cacheDir: scratch, log: (l) => lines.push(l) });
  const keys = ['p50_ms', 'p95_ms', 'p95_ms_int8', 'candidates', 'efficiency', 'efficiency_int8', 'budget_p95_ms', 'reranked_mean', 'lexical_p95_ms', 'threads'] as const;
  // The keys lead the JSON line, in its order.
  assert.deepEqual(Object.keys(s).slice(0, keys.length + 1), ['bench', ...keys]);
  assert.equal(s.bench, 'rerank');
  for (const k of [...keys, 'p50_ms_int8', 'floor_gflops', 'floor_gflops_int8', 'mean_pair_tokens', 'none_p95_ms'] as const) {
    assert.ok(Number.isFinite(s[k]) && s[k] >= 0, `${k} = ${s[k]}`);
  }
  assert.equal(s.candidates, 4);
  assert.equal(s.threads, 1);
  assert.ok(s.p95_ms >= s.p50_ms);
  assert.ok(s.p95_ms_int8 >= s.p50_ms_int8);
  assert.ok(s.floor_gflops > 0 && s.floor_gflops_int8 > 0);
  assert.ok(s.efficiency > 0 && s.efficiency_int8 > 0);
  assert.ok(s.reranked_mean <= s.candidates);
  assert.ok(s.mean_pair_tokens > 0 && s.mean_pair_tokens <= 128);
  assert.ok(lines.length > 0, 'progress was logged');
  // The line the CLI prints must survive JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
});

test('benchRerank refuses fewer than 2 candidates', async () => {
  await assert.rejects(benchRerank({ model: 'tiny', queries: 1, candidates: 1 }), RangeError);
});

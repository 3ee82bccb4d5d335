// `relay bench rerank` end to end on the generated `tiny` model: every summary key is there
// and sane. No timing thresholds: the machine running the tests is not the one measured.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { benchRerank, timeInTurns, type Floor } from '../src/bench/rerank.ts';
import type { RerankCandidate } from '../src/rerank/types.ts';

let scratch: string | undefined;
after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('benchRerank on the tiny model returns a complete, sane summary', async () => {
  scratch = await mkdtemp(join(tmpdir(), 'relay-bench-rerank-'));
  const lines: string[] = [];
  const s = await benchRerank({ model: 'tiny', queries: 3, candidates: 4, warmup: 1, floorRuns: 2, threads: 1, cacheDir: scratch, log: (l) => lines.push(l) });
  const keys = ['p50_ms', 'p95_ms', 'p95_ms_int8', 'candidates', 'efficiency', 'efficiency_int8', 'efficiency_int8_ceiling', 'budget_p95_ms', 'reranked_mean', 'budget_utilization', 'budget_utilization_busy', 'budget_p95_ms_busy', 'lexical_p95_ms', 'threads'] as const;
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
  // Utilization is reranked ÷ what the floor allows (at most the candidates): a tiny model's floor allows all 4.
  assert.ok(s.floor_gflops_busy > 0);
  assert.ok(Math.abs(s.budget_utilization - s.reranked_mean / 4) < 0.01, `${s.budget_utilization} vs ${s.reranked_mean} of 4`);
  // The int8 profile: shares of every operator, quantized GEMMs among them, and a ceiling from the rest.
  const shares = Object.entries(s.int8_op_shares);
  assert.ok(Math.abs(shares.reduce((a, [, x]) => a + x, 0) - 1) < 0.02);
  assert.ok(shares.some(([op]) => /MatMulInteger|DynamicQuantizeMatMul/.test(op)), JSON.stringify(s.int8_op_shares));
  assert.ok(s.efficiency_int8_ceiling > 0 && s.efficiency_int8_ceiling < 1);
  assert.ok(s.mean_pair_tokens > 0 && s.mean_pair_tokens <= 128);
  assert.ok(lines.length > 0, 'progress was logged');
  // The line the CLI prints must survive JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
});

test('benchRerank refuses fewer than 2 candidates', async () => {
  await assert.rejects(benchRerank({ model: 'tiny', queries: 1, candidates: 1 }), RangeError);
});

test('the model and its floor are timed in turns (ABBA), each side settled by one untimed pass', async () => {
  const events: string[] = [];
  const provider = {
    provider: 'lexical' as const,
    id: 'recording',
    async rerank(query: string, candidates: readonly RerankCandidate[]) {
      events.push(`model ${query}`);
      return candidates.map((c) => ({ id: c.id, score: c.score }));
    },
  };
  const floor: Floor = {
    flops: 1,
    splits: 1,
    async time(runs: number) {
      events.push(`floor ×${runs}`);
      return Array.from({ length: runs }, () => 1);
    },
    async close() {},
  };
  const queries = Array.from({ length: 4 }, (_, i) => ({ text: `q${i}`, candidates: [{ id: 'a', text: 'a', score: 1 }] }));
  const out = await timeInTurns(provider, queries, floor, 8, 1);
  assert.equal(out.model.length, 4, 'each query timed once');
  assert.equal(out.floor.length, 8, 'every floor pass timed');
  // Warm-up, then 4 slices: floor then model, model then floor, …; each side's first call untimed.
  assert.deepEqual(events, [
    'model q0',
    'floor ×1', 'floor ×2', 'model q0', 'model q0',
    'model q1', 'model q1', 'floor ×1', 'floor ×2',
    'floor ×1', 'floor ×2', 'model q2', 'model q2',
    'model q3', 'model q3', 'floor ×1', 'floor ×2',
  ]);
});

// RELAY_FAULTS, the canary tests' switch: parsed strictly, refused in production, and each fault
// shows for real in a running `relay serve` (embedded store) — in the answer and in its metrics.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig, parseFaults } from '../src/config/index.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

describe('RELAY_FAULTS parsing', () => {
  it('reads key=value pairs; nothing set or all zero is no faults', () => {
    assert.deepEqual(parseFaults('ttfv_delay_ms=2000, sse_error_rate=0.01', undefined), { ttfvDelayMs: 2000, annDelayMs: 0, rlsErrorRate: 0, sseErrorRate: 0.01, sseErrorEvery: 0 });
    assert.equal(parseFaults('ttfv_delay_ms=0', 'test'), undefined);
    assert.equal(loadConfig({}).faults, undefined);
    assert.equal(loadConfig({ RELAY_FAULTS: 'ann_delay_ms=300' }).faults?.annDelayMs, 300);
  });

  it('refuses unknown keys, bad values and malformed pairs, naming them', () => {
    for (const [spec, word] of [
      ['ttfv_delay=5', 'ttfv_delay'],
      ['rls_error_rate=2', 'rls_error_rate'],
      ['sse_error_rate=lots', 'sse_error_rate'],
      ['ttfv_delay_ms', 'ttfv_delay_ms'],
      ['ann_delay_ms=-1', 'ann_delay_ms'],
      ['sse_error_every=1.5', 'sse_error_every'],
    ] as const) {
      assert.throws(() => parseFaults(spec, undefined), (e: Error) => e instanceof ConfigError && e.message.includes('RELAY_FAULTS') && e.message.includes(word), spec);
    }
  });

  it('is refused when NODE_ENV=production, even with every value zero', () => {
    assert.throws(() => loadConfig({ RELAY_FAULTS: 'ttfv_delay_ms=0', NODE_ENV: 'production' }), /RELAY_FAULTS.*NODE_ENV=production/s);
  });

  it('relay serve will not start with it in production', () => {
    const run = spawnSync(process.execPath, ['bin/relay.mjs', 'serve'], {
      env: { ...process.env, DATABASE_URL: '', RELAY_DATA_DIR: 'memory://', RELAY_FAULTS: 'ttfv_delay_ms=10', NODE_ENV: 'production', PORT: '0' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /RELAY_FAULTS/);
  });
});

describe('RELAY_FAULTS in a running service', () => {
  const running: RelayProcess[] = [];

  after(async () => {
    for (const p of running) await p.stop();
  });

  async function serviceWith(faults: string) {
    const p = await startRelayProcess('pglite', { RELAY_FAULTS: faults, RELAY_RERANK: 'off' });
    running.push(p);
    const token = await p.token('faults', 'ula');
    const post = (path: string, body: unknown, accept = 'application/json') =>
      fetch(`${p.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept }, body: JSON.stringify(body) });
    assert.equal((await post('/api/v1/memory', { chunks: ['Ula keeps the ladder in the shed.'] })).status, 201);
    return { p, token, post };
  }

  it('ttfv_delay_ms and ann_delay_ms: the first value and the search are that much slower, in the answer and the histograms', async () => {
    const { p, post } = await serviceWith('ttfv_delay_ms=400,ann_delay_ms=250');
    const res = await post('/api/v1/memory/query', { query: 'where is the ladder?' }, 'text/event-stream');
    assert.equal(res.status, 200);
    const text = await res.text();
    const done = JSON.parse(/event: done\ndata: (.+)/.exec(text)![1]!) as { count: number; ttfv_ms: number; timings: { search_ms: number } };
    assert.equal(done.count, 1);
    assert.ok(done.ttfv_ms >= 400 + 250, `ttfv ${done.ttfv_ms} ms`);
    assert.ok(done.timings.search_ms >= 250, `search ${done.timings.search_ms} ms`);
    assert.ok((await p.metric('relay_ann_query_seconds_sum')) >= 0.25);
    assert.equal(await p.metric('relay_ann_query_seconds_count'), 1);
    assert.equal(await p.metric('relay_ann_query_seconds_bucket', { le: '0.2' }), 0, 'no search was under 200 ms');
    assert.equal(await p.metric('relay_ttfv_seconds_count'), 1);
    assert.equal(await p.metric('relay_ttfv_seconds_bucket', { le: '0.5' }), 0, 'no first value came within 500 ms');
    assert.equal(await p.metric('relay_sse_streams_total', { outcome: 'success' }), 1);
  });

  it('rls_error_rate=1: every query meets a real RLS refusal, fails with 500 internal, is counted, and writes nothing', async () => {
    const { p, token, post } = await serviceWith('rls_error_rate=1');
    const res = await post('/api/v1/memory/query', { query: 'ladder' });
    assert.equal(res.status, 500);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'internal');
    assert.equal(await p.metric('relay_rls_errors_total'), 1);
    const list = await fetch(`${p.url}/api/v1/memory`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(((await list.json()) as { items: unknown[] }).items.length, 1, 'only the chunk written before');
  });

  it('sse_error_rate=1: every stream fails and is counted as an error', async () => {
    const { p, post } = await serviceWith('sse_error_rate=1');
    for (let i = 0; i < 3; i++) {
      const res = await post('/api/v1/memory/query', { query: 'ladder' }, 'text/event-stream');
      assert.equal(res.status, 500);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'internal');
    }
    assert.equal(await p.metric('relay_sse_streams_total', { outcome: 'error' }), 3);
    assert.equal(await p.metric('relay_sse_streams_total', { outcome: 'success' }), 0);
  });

  it('sse_error_every=3: exactly every third stream of the process fails, the others succeed', async () => {
    const { p, post } = await serviceWith('sse_error_every=3');
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) {
      const res = await post('/api/v1/memory/query', { query: 'ladder' }, 'text/event-stream');
      statuses.push(res.status);
      await res.text();
    }
    assert.deepEqual(statuses, [200, 200, 500, 200, 200, 500, 200]);
    assert.equal(await p.metric('relay_sse_streams_total', { outcome: 'error' }), 2);
    assert.equal(await p.metric('relay_sse_streams_total', { outcome: 'success' }), 5);
  });
});

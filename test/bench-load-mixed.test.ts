import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { errorCode, postJson, rssMb, sseRequest } from '../src/bench/index.ts';
import { SERVER_TEST_MASTER_KEY } from './helpers/relay-process.ts';

const run = promisify(execFile);

describe('bench load helpers', () => {
  let server: http.Server;
  let base = '';
  const agent = new http.Agent({ keepAlive: true });

  before(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/503') {
          res.writeHead(503, { 'content-type': 'application/json' });
          res.end('{"error":{"code":"store_unavailable","message":"down"}}');
        } else if (req.url === '/error-event') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end('event: error\ndata: {"code":"search_failed","message":"x"}\n\n');
        } else {
          res.writeHead(201, { 'content-type': 'application/json' });
          res.end('{"ids":["a"]}');
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  after(async () => {
    agent.destroy();
    await new Promise((r) => server.close(r));
  });

  it('errorCode reads an error body and an error frame, and nothing else', () => {
    assert.equal(errorCode('{"error":{"code":"invalid_json","message":"m"}}'), 'invalid_json');
    assert.equal(errorCode('{"code":"search_failed"}'), 'search_failed');
    assert.equal(errorCode('not json'), undefined);
    assert.equal(errorCode('{"error":{"code":5}}'), undefined);
  });

  it('postJson: ok on 2xx, status and API code otherwise', async () => {
    const ok = await postJson(agent, { url: new URL(`${base}/write`), headers: {} }, '{}');
    assert.equal(ok.ok, true);
    assert.equal(ok.status, 201);
    const bad = await postJson(agent, { url: new URL(`${base}/503`), headers: {} }, '{}');
    assert.deepEqual([bad.ok, bad.status, bad.code], [false, 503, 'store_unavailable']);
  });

  it('sseRequest keeps the API code of an error body and of an error event', async () => {
    const bad = await sseRequest(agent, { url: new URL(`${base}/503`), headers: {} }, '{}');
    assert.deepEqual([bad.ok, bad.status, bad.code], [false, 503, 'store_unavailable']);
    const mid = await sseRequest(agent, { url: new URL(`${base}/error-event`), headers: {} }, '{}');
    assert.deepEqual([mid.ok, mid.status, mid.code], [false, 200, 'search_failed']);
  });

  it('rssMb reads this process (Linux) and gives null for no process', { skip: process.platform !== 'linux' }, () => {
    const mb = rssMb(process.pid);
    assert.ok(mb !== null && mb > 10 && mb < 100_000, String(mb));
    assert.equal(rssMb(2 ** 22 + 12345), null);
  });
});

describe('relay bench load', () => {
  it('refuses without a server store', async () => {
    const env = { ...process.env };
    delete env.DATABASE_URL;
    delete env.RELAY_MIGRATE_URL;
    await assert.rejects(run(process.execPath, ['bin/relay.mjs', 'bench', 'load', '--duration', '1', '--json'], { env }), (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr ?? '', /bench load runs on a server PostgreSQL: set DATABASE_URL and RELAY_MIGRATE_URL/);
      return true;
    });
  });

  const url = process.env.RELAY_TEST_DATABASE_URL;
  const migrateUrl = process.env.RELAY_TEST_MIGRATE_URL;
  it('a short run on the server store prints a sane JSON line last', { skip: !url || !migrateUrl ? 'RELAY_TEST_DATABASE_URL / RELAY_TEST_MIGRATE_URL not set' : false, timeout: 180_000 }, async () => {
    const { stdout } = await run(process.execPath, ['bin/relay.mjs', 'bench', 'load', '--clients', '6', '--duration', '3', '--json'], {
      env: { ...process.env, DATABASE_URL: url, RELAY_MIGRATE_URL: migrateUrl, RELAY_MASTER_KEY: SERVER_TEST_MASTER_KEY },
      maxBuffer: 16 * 1024 * 1024,
    });
    const lines = stdout.trim().split('\n');
    const s = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    for (const key of ['sse_success', 'ttfv_p95_ms', 'errors', 'rss_growth_mb', 'rss_start_mb', 'rss_end_mb', 'rss_max_mb', 'write_p95_ms', 'offered_rate', 'achieved_rate', 'baseline_ttfv_p95_ms', 'ttfv_ratio', 'queries', 'writes']) {
      assert.ok(key in s, `missing ${key}`);
    }
    assert.equal(s.bench, 'load');
    assert.equal(s.offered_rate, 6);
    assert.equal(s.duration_s, 3);
    // 18 requests: every fifth a write.
    assert.equal((s.queries as number) + (s.writes as number), 18);
    assert.ok((s.writes as number) >= 3 && (s.writes as number) <= 4, `writes ${String(s.writes)}`);
    assert.deepEqual(s.errors, {});
    assert.equal(s.sse_success, 1);
    assert.equal(s.five_xx, 0);
    assert.ok((s.ttfv_p95_ms as number) > 0 && (s.baseline_ttfv_p95_ms as number) > 0);
    if (process.platform === 'linux') {
      assert.ok((s.rss_start_mb as number) > 20 && (s.rss_max_mb as number) >= (s.rss_end_mb as number));
      assert.equal(typeof s.rss_growth_mb, 'number');
    }
  });
});

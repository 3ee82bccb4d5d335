import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { abbaClosedLoops, buildBaselineApp, closedLoop, openLoop, percentile, sseRequest, SseParser, type Frame, type Outcome } from '../src/bench/index.ts';

describe('bench query load generator', () => {
  let app: FastifyInstance;
  let slow: http.Server;
  let inFlight = 0;
  let maxInFlight = 0;
  let agent: http.Agent;
  const releases: Array<() => void> = [];

  before(async () => {
    app = buildBaselineApp();
    await app.listen({ host: '127.0.0.1', port: 0 });
    // Answers only when the test says so, or in the shape the path asks for.
    slow = http.createServer((req, res) => {
      req.resume();
      const path = req.url ?? '';
      if (path === '/crlf-split') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: res');
        setTimeout(() => res.write('ult\r\ndata: {"a":\r\ndata: 1}\r'), 5);
        setTimeout(() => res.end('\n\r\nevent: done\r\ndata: {}\r\n\r\n'), 10);
      } else if (path === '/no-done') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('event: result\ndata: {}\n\n');
      } else if (path === '/error-event') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('event: error\ndata: {"code":"x"}\n\n');
      } else if (path === '/503') {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end('{}');
      } else {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        releases.push(() => {
          inFlight--;
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end('event: done\ndata: {}\n\n');
        });
      }
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  });
  after(async () => {
    agent.destroy();
    await app.close();
    await new Promise((r) => slow.close(r));
  });

  const url = (server: 'baseline' | 'slow', path: string) => {
    const addr = (server === 'baseline' ? app.server : slow).address();
    assert.ok(addr && typeof addr === 'object');
    return { url: new URL(`http://127.0.0.1:${addr.port}${path}`), headers: {} };
  };

  it('parses frames split across chunks with CRLF endings and multi-line data', () => {
    const frames: Frame[] = [];
    const p = new SseParser((f) => frames.push(f));
    for (const piece of ['ev', 'ent: result\r', '\nid: 1\r\ndata: a\r\nda', 'ta: b\r\n', '\r\n: comment\n\nevent: done\rdata: {}\r\r']) p.push(piece);
    // A CR at the very end may be half of a CRLF: the frame waits for the next byte.
    assert.equal(frames.length, 1);
    p.push('\n');
    assert.deepEqual(frames, [{ event: 'result', data: 'a\nb' }, { event: 'done', data: '{}' }]);
  });

  it('a stream with done is a success with a TTFV; without done, with an error event, or non-200 it is a failure', async () => {
    const ok = await sseRequest(agent, url('baseline', '/api/v1/memory/query'), '{}');
    assert.equal(ok.ok, true);
    assert.equal(ok.status, 200);
    assert.ok(ok.ttfvMs !== null && ok.ttfvMs <= ok.totalMs);
    const split = await sseRequest(agent, url('slow', '/crlf-split'), '{}');
    assert.equal(split.ok, true);
    for (const path of ['/no-done', '/error-event', '/503']) {
      const bad = await sseRequest(agent, url('slow', path), '{}');
      assert.equal(bad.ok, false, path);
      assert.ok(bad.error, path);
    }
    const timedOut = await sseRequest(agent, url('slow', '/hang'), '{}', 50);
    assert.equal(timedOut.ok, false);
    assert.match(timedOut.error ?? '', /timeout/);
    releases.splice(0).forEach((r) => r());
  });

  it('the open loop issues rate × duration requests without waiting for answers', async () => {
    maxInFlight = 0;
    const run = openLoop({ rate: 40, durationS: 0.5, fire: () => sseRequest(agent, url('slow', '/hang'), '{}', 10_000) });
    // Every request is in flight at once: none was answered, yet all 20 were sent.
    for (let i = 0; i < 400 && inFlight < 20; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(inFlight, 20);
    releases.splice(0).forEach((r) => r());
    const outcomes = await run;
    assert.equal(outcomes.length, 20);
    assert.ok(outcomes.every((o) => o.ok));
  });

  it('the closed loop keeps exactly N requests in flight', async () => {
    maxInFlight = 0;
    const pump = setInterval(() => releases.splice(0).forEach((r) => r()), 5);
    try {
      const { outcomes } = await closedLoop({ clients: 4, durationS: 0.3, fire: () => sseRequest(agent, url('slow', '/hang'), '{}', 10_000) });
      assert.equal(maxInFlight, 4);
      assert.ok(outcomes.length >= 4 && outcomes.every((o) => o.ok));
    } finally {
      clearInterval(pump);
    }
  });

  it('ABBA slices keep every outcome of each side, however many a fast target answers', async () => {
    // A floor that answers at once, 250,000 times per side (a static route on a fast machine
    // answered 18,500/s, ~140,000 in one 7.5 s slice of bench query), then every millisecond.
    const fired = { a: 0, b: 0 };
    const answer = (side: 'a' | 'b'): Promise<Outcome> => {
      const outcome = { ok: side === 'a', status: 200, ttfvMs: 0, totalMs: 0 };
      return fired[side]++ < 250_000 ? Promise.resolve(outcome) : new Promise((resolve) => setTimeout(() => resolve(outcome), 1));
    };
    const out = await abbaClosedLoops({ clients: 2, slices: 4, sliceS: 0.5, a: () => answer('a'), b: () => answer('b') });
    assert.ok(out.b.outcomes.length > 250_000, `only ${out.b.outcomes.length} outcomes: the test needs more than one call's arguments`);
    assert.equal(out.a.outcomes.length, fired.a);
    assert.equal(out.b.outcomes.length, fired.b);
    assert.ok(out.a.outcomes.every((o) => o.ok) && out.b.outcomes.every((o) => !o.ok));
    assert.ok(out.a.seconds >= 1 && out.b.seconds >= 1);
  });

  it('percentiles are nearest-rank', () => {
    const v = Array.from({ length: 100 }, (_, i) => 100 - i);
    assert.equal(percentile(v, 50), 50);
    assert.equal(percentile(v, 95), 95);
    assert.equal(percentile([7], 95), 7);
    assert.ok(Number.isNaN(percentile([], 50)));
  });
});

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ratioTo, recallAt } from '../src/bench/ann.ts';
import { PathTimes, timedGet } from '../src/bench/canary.ts';

// The figures the benchmarks report, on inputs that used to pass without measuring anything:
// no exact result, a zero baseline, a router that fails fast. No benchmark is run here.

describe('bench ann: recall and the ratio to exact search', () => {
  it('recall@k counts the exact top k found by the search', () => {
    assert.equal(recallAt([{ got: ['a', 'b', 'x'], truth: ['a', 'b', 'c', 'd'] }], 4), 0.5);
    assert.equal(recallAt([{ got: ['a'], truth: ['a', 'b'] }, { got: ['c', 'd'], truth: ['c', 'd'] }], 10), 0.75);
    // Only the first k of the exact answer are the truth.
    assert.equal(recallAt([{ got: ['c'], truth: ['a', 'b', 'c'] }], 2), 0);
  });

  it('an exact search that returned nothing is an error, not recall 1', () => {
    assert.throws(() => recallAt([{ got: ['a'], truth: ['a'] }, { got: [], truth: [] }], 10), /exact search of query 1 returned nothing, so no recall can be computed/);
    assert.throws(() => recallAt([{ got: ['a'], truth: [] }], 10), /returned nothing/);
    assert.throws(() => recallAt([], 10), /no queries/);
  });

  it('a zero, negative or NaN baseline p95 is an error, not a division by 1', () => {
    assert.equal(ratioTo(3, 6, 'x'), 0.5);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => ratioTo(3, bad, 'the exact search p95'), /the exact search p95 is .*no ratio can be computed/);
    assert.throws(() => ratioTo(Number.NaN, 6, 'the exact search p95'), /is NaN/);
  });
});

describe('bench canary: only successful responses are timed', () => {
  let server: http.Server;
  let url: string;
  const agent = new http.Agent({ keepAlive: false });
  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/ok') return res.end('ok');
      if (req.url === '/fail') {
        res.statusCode = 503;
        return res.end('{"error":{"code":"unavailable"}}');
      }
      if (req.url === '/redirect') {
        res.writeHead(302, { location: '/ok' });
        return res.end();
      }
      // A body cut short: 100 bytes promised, 5 sent, the connection dropped.
      res.writeHead(200, { 'content-length': '100' });
      res.write('short');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    agent.destroy();
    await new Promise((r) => server.close(r));
  });

  it('a 2xx with its whole body is ok; a 5xx, a 3xx, a cut body and a refused connection are not, and say why', async () => {
    assert.deepEqual(await timedGet(agent, `${url}/ok`, 't').then((t) => [t.ok, t.status]), [true, 200]);
    const fail = await timedGet(agent, `${url}/fail`, 't');
    assert.deepEqual([fail.ok, fail.status, fail.failure], [false, 503, 'status 503']);
    assert.deepEqual(await timedGet(agent, `${url}/redirect`, 't').then((t) => [t.ok, t.failure]), [false, 'status 302']);
    const cut = await timedGet(agent, `${url}/cut`, 't');
    assert.equal(cut.ok, false);
    assert.match(cut.failure!, /incomplete body|body: aborted|ECONNRESET/);
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const refused = await timedGet(agent, `http://127.0.0.1:${port}/ok`, 't');
    assert.deepEqual([refused.ok, refused.failure], [false, 'ECONNREFUSED']);
  });

  it('times only the successful ones, and a path with any failure fails the run', async () => {
    const path = new PathTimes('routed');
    for (const p of ['/ok', '/ok', '/fail', '/ok']) path.add(await timedGet(agent, `${url}${p}`, 't'));
    assert.equal(path.total, 4);
    assert.equal(path.ms.length, 3, 'the failed request was timed');
    assert.equal(path.failed, 1);
    assert.throws(() => path.check(), /1 of 4 routed requests failed \(1 × status 503\)/);
    // A stated share is allowed when asked for; the default is none.
    path.check(0.25);
    const clean = new PathTimes('direct');
    clean.add(await timedGet(agent, `${url}/ok`, 't'));
    clean.check();
    assert.throws(() => new PathTimes('direct').check(), /no direct request was made/);
  });

  it('a router that fails every request fast looks like what it is, not fast', async () => {
    const path = new PathTimes('routed');
    for (let i = 0; i < 5; i++) path.add(await timedGet(agent, `${url}/fail`, 't'));
    assert.equal(path.ms.length, 0);
    assert.throws(() => path.check(), /5 of 5 routed requests failed/);
  });
});

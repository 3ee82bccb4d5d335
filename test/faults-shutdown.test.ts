import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sseEvents } from './helpers/raw-stream.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';
import { Upstream } from './helpers/upstream.ts';

/**
 * SIGTERM under a concurrent streaming load, on a real `relay serve`: every stream in flight
 * finishes, nothing new is accepted, and the process exits 0. The streams are kept in flight by
 * a reranker that hangs: each waits out RELAY_RERANK_BUDGET_MS, then answers in search order.
 */

const STREAMS = 16;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A new TCP connection to the port: true once nothing listens there any more. */
const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });

describe('SIGTERM during a streaming load (relay serve)', () => {
  const reranker = new Upstream(() => []);
  let relay: RelayProcess;
  before(async () => {
    reranker.mode = 'hang';
    await reranker.listen();
    relay = await startRelayProcess('pglite', {
      RELAY_RERANKER: 'http',
      RELAY_RERANK_URL: reranker.url,
      RELAY_RERANK_BUDGET_MS: '1500',
      // Every query waits on the reranker: the breaker must not open and spare the later ones.
      RELAY_RERANK_BREAKER_FAILURES: '1000',
      RELAY_SHUTDOWN_GRACE_MS: '20000',
    });
  });
  after(async () => {
    await relay?.stop();
    await reranker.close();
  });

  it(`${STREAMS} streams in flight all end in done, a new connection is refused, exit code 0`, async () => {
    const token = await relay.token('fault-sigterm', 'alice');
    const stored = await fetch(`${relay.url}/api/v1/memory`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ chunks: ['keys under the blue pot', 'car keys by the door', 'spare keys at the neighbour'] }),
    });
    assert.equal(stored.status, 201);
    const port = Number(new URL(relay.url).port);

    const streams = Array.from({ length: STREAMS }, async () => {
      const res = await fetch(`${relay.url}/api/v1/memory/query`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: 'where are my keys', top_k: 3 }),
      });
      return { status: res.status, events: sseEvents(await res.text()) };
    });
    // Every stream is in flight once the reranker has been asked for each.
    while (reranker.requests < STREAMS) await sleep(10);
    relay.kill('SIGTERM');

    // The listener closes: a new connection is refused (polled, so as not to race the signal).
    const deadline = Date.now() + 15_000;
    while (!(await refused(port))) {
      assert.ok(Date.now() < deadline, 'the port still accepts connections after SIGTERM');
      await sleep(10);
    }
    const fresh = await new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => resolve(`answered ${res.statusCode}`));
      req.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end();
    });
    assert.equal(fresh, 'ECONNREFUSED');

    const done = await Promise.all(streams);
    for (const [i, s] of done.entries()) {
      assert.equal(s.status, 200, `stream ${i}`);
      assert.deepEqual(s.events.map((e) => e.event), ['result', 'result', 'result', 'done'], `stream ${i} did not finish: ${JSON.stringify(s.events)}`);
    }
    assert.equal(await relay.exited, 0);
  });
});

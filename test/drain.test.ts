import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { portAccepts } from '../src/fleet/index.ts';
import { call, startTestApi, type TestApi } from './helpers/api.ts';
import { openQueryStream, sseEvents } from './helpers/raw-stream.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';
import { targets } from './helpers/targets.ts';

/**
 * The drain before a shutdown (RELAY_DRAIN_MS): /readyz turns 503 at once, so that a load
 * balancer's health check takes the replica out, while every request — in flight and new — is
 * still served; the close comes after. A second signal cuts the drain short.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const target of targets()) {
  describe(`the drain: /readyz 503, every request still served (${target.name})`, () => {
    let api: TestApi;
    let token: string;
    before(async () => {
      // Queries wait a little in the embedder, so that one can be in flight when the drain begins.
      api = await startTestApi(target, {
        drainMs: 120_000,
        embedder: (inner) => ({
          id: inner.id,
          dimensions: inner.dimensions,
          embed: async (texts, o) => {
            if (texts.some((t) => t.includes('slowly'))) await sleep(500);
            return inner.embed(texts, o);
          },
        }),
      });
      token = await api.token(`drain-${target.name}-${Date.now()}`, 'alice');
    });
    after(async () => {
      api?.server.endDrain();
      await api?.close();
    });

    it('a stream in flight ends in done, /readyz says draining, new writes and queries get 201 and 200, and the close waits for the drain', async () => {
      const before = await call(`${api.url}/readyz`, 'GET', null);
      assert.equal(before.status, 200);
      assert.equal((before.body as { checks: Record<string, string> }).checks.shutdown, undefined);
      assert.equal((await call(`${api.url}/api/v1/memory`, 'POST', token, { text: 'the spare key is under the blue pot' })).status, 201);

      const inFlight = await openQueryStream(api.url, token, { query: 'where is the spare key, slowly', top_k: 3 });
      let drained = false;
      const drain = api.server.drain().then(() => (drained = true));
      assert.equal(api.server.draining, true);

      const ready = await call(`${api.url}/readyz`, 'GET', null);
      assert.equal(ready.status, 503);
      assert.deepEqual({ status: (ready.body as { status: string }).status, shutdown: (ready.body as { checks: Record<string, string> }).checks.shutdown }, { status: 'not_ready', shutdown: 'draining' });
      assert.equal((await call(`${api.url}/healthz`, 'GET', null)).status, 200);

      const write = await call(`${api.url}/api/v1/memory`, 'POST', token, { text: 'the car key hangs by the door' });
      assert.equal(write.status, 201, JSON.stringify(write.body));
      const query = await call(`${api.url}/api/v1/memory/query`, 'POST', token, { query: 'car key', top_k: 5 }, { accept: 'application/json' });
      assert.equal(query.status, 200, JSON.stringify(query.body));
      assert.ok((query.body as { results: unknown[] }).results.length > 0, 'the write made during the drain is found');

      const { text, dropped } = await inFlight.end();
      assert.equal(dropped, false);
      assert.equal(inFlight.status, 200);
      assert.equal(sseEvents(text).at(-1)?.event, 'done');

      // close() drains first: it has not closed anything while the drain runs.
      const closing = api.server.close();
      await sleep(300);
      assert.equal(drained, false);
      assert.equal(await portAccepts(Number(new URL(api.url).port)), true, 'the port still accepts during the drain');
      assert.equal((await call(`${api.url}/readyz`, 'GET', null)).status, 503);
      api.server.endDrain();
      await drain;
      await closing;
      assert.equal(await portAccepts(Number(new URL(api.url).port)), false, 'the port is closed after the drain and the close');
    });
  });
}

describe('SIGTERM on relay serve with RELAY_DRAIN_MS: /readyz 503 at once, requests still served; a second signal ends the drain', () => {
  let relay: RelayProcess;
  before(async () => {
    // Far longer than the test: only the second signal can end this drain.
    relay = await startRelayProcess('pglite', { RELAY_DRAIN_MS: '300000' });
  });
  after(() => relay?.stop());

  it('readyz turns 503 with check shutdown=draining, a request sent during the drain gets 200, the second SIGTERM exits 0', async () => {
    const token = await relay.token('drain-process', 'alice');
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    assert.equal((await fetch(`${relay.url}/readyz`)).status, 200);
    relay.kill('SIGTERM');
    let ready: Response | null = null;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(20)) {
      ready = await fetch(`${relay.url}/readyz`);
      if (ready.status === 503) break;
      await ready.body?.cancel();
    }
    assert.equal(ready?.status, 503, 'readyz never turned 503 after SIGTERM');
    assert.equal(((await ready!.json()) as { checks: Record<string, string> }).checks.shutdown, 'draining');

    const write = await fetch(`${relay.url}/api/v1/memory`, { method: 'POST', headers, body: JSON.stringify({ text: 'written while draining' }) });
    assert.equal(write.status, 201, await write.clone().text());
    const query = await fetch(`${relay.url}/api/v1/memory/query`, { method: 'POST', headers: { ...headers, accept: 'text/event-stream' }, body: JSON.stringify({ query: 'written while draining' }) });
    assert.equal(query.status, 200);
    assert.equal(sseEvents(await query.text()).at(-1)?.event, 'done');
    await relay.logged(/shutting down: draining/);

    relay.kill('SIGTERM');
    // The drain alone would last 5 minutes; the second signal ends it (the test's own timeout is far below).
    assert.equal(await relay.exited, 0);
    assert.match(await relay.logged(/second signal/), /second signal: ending the drain early/);
  });
});

describe('a signal after the drain ends relay serve at once, as before RELAY_DRAIN_MS', () => {
  let relay: RelayProcess;
  before(async () => {
    // Every query holds 60 s before its first result: a stream the close would wait for.
    // A heartbeat every 500 ms, so that the stream's headers arrive at once.
    relay = await startRelayProcess('pglite', { RELAY_DRAIN_MS: '0', RELAY_SHUTDOWN_GRACE_MS: '120000', RELAY_FAULTS: 'ttfv_delay_ms=60000', RELAY_SSE_HEARTBEAT_MS: '500' });
  });
  after(() => relay?.stop());

  it('SIGTERM starts the close, which waits for the stream; a second SIGTERM kills the process by the signal', async () => {
    const token = await relay.token('drain-after', 'alice');
    const stream = await openQueryStream(relay.url, token, { query: 'anything', top_k: 1 });
    assert.equal(stream.status, 200);
    relay.kill('SIGTERM');
    await relay.logged(/"msg":"shutting down"/);
    const port = Number(new URL(relay.url).port);
    for (const deadline = Date.now() + 30_000; (await portAccepts(port)) && Date.now() < deadline; ) await sleep(20);
    assert.equal(await portAccepts(port), false, 'the close began: the port no longer accepts');
    relay.kill('SIGTERM');
    // Not an exit code: Node's default action for the signal (the close would have waited a minute).
    assert.equal(await relay.exited, null);
    assert.equal((await stream.end()).dropped, true);
  });
});

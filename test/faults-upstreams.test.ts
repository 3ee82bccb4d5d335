import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { openQueryStream, sseEvents } from './helpers/raw-stream.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';
import { Upstream } from './helpers/upstream.ts';

/**
 * Upstream faults against a real `relay serve`: an HTTP reranker (TEI wire format) and an
 * OpenAI-compatible embeddings API, both real local servers that answer, fail, hang or go away
 * on cue. The unit suites (test/rerank/*, test/embed/openai.test.ts) cover each adapter alone;
 * these check what the running service makes of it.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, limitMs = 60_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(100);
  }
}

describe('reranker hanging or failing, against relay serve with an HTTP reranker', () => {
  // TEI: {query, texts} → [{index, score}]; it scores the candidates in reverse, so a reranked
  // answer is visibly not in search order.
  const tei = new Upstream((body) => (body.texts as string[]).map((_, index, all) => ({ index, score: (index + 1) / all.length })));
  let relay: RelayProcess;
  let token: string;
  before(async () => {
    await tei.listen();
    relay = await startRelayProcess('pglite', {
      RELAY_RERANKER: 'http',
      RELAY_RERANK_URL: tei.url,
      RELAY_RERANK_FORMAT: 'tei',
      RELAY_RERANK_BUDGET_MS: '300',
      RELAY_RERANK_BREAKER_FAILURES: '2',
      RELAY_RERANK_BREAKER_COOLDOWN_MS: '1000',
    });
    token = await relay.token('fault-rerank', 'alice');
    const res = await fetch(`${relay.url}/api/v1/memory`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ chunks: ['keys under the blue pot', 'car keys by the door', 'spare keys at the neighbour', 'the key to the shed', 'keys, wallet, phone'] }),
    });
    assert.equal(res.status, 201);
  });
  after(async () => {
    await relay?.stop();
    await tei.close();
  });

  /** A streamed query: the result ids in order and its done summary; it must end in done. */
  async function query(rerank: 'auto' | 'on' | 'off' = 'auto') {
    const stream = await openQueryStream(relay.url, token, { query: 'where are my keys', top_k: 5, rerank });
    const events = sseEvents((await stream.end()).text);
    assert.equal(events.at(-1)?.event, 'done', `the stream did not end in done: ${JSON.stringify(events)}`);
    return {
      ids: events.filter((e) => e.event === 'result').map((e) => (JSON.parse(e.data) as { id: string }).id),
      reranked: (JSON.parse(events.at(-1)!.data) as { reranked: number }).reranked,
    };
  }
  const fallbacks = (reason: string) => relay.metric('relay_rerank_fallbacks_total', { reason });

  it('hanging, then failing: search order every time, the fallback counted; the breaker opens, then closes on a good probe', async () => {
    const searchOrder = (await query('off')).ids;
    assert.equal(searchOrder.length, 5);
    const healthy = await query();
    assert.equal(healthy.reranked, 5);
    assert.notDeepEqual(healthy.ids, searchOrder, 'the reranker changes the order when it answers');

    tei.mode = 'hang';
    const timeouts = await fallbacks('timeout');
    const hung = await query();
    assert.deepEqual(hung, { ids: searchOrder, reranked: 0 }, 'a hanging reranker: the query still streams, in search order');
    assert.equal(await fallbacks('timeout'), timeouts + 1);

    tei.mode = 'fail';
    const errors = await fallbacks('error');
    assert.deepEqual(await query(), { ids: searchOrder, reranked: 0 });
    assert.equal(await fallbacks('error'), errors + 1);

    // Two failures in a row (RELAY_RERANK_BREAKER_FAILURES=2): the breaker is open, the reranker is not even asked.
    const asked = tei.requests;
    const open = await fallbacks('circuit_open');
    assert.deepEqual(await query(), { ids: searchOrder, reranked: 0 });
    assert.equal(await fallbacks('circuit_open'), open + 1);
    assert.equal(tei.requests, asked, 'an open breaker sends nothing');

    // Healthy again: after the cool-down a probe goes through, and the breaker closes.
    tei.mode = 'ok';
    await until('a probe to rerank again', async () => ((await query()).reranked === 5 ? true : undefined));
    const before = tei.requests;
    assert.deepEqual(await query(), healthy, 'closed again: every query is reranked');
    assert.equal(tei.requests, before + 1);
  });
});

describe('embedding API down, against relay serve with the openai embedder', () => {
  const dim = 384;
  // One unit vector per text, from its length: enough for an embedder that only has to answer.
  const openai = new Upstream((body) => ({
    object: 'list',
    model: 'fake',
    data: (body.input as string[]).map((text, index) => ({ object: 'embedding', index, embedding: Array.from({ length: dim }, (_, i) => (i === text.length % dim ? 1 : 0.01)) })),
    usage: { prompt_tokens: 1, total_tokens: 1 },
  }));
  const serverUrl = process.env.RELAY_TEST_DATABASE_URL;
  const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;
  const tenant = `fault-embed-${Date.now()}`;
  let relay: RelayProcess;
  let service: string;

  before(async () => {
    await openai.listen();
    relay = await startRelayProcess(serverUrl ? 'pg' : 'pglite', {
      RELAY_EMBEDDER: 'openai',
      RELAY_OPENAI_BASE_URL: `${openai.url}/v1`,
      RELAY_OPENAI_MODEL: 'fake',
      RELAY_EMBED_RETRIES: '1',
      RELAY_EMBED_TIMEOUT_MS: '500',
    });
    service = await relay.token(tenant);
  });
  after(async () => {
    await relay?.stop();
    await openai.close();
    if (serverUrl && ownerUrl) {
      const c = new pg.Client({ connectionString: ownerUrl });
      await c.connect();
      for (const table of ['memory_chunks', 'idempotency_keys', 'tenant_keys']) await c.query(`DELETE FROM ${table} WHERE tenant_id = $1`, [tenant]);
      await c.end();
    }
  });

  const write = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${relay.url}/api/v1/memory`, { method: 'POST', headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  /** Rows of the tenant: as the owner on a server store; through the API on the embedded one (the process holds its folder). */
  async function rows(): Promise<number> {
    if (serverUrl && ownerUrl) {
      const c = new pg.Client({ connectionString: ownerUrl });
      await c.connect();
      try {
        return (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id = $1', [tenant])).rows[0]!.n;
      } finally {
        await c.end();
      }
    }
    const res = await fetch(`${relay.url}/api/v1/memory?user_id=bob&limit=100`, { headers: { authorization: `Bearer ${service}` } });
    return ((await res.json()) as { items: unknown[] }).items.length;
  }

  it('503, hanging, connection refused: writes are 503 embedder_unavailable with retry-after, nothing half-written; a keyed retry then writes once', async () => {
    assert.equal((await write({ user_id: 'bob', chunks: ['first', 'second'] })).status, 201);
    const before = await rows();
    assert.equal(before, 2);
    const body = { user_id: 'bob', chunks: ['one', 'two', 'three'] };
    for (const mode of ['fail', 'hang', 'refused'] as const) {
      if (mode === 'refused') await openai.close();
      else openai.mode = mode;
      const res = await write(body, { 'idempotency-key': 'during-the-outage' });
      assert.equal(res.status, 503, `${mode}: ${res.status}`);
      assert.ok(res.headers.get('retry-after'), `${mode}: retry-after`);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'embedder_unavailable', mode);
      assert.equal(await rows(), before, `${mode}: nothing written`);
      // A query needs the embedder too: a plain 503 before the stream opens, never a half stream.
      const q = await fetch(`${relay.url}/api/v1/memory/query`, {
        method: 'POST',
        headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ user_id: 'bob', query: 'first' }),
      });
      assert.equal(q.status, 503, `${mode}: query`);
      assert.equal(((await q.json()) as { error: { code: string } }).error.code, 'embedder_unavailable');
    }
    // Back on the same port: the same keyed request is written, once.
    openai.mode = 'ok';
    await openai.listen();
    const retried = await write(body, { 'idempotency-key': 'during-the-outage' });
    assert.equal(retried.status, 201);
    assert.equal(retried.headers.get('idempotent-replayed'), 'false', 'the failed attempts stored no answer under the key');
    const again = await write(body, { 'idempotency-key': 'during-the-outage' });
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(await again.json(), await retried.json());
    assert.equal(await rows(), before + 3);
  });
});

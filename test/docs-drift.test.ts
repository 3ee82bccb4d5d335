// What the docs promise about answers and metrics, checked against what the code really does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createMetrics } from '../src/metrics/index.ts';
import { call, sseQuery, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

const api_md = readFileSync(new URL('../docs/api.md', import.meta.url), 'utf8');
const observability_md = readFileSync(new URL('../docs/observability.md', import.meta.url), 'utf8');

/** The keys a doc's shape names: `"count"` or bare `count` inside `{…}` (one level; nested braces are cut out first). */
function keysOf(shape: string): { top: string[]; nested: string[][] } {
  const nested: string[][] = [];
  let top = shape.trim().slice(1, -1);
  top = top.replace(/\{([^{}]*)\}/g, (_m, inner: string) => {
    nested.push(inner.split(',').map((k) => k.trim().replace(/^"|"$/g, '').replace(/"?:.*$/, '')));
    return 'X';
  });
  const names = [...top.matchAll(/"(\w+)"\s*:?/g)].map((m) => m[1]!);
  return { top: names, nested };
}

const sorted = (keys: Iterable<string>) => [...keys].sort();

describe('docs/observability.md: every known label value is exported at 0 on a fresh process', () => {
  // Rows like: | `relay_search_total` | counter | `strategy` (exact, hnsw, hnsw_then_exact) | … |
  const rows = [...observability_md.matchAll(/^\| `(relay_\w+)` \| (counter|histogram|gauge)[^|]* \| `(\w+)` \(([^)`]+)\) \|/gm)];

  it('the table lists labelled metrics (the parser found them)', () => {
    const names = rows.map((r) => r[1]);
    for (const name of ['relay_search_total', 'relay_open_failures_total', 'relay_sse_streams_total', 'relay_rerank_seconds']) assert.ok(names.includes(name), name);
  });

  it('a fresh registry renders every documented label of every labelled counter and histogram at 0, and no other', async () => {
    const text = await createMetrics({ defaultMetrics: false }).render();
    for (const [, name, type, label, list] of rows) {
      const values = list!.split(',').map((v) => v.trim());
      const series = type === 'histogram' ? `${name}_count` : name!;
      for (const value of values) {
        assert.ok(new RegExp(`^${series}\\{${label}="${value}"\\} 0$`, 'm').test(text), `${series}{${label}="${value}"} is not exported at 0`);
      }
      // And the code knows no value the docs leave out.
      const exported = [...text.matchAll(new RegExp(`^${series}\\{${label}="([^"]+)"\\}`, 'gm'))].map((m) => m[1]!);
      assert.deepEqual(sorted(new Set(exported)), sorted(values), `${name}: the docs list ${values.join(', ')}`);
    }
  });
});

describe('docs/api.md: the documented answers have the keys the API sends', () => {
  const target = targets()[0]!;
  let api: TestApi;
  let alice: string;
  let id: string;

  before(async () => {
    api = await startTestApi(target);
    alice = await api.token(testTenant('drift'), 'alice');
    const res = await call(`${api.url}/api/v1/memory`, 'POST', alice, { text: 'Alice keeps her spare keys under the blue pot.', metadata: { topic: 'home' } });
    id = (res.body as { ids: string[] }).ids[0]!;
  });
  after(async () => {
    await api?.close();
  });

  it('the JSON query answer', async () => {
    const shape = /the same in one body,\s*`(\{"results".*?\})`\./s.exec(api_md)?.[1];
    assert.ok(shape, 'api.md shows the JSON answer');
    const documented = keysOf(shape.replace(/\s+/g, ' '));
    const res = await call(`${api.url}/api/v1/memory/query`, 'POST', alice, { query: 'spare keys' }, { accept: 'application/json' });
    assert.equal(res.status, 200);
    const body = res.body as Record<string, unknown> & { results: Array<Record<string, unknown>> };
    assert.deepEqual(sorted(documented.top), sorted(Object.keys(body)));
    assert.deepEqual(sorted(documented.nested[0]!), sorted(Object.keys(body.results[0]!)));
  });

  it('the SSE result and done events', async () => {
    const block = /```\nevent: result\nid: .*\ndata: (\{.*\})\n\nevent: done\ndata: (\{.*\})\n```/.exec(api_md);
    assert.ok(block, 'api.md shows a result and a done event');
    const events = await sseQuery(api.url, alice, { query: 'spare keys' });
    const result = JSON.parse(events.find((e) => e.event === 'result')!.data) as Record<string, unknown>;
    const done = JSON.parse(events.find((e) => e.event === 'done')!.data) as Record<string, unknown>;
    const example = (text: string) => JSON.parse(text.replaceAll('…', '')) as Record<string, unknown>;
    assert.deepEqual(sorted(Object.keys(example(block[1]!))), sorted(Object.keys(result)));
    const doneExample = example(block[2]!);
    assert.deepEqual(sorted(Object.keys(doneExample)), sorted(Object.keys(done)));
    assert.deepEqual(sorted(Object.keys(doneExample.timings as object)), sorted(Object.keys(done.timings as object)));
  });

  it('a chunk (GET by id), and each line of the export', async () => {
    const shape = /## `GET \/api\/v1\/memory\/:id`[^]*?\*\*200\*\*\s*`(\{[^`]*\})`/.exec(api_md)?.[1];
    assert.ok(shape, 'api.md shows a chunk');
    const documented = keysOf(shape.replace(/\s+/g, ' ')).top;
    const got = await call(`${api.url}/api/v1/memory/${id}`, 'GET', alice);
    assert.deepEqual(sorted(documented), sorted(Object.keys(got.body as object)));
    const line = /## `GET \/api\/v1\/users\/:user_id\/memory\/export`[^]*?—\s*`(\{[^`]*\})`/.exec(api_md)?.[1];
    assert.ok(line, 'api.md shows an export line');
    const exported = await fetch(`${api.url}/api/v1/users/alice/memory/export`, { headers: { authorization: `Bearer ${alice}` } });
    const first = JSON.parse((await exported.text()).split('\n')[0]!) as object;
    assert.deepEqual(sorted(keysOf(line.replace(/\s+/g, ' ')).top), sorted(Object.keys(first)));
  });
});

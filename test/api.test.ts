import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { migrateDown, migrateUp, type Store } from '../src/store/index.ts';
import { startTestApi, type TestApi } from './helpers/api.ts';
import { targets } from './helpers/targets.ts';

for (const target of targets()) {
  describe(`health, readiness and metrics (${target.name})`, () => {
    let api: TestApi;
    let store: Store;
    before(async () => {
      api = await startTestApi(target);
      store = api.store;
    });
    after(async () => {
      await migrateUp(store.driver, store.migrationVars).catch(() => undefined);
      await api?.close();
    });
    const base = () => api.url;

    it('answers /healthz and echoes a request id', async () => {
      const res = await fetch(`${base()}/healthz`, { headers: { 'x-request-id': 'req-123' } });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: 'ok' });
      assert.equal(res.headers.get('x-request-id'), 'req-123');
    });

    it('is ready when migrations are current, and 503 when they are not', async () => {
      const ok = await fetch(`${base()}/readyz`);
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { status: 'ready', checks: { store: 'ok', migrations: 'current', embedder: `hash-v1/d${store.embeddingDim}` } });
      await migrateDown(store.driver, store.migrationVars, 0);
      try {
        const behind = await fetch(`${base()}/readyz`);
        assert.equal(behind.status, 503);
        const body = (await behind.json()) as { status: string; checks: { migrations: string } };
        assert.equal(body.status, 'not_ready');
        assert.match(body.checks.migrations, /^at 0, expected \d+$/);
      } finally {
        await migrateUp(store.driver, store.migrationVars);
      }
    });

    it('serves Prometheus text at /metrics/memory with the guardrail names', async () => {
      const res = await fetch(`${base()}/metrics/memory`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      for (const name of ['relay_rls_errors_total', 'relay_ann_query_seconds_bucket', 'relay_db_pool_utilization', 'relay_ttfv_seconds_bucket', 'relay_cross_tenant_attempts_total']) {
        assert.ok(text.includes(name), name);
      }
      assert.match(text, /relay_build_info\{version="[^"]+",release="test-release"\} 1/);
      assert.match(text, /relay_ann_query_seconds_bucket\{le="0\.2"\}/);
      assert.match(text, /relay_ann_query_seconds_bucket\{le="0\.25"\}/);
      assert.match(text, /relay_ttfv_seconds_bucket\{le="1\.5"\}/);
      for (const outcome of ['success', 'error', 'client_abort']) assert.match(text, new RegExp(`relay_sse_streams_total\\{outcome="${outcome}"\\} 0`));
    });

    it('answers unknown routes with the JSON error shape', async () => {
      const res = await fetch(`${base()}/api/v1/nothing`);
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { error: { code: 'not_found', message: 'no route GET /api/v1/nothing' } });
    });
  });
}

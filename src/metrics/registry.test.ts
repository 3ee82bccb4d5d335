import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMetrics } from './index.ts';

describe('createMetrics', () => {
  it('labels requests by tenant only when asked, for a bounded number of tenants', async () => {
    const none = createMetrics({ defaultMetrics: false });
    none.api.request('/api/v1/memory', 201, 0.01, 'tenant-a');
    assert.doesNotMatch(await none.render(), /tenant-a/);

    const some = createMetrics({ defaultMetrics: false, tenantLabels: 2 });
    for (const t of ['a', 'b', 'c', 'd', 'a']) some.api.request('/api/v1/memory', 201, 0.01, `tenant-${t}`);
    const text = await some.render();
    assert.match(text, /relay_tenant_requests_total\{tenant="tenant-a"\} 2/);
    assert.match(text, /relay_tenant_requests_total\{tenant="tenant-b"\} 1/);
    assert.match(text, /relay_tenant_requests_total\{tenant="_other"\} 2/);
    assert.doesNotMatch(text, /tenant-c|tenant-d/);
  });

  it('RELAY_METRICS=off: every hook is a no-op', async () => {
    const off = createMetrics({ enabled: false });
    off.api.crossTenantAttempt();
    off.api.stream('success');
    off.storeObserver.rlsError?.();
    off.openFailure('bad_format');
    off.rerank.fallback('timeout');
    const text = await off.render();
    assert.match(text, /relay_cross_tenant_attempts_total 0/);
    assert.match(text, /relay_sse_streams_total\{outcome="success"\} 0/);
    assert.match(text, /relay_rls_errors_total 0/);
    assert.doesNotMatch(text, /process_cpu/);
    assert.equal(off.enabled, false);
  });

  it('puts the guardrail thresholds on bucket edges and exports every known label at 0', async () => {
    const m = createMetrics({ defaultMetrics: false, release: 'canary-7', version: '1.2.3' });
    const text = await m.render();
    assert.match(text, /relay_build_info\{version="1\.2\.3",release="canary-7"\} 1/);
    assert.match(text, /relay_ttfv_seconds_bucket\{le="1\.5"\} 0/);
    for (const le of ['0.2', '0.25']) assert.match(text, new RegExp(`relay_ann_query_seconds_bucket\\{le="${le}"\\} 0`));
    assert.match(text, /relay_rerank_seconds_bucket\{le="0\.15",provider="onnx"\} 0/);
    for (const reason of ['disabled', 'timeout', 'error', 'circuit_open', 'few_candidates']) {
      assert.match(text, new RegExp(`relay_rerank_fallbacks_total\\{reason="${reason}"\\} 0`));
    }
  });
});

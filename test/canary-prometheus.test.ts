// `--metrics-source prometheus=URL` against a real Prometheus scraping two real releases: it reads
// what a direct scrape reads, split by relay_build_info{release}; a Prometheus that does not
// answer, or does not know the release, is an error; and a controller reading through it rolls
// back on an RLS error of the candidate.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { attemptsExcessPromQL, attemptsVerdict, bucketOf, defaultPlan, deltaOf, parsePlan, prometheusSource, scrapeSource, startCanary, stickyKey, type CanaryRun, type Snapshot } from '../src/rollout/index.ts';
import { queryStream, scratchDir, sharedKeys } from './helpers/canary.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const comparable = (s: Snapshot) => ({ ttfvCount: s.ttfv.count, ttfvBuckets: s.ttfv.buckets, annCount: s.ann.count, sse: s.sse, rls: s.rlsErrors, xt: s.crossTenant, sv: s.scopeViolations, requests: s.requests });

describe('canary metrics through a real Prometheus', { timeout: 300_000 }, () => {
  const keys = sharedKeys();
  let stable: RelayProcess;
  let candidate: RelayProcess;
  let prom: ChildProcess;
  let promUrl = '';
  let run: CanaryRun | undefined;

  before(async () => {
    const env = { ...keys, RELAY_RERANK: 'off' };
    [stable, candidate] = await Promise.all([startRelayProcess('pglite', { ...env, RELAY_RELEASE: 'p-stable' }), startRelayProcess('pglite', { ...env, RELAY_RELEASE: 'p-candidate', RELAY_FAULTS: 'rls_error_rate=1' })]);
    const dir = scratchDir('canary-prom-');
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: relay
    metrics_path: /metrics/memory
    static_configs: [{targets: ['${new URL(stable.url).host}', '${new URL(candidate.url).host}']}]
`,
    );
    prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
  });
  after(async () => {
    await run?.close();
    prom?.kill('SIGTERM');
    await Promise.all([stable?.stop(), candidate?.stop()]);
  });

  async function settled(side: 'stable' | 'candidate', source: ReturnType<typeof prometheusSource>, direct: ReturnType<typeof scrapeSource>) {
    for (let i = 0; i < 300; i++) {
      const [p, d] = await Promise.all([source.read(side).catch(() => null), direct.read(side)]);
      if (p && JSON.stringify(comparable(p)) === JSON.stringify(comparable(d))) return { p, d };
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`prometheus never caught up with ${side}`);
  }

  it('reads each release as a direct scrape does', async () => {
    const token = await stable.token('prom', 'pia');
    for (let i = 0; i < 5; i++) assert.equal((await queryStream(stable.url, token)).ok, true);
    // Two refused requests on stable (a user token naming another user): the inputs of the
    // cross_tenant_attempts rule, read per release the same way through PromQL.
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${stable.url}/api/v1/memory?user_id=someone-else`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 403);
      await res.body?.cancel();
    }
    assert.equal((await queryStream(candidate.url, token)).status, 500, 'the candidate meets an RLS refusal');
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${candidate.url}/api/v1/memory?user_id=someone-else`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 403);
      await res.body?.cancel();
    }
    const source = prometheusSource({ url: promUrl, releases: { stable: 'p-stable', candidate: 'p-candidate' } });
    const direct = scrapeSource({ urls: { stable: stable.url, candidate: candidate.url } });
    const s = await settled('stable', source, direct);
    assert.equal(s.p.sse.success, 5);
    assert.equal(s.p.ttfv.count, 5);
    assert.equal(s.p.crossTenant, 2);
    assert.equal(s.p.requests, 7, 'API requests only: 5 queries and 2 refused lists, not the scrapes');
    assert.equal(s.p.scopeViolations, 0, 'exported (at 0), so the candidate can be judged on it');
    assert.equal(s.p.release, 'p-stable');
    const c = await settled('candidate', source, direct);
    assert.equal(c.p.rlsErrors, 1);
    assert.equal(c.p.sse.success, 0);
    assert.equal(c.p.requests, 4);
    assert.equal(c.p.crossTenant, 3);

    // The same rule in PromQL: Prometheus computes the excess the analysis computes from the reads.
    const releases = { stable: 'p-stable', candidate: 'p-candidate' };
    const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(attemptsExcessPromQL(releases, 2))}`);
    const body = (await r.json()) as { data: { result: Array<{ value: [number, string] }> } };
    const excess = Number(body.data.result[0]!.value[1]);
    const zero = { ...c.d, crossTenant: 0, requests: 0, scopeViolations: 0, rlsErrors: 0, sse: { success: 0, error: 0, client_abort: 0 }, ttfv: { buckets: [], count: 0, sum: 0 }, ann: { buckets: [], count: 0, sum: 0 } };
    const [, result] = attemptsVerdict({ ...defaultPlan().guardrails.cross_tenant_attempts, threshold: 2 }, 1, deltaOf(c.d, zero), null, deltaOf(s.d, zero));
    assert.ok(Math.abs(excess - (result.counts!.candidate - result.counts!.allowance!)) < 0.01, `PromQL ${excess}, analysis ${JSON.stringify(result.counts)}`);
    assert.ok(Math.abs(excess - (3 - (2 * 2 * 4) / 7)) < 1e-9, String(excess));
  });

  it('a release Prometheus does not know, or a Prometheus that does not answer, is an error', async () => {
    await assert.rejects(prometheusSource({ url: promUrl, releases: { stable: 'p-stable', candidate: 'nobody' } }).read('candidate'), /no relay_build_info\{release="nobody"\}/);
    await assert.rejects(prometheusSource({ url: `http://127.0.0.1:${await freePort()}`, releases: { stable: 'a', candidate: 'b' } }).read('candidate'), /fetch failed|ECONNREFUSED/);
  });

  it('a controller reading through Prometheus rolls back on the candidate\'s RLS error', async () => {
    run = await startCanary({
      stableUrl: stable.url,
      candidateUrl: candidate.url,
      plan: parsePlan('stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\n'),
      listen: '127.0.0.1:0',
      metricsSource: `prometheus=${promUrl}`,
      stateDir: scratchDir('canary-prom-state-'),
    });
    const seen = await new Promise<void>((resolve) => {
      const off = run!.controller.onChange(() => {
        if (run!.controller.state.baselines.watch.candidate) {
          off();
          resolve();
        }
      });
    });
    assert.equal(seen, undefined);
    let token = '';
    for (let i = 0; !token; i++) {
      const t = await stable.token('prom', `u${i}`);
      if (bucketOf(stickyKey(`Bearer ${t}`, '127.0.0.1')) < 50) token = t;
    }
    const res = await queryStream(run.url, token);
    assert.equal(res.release, 'p-candidate');
    assert.equal(res.status, 500);
    await new Promise<void>((resolve) => {
      if (run!.controller.state.status === 'rolled_back') return resolve();
      const off = run!.controller.onChange(() => {
        if (run!.controller.state.status === 'rolled_back') {
          off();
          resolve();
        }
      });
    });
    assert.match(run.controller.state.rollback?.reason ?? run.controller.state.decisions.find((d) => d.action === 'rollback')!.reason, /rls_errors/);
    assert.equal(run.controller.weight, 0);
  });
});

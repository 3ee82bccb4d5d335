// The status page in headless Chromium (it loads, shows the stage and the guardrails, draws the
// chart, fetches nothing from anywhere else, and turns red when the controller rolls back), and
// the operator's CLI against a running controller (status, pause, resume, promote without
// --force refused, admin calls without the token refused).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { buildRouter, CanaryController, parsePlan, StateStore, type Side, type Snapshot } from '../src/rollout/index.ts';
import { launchChromium } from './helpers/browser.ts';
import { scratchDir } from './helpers/canary.ts';

const LE = [0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, Infinity];
function snap(n: number, rls = 0): Snapshot {
  return {
    at: Date.now(),
    release: null,
    ttfv: { buckets: LE.map((le) => [le, n]), count: n, sum: n * 0.03 },
    ann: { buckets: LE.map((le) => [le, n]), count: n, sum: n * 0.01 },
    sse: { success: n, error: 0, client_abort: 0 },
    rlsErrors: rls,
    crossTenant: 0,
    scopeViolations: 0,
    requests: n,
    poolUtilization: 0.1,
  };
}

describe('canary status page and CLI', { timeout: 300_000 }, () => {
  const now: Record<Side, Snapshot> = { stable: snap(0), candidate: snap(0) };
  const dir = scratchDir('canary-page-');
  const plan = parsePlan('stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1h\nmin_samples: 10\n');
  const controller = new CanaryController({
    plan,
    source: { kind: 'scrape', read: async (side) => ({ ...now[side], at: Date.now() }) },
    store: new StateStore(dir),
    targets: { stable: { url: 'http://127.0.0.1:9', release: 'page-stable' }, candidate: { url: 'http://127.0.0.1:9', release: 'page-candidate' } },
  });
  let url = '';
  let browser: Browser;
  let close: () => Promise<unknown> = async () => undefined;

  before(async () => {
    controller.start();
    const app = await buildRouter({ controller, plan, adminToken: new StateStore(dir).adminToken() });
    await app.listen({ host: '127.0.0.1', port: 0 });
    close = () => app.close();
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    // A few analyses, so the chart has points.
    for (let i = 0; i <= 4; i++) {
      now.candidate = snap(i * 20);
      now.stable = snap(i * 200);
      await controller.tick();
    }
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await controller.stop();
    await close();
  });

  // Asynchronous: the controller answering the CLI lives in this process.
  const relay = (...args: string[]) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['bin/relay.mjs', 'canary', ...args, '--listen', url.replace('http://', ''), '--state-dir', dir], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  it('loads self-contained, shows the stage, the guardrails and a chart, and turns red on a rollback', async () => {
    const page = await browser.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    // (Functions, not strings: the page's CSP forbids eval, so string predicates cannot run in it.)
    const headerColor = () => page.locator('header').evaluate((el) => (globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string } }).getComputedStyle(el).backgroundColor);
    await page.goto(`${url}/canary`);
    await page.locator('body[data-status="running"]').waitFor();
    assert.match(await page.textContent('#headline') ?? '', /running · stage 1 of 2 · weight 5%/);
    assert.match(await page.textContent('#summary') ?? '', /page-candidate against page-stable/);
    assert.equal(await page.locator('#guardrails tbody tr').count(), 7);
    assert.match(await page.textContent('[data-guardrail="ttfv_p95"]') ?? '', /pass/);
    // Units in every cell: ms, %, per-request rates, counts.
    assert.match(await page.textContent('[data-guardrail="ttfv_p95"]') ?? '', /\d ms.*< 1\.5 s.*\d+ streams/);
    assert.match(await page.textContent('[data-guardrail="sse_success"]') ?? '', /100%.*≥ 99\.6%/);
    assert.match(await page.textContent('[data-guardrail="cross_tenant_attempts"]') ?? '', /0 per 1k req \(0 refused\).*≤ 2× stable's rate.*\d+ req/);
    assert.match(await page.textContent('[data-guardrail="scope_violations"]') ?? '', /≤ 0 events/);
    assert.match(await page.textContent('[data-guardrail="pool_utilization"]') ?? '', /10%.*warn ≤ 85%/);
    assert.ok((await page.locator('#chart polyline').count()) >= 3, 'threshold, TTFV and SSE lines');
    const green = await headerColor();

    // The candidate meets one RLS error: the controller rolls back; the page follows by itself.
    now.candidate = snap(100, 1);
    await controller.tick();
    assert.equal(controller.state.status, 'rolled_back');
    await page.locator('body[data-status="rolled_back"]').waitFor({ timeout: 30_000 });
    const red = await headerColor();
    assert.notEqual(red, green);
    assert.equal(red, 'rgb(179, 38, 30)');
    assert.match(await page.textContent('#reason') ?? '', /rls_errors/);
    assert.match(await page.textContent('#decisions') ?? '', /rollback/);
    assert.match(await page.textContent('[data-guardrail="rls_errors"]') ?? '', /fail/);
    for (const r of requests) assert.ok(r.startsWith(url), `the page fetched ${r}`);
    await page.close();
  });

  it('relay canary status prints the state; admin calls need the token and refuse what cannot be done', async () => {
    const status = await relay('status');
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /rolled_back/);
    assert.match(status.stdout, /^rls_errors +1 +1 +0 +≤ 0 events +1 events +fail$/m);
    assert.match(status.stdout, /^ttfv_p95 +\d+(\.\d)? ms .*< 1\.5 s +\d+ streams +pass$/m);
    assert.match(status.stdout, /^sse_success +100% .*≥ 99\.6% /m);
    assert.match(status.stdout, /^cross_tenant_attempts +0 per 1k req \(0 refused\) /m);
    assert.match(status.stdout, /last decisions:/);
    const json = await relay('status', '--json');
    assert.equal((JSON.parse(json.stdout) as { weight: number }).weight, 0);

    const early = await relay('retry');
    assert.equal(early.status, 1);
    assert.match(early.stderr, /cool-down/);
    const forced = await relay('retry', '--force');
    assert.equal(forced.status, 0, forced.stderr);
    assert.match(forced.stdout, /running/);
    assert.equal(controller.state.status, 'running');
    assert.equal((await relay('pause')).status, 0);
    assert.equal(controller.state.status, 'paused');
    assert.equal((await relay('resume')).status, 0);
    const promote = await relay('promote');
    assert.equal(promote.status, 2, 'promote needs --force');
    assert.equal(controller.state.status, 'running');

    // A token file others can read is refused by the CLI; a request without the token by the controller.
    chmodSync(join(dir, 'admin.token'), 0o644);
    assert.match((await relay('abort')).stderr, /readable by others/);
    chmodSync(join(dir, 'admin.token'), 0o600);
    const bare = await fetch(`${url}/canary/admin/abort`, { method: 'POST' });
    assert.equal(bare.status, 401);
    await bare.body?.cancel();
    assert.equal(controller.state.status, 'running');
    assert.equal((await relay('promote', '--force')).status, 0);
    assert.equal(controller.state.status, 'promoted');
    assert.equal(controller.weight, 100);
  });
});

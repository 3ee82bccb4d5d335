// The canary controller's moving parts against real local things: hooks as real shell commands,
// webhooks to a real HTTP server, state on disk across a "restart", the router in front of real
// upstream servers (SSE unbuffered, client aborts forwarded, X-Relay-Release, admin auth).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { buildRouter, CanaryController, CANARY_STATUSES, createRouterMetrics, DECISION_ACTIONS, parsePlan, runHooks, sendAlerts, StateStore, type MetricsSource, type Side, type Snapshot } from '../src/rollout/index.ts';

const LE = [0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, Infinity];

/** A snapshot whose TTFV histogram holds `fast` streams of 10 ms and `slow` of 2 s. */
function snap(o: { fast?: number; slow?: number; ok?: number; failed?: number; rls?: number; xt?: number; req?: number; sv?: number } = {}): Snapshot {
  const fast = o.fast ?? 0;
  const slow = o.slow ?? 0;
  return {
    at: Date.now(),
    release: null,
    ttfv: { buckets: LE.map((le) => [le, fast + (le >= 2 ? slow : 0)]), count: fast + slow, sum: fast * 0.01 + slow * 2 },
    ann: { buckets: LE.map((le) => [le, 0]), count: 0, sum: 0 },
    sse: { success: o.ok ?? fast + slow, error: o.failed ?? 0, client_abort: 0 },
    rlsErrors: o.rls ?? 0,
    crossTenant: o.xt ?? 0,
    scopeViolations: o.sv ?? 0,
    requests: o.req ?? fast + slow,
    poolUtilization: 0,
  };
}

/** A metrics source the test sets by hand; `down` makes the candidate unreadable. */
function fakeSource() {
  const now: Record<Side, Snapshot> = { stable: snap(), candidate: snap() };
  const src = {
    now,
    down: false,
    kind: 'scrape' as const,
    async read(side: Side) {
      if (side === 'candidate' && src.down) throw new Error('connection refused');
      return { ...now[side], at: Date.now() };
    },
  };
  return src satisfies MetricsSource & object;
}

const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));
const targets = { stable: { url: 'http://127.0.0.1:1', release: 'r1' }, candidate: { url: 'http://127.0.0.1:2', release: 'r2' } };

describe('canary hooks and alerts', () => {
  it('hooks run in order with their output captured; a timeout kills the command and skips the rest', async () => {
    const results = await runHooks(
      [
        { name: 'one', run: 'echo "stage $RELAY_CANARY_STAGE"; echo oops >&2', timeoutMs: 5000 },
        { name: 'slow', run: 'sleep 30; echo never', timeoutMs: 300 },
        { name: 'after', run: 'echo after', timeoutMs: 5000 },
      ],
      { RELAY_CANARY_STAGE: '2' },
    );
    assert.equal(results[0]!.exitCode, 0);
    assert.match(results[0]!.output, /stage 2\noops/);
    assert.equal(results[1]!.timedOut, true);
    assert.equal(results[1]!.exitCode, null);
    assert.ok(results[1]!.ms < 10_000, 'the sleep was killed, not waited for');
    assert.doesNotMatch(results[1]!.output, /never/);
    assert.equal(results[2]!.skipped, true);
    const failed = await runHooks([{ name: 'bad', run: 'exit 3', timeoutMs: 5000 }], {});
    assert.equal(failed[0]!.exitCode, 3);
  });

  it('alerts: a real HTTP server receives a JSON POST with a Slack-style text; an unreachable one is reported, not thrown', async () => {
    const got: Array<{ headers: http.IncomingHttpHeaders; body: string }> = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        got.push({ headers: req.headers, body });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/T000/B000/secret`;
    const results = await sendAlerts([url, 'http://127.0.0.1:1/nothing'], 'canary rolled back', { event: 'rolled_back' }, 2000);
    server.close();
    assert.equal(got.length, 1);
    assert.match(got[0]!.headers['content-type'] ?? '', /application\/json/);
    assert.deepEqual(JSON.parse(got[0]!.body), { text: 'canary rolled back', event: { event: 'rolled_back' } });
    assert.equal(results[0]!.ok, true);
    assert.equal(results[0]!.url.includes('secret'), false, 'the webhook path (its secret) is never recorded');
    assert.equal(results[1]!.ok, false);
  });
});

describe('canary controller state', () => {
  const plan = parsePlan('stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1h\nmin_samples: 10\nmax_source_errors: 2\ncooldown: 1h\n');

  it('a restarted controller resumes the stage with the same weight and does not count the time it was down', async () => {
    const dir = tmp('canary-state-');
    const source = fakeSource();
    const a = new CanaryController({ plan, source, store: new StateStore(dir), targets });
    a.start();
    await a.tick();
    await new Promise((r) => setTimeout(r, 50));
    source.now.candidate = snap({ fast: 20 });
    await a.tick();
    const observed = a.state.observedMs;
    assert.ok(observed > 0);
    await a.stop();
    assert.equal((statSync(join(dir, 'state.json')).mode & 0o777).toString(8), '600');
    await new Promise((r) => setTimeout(r, 300));
    const b = new CanaryController({ plan, source, store: new StateStore(dir), targets });
    b.start();
    assert.equal(b.state.status, 'running');
    assert.equal(b.weight, 5);
    assert.equal(b.state.observedMs, observed);
    await b.tick();
    assert.equal(b.state.observedMs, observed, 'the first analysis after a restart adds no time');
    assert.equal(b.state.decisions.at(-1)!.action, 'resume_after_restart');
    // Zero tolerance across the restart: an RLS error while the controller was down still counts.
    source.now.candidate = snap({ fast: 20, rls: 1 });
    await b.tick();
    assert.equal(b.state.status, 'rolled_back');
    assert.equal(b.weight, 0);
    await b.stop();
    const audit = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(audit.some((e) => e.type === 'analysis' && Array.isArray(e.guardrails)));
    assert.ok(audit.some((e) => e.action === 'rollback' && /rls_errors/.test(String(e.reason))));
  });

  it('refused cross-tenant attempts: alerted to security at once (then at most once per security_every), judged only against stable; a scope violation rolls back at once', async () => {
    const got: Array<{ text: string; event: Record<string, unknown> }> = [];
    const hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        got.push(JSON.parse(body) as (typeof got)[number]);
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const webhook = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    const p = parsePlan(`stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1h\nmin_samples: 10\nalerts: {webhooks: ["${webhook}"], security_every: 1h}\n`);
    const source = fakeSource();
    const dir = tmp('canary-attempts-');
    const c = new CanaryController({ plan: p, source, store: new StateStore(dir), targets });
    const events: string[] = [];
    c.onEvent((e) => events.push(e.kind === 'decision' ? e.action : e.kind === 'analysis' ? `analysis:${e.verdict}` : e.kind));
    c.start();
    await c.tick();
    // The case: one user sends 3 requests naming another user, and they land on the candidate.
    source.now.candidate = snap({ fast: 20, xt: 3, req: 23 });
    source.now.stable = snap({ fast: 200 });
    await c.tick();
    assert.equal(c.state.status, 'running', JSON.stringify(c.state.rollback));
    const g = c.state.lastReport!.guardrails.find((x) => x.name === 'cross_tenant_attempts')!;
    assert.equal(g.verdict, 'pass');
    assert.deepEqual(g.counts, { candidate: 3, stable: 0, allowance: 0, stableRequests: 200 });
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(got.length, 1, 'security heard of it');
    assert.equal(got[0]!.event.event, 'cross_tenant_attempts');
    assert.deepEqual(got[0]!.event.attempts, { candidate: 3, stable: 0 });
    assert.match(got[0]!.text, /3 request\(s\) refused .*r2: 3, r1: 0.*judges it against stable \(pass/s);
    // More on both sides at the same rate: no new alert within security_every, and no rollback.
    source.now.candidate = snap({ fast: 40, xt: 13, req: 53 });
    source.now.stable = snap({ fast: 400, xt: 80 });
    await c.tick();
    assert.equal(c.state.status, 'running');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 1, 'one alert per security_every');
    assert.deepEqual(events.filter((e) => e === 'security_alert'), ['security_alert']);
    // A row served outside its scope: zero tolerance.
    source.now.candidate = snap({ fast: 41, xt: 13, req: 54, sv: 1 });
    await c.tick();
    assert.equal(c.state.status, 'rolled_back');
    assert.match(c.state.rollback!.reason, /^guardrail breached: scope_violations 1 /);
    await c.stop();
    hook.close();
    assert.deepEqual(events.filter((e) => e.startsWith('analysis:')), ['analysis:pass', 'analysis:pass', 'analysis:fail']);
    assert.ok(events.includes('rollback'));
    const audit = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(audit.some((e) => e.type === 'security_alert_sent' && (e.alerts as Array<{ ok: boolean }>)[0]!.ok));
  });

  it('refused cross-tenant attempts clearly above stable\'s rate roll back', async () => {
    const source = fakeSource();
    const c = new CanaryController({ plan, source, store: new StateStore(tmp('canary-attempts-rb-')), targets });
    c.start();
    await c.tick();
    source.now.candidate = snap({ fast: 60, xt: 30, req: 90 });
    source.now.stable = snap({ fast: 1000, xt: 10, req: 1010 });
    await c.tick();
    assert.equal(c.state.status, 'rolled_back');
    assert.match(c.state.rollback!.reason, /cross_tenant_attempts .*30 refused of 90 requests on the candidate vs 10 of 1010 on stable/);
    await c.stop();
  });

  it('blind reads: N in a row roll back; retry waits for the cool-down unless forced', async () => {
    const source = fakeSource();
    const c = new CanaryController({ plan, source, store: new StateStore(tmp('canary-blind-')), targets });
    c.start();
    await c.tick();
    source.down = true;
    await c.tick();
    assert.equal(c.state.status, 'running');
    await c.tick();
    assert.equal(c.state.status, 'rolled_back');
    assert.match(c.state.rollback!.reason, /metrics source failed 2 times/);
    await assert.rejects(c.retry(false), /cool-down/);
    await c.retry(true);
    assert.equal(c.state.status, 'running');
    assert.equal(c.weight, 5);
    await c.stop();
  });
});

describe('canary router', () => {
  const closers: Array<() => Promise<unknown> | void> = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('streams SSE unbuffered, forwards a client abort upstream, says X-Relay-Release, and guards the admin calls', async () => {
    let release: () => void = () => undefined;
    const secondMayGo = new Promise<void>((r) => (release = r));
    let upstreamClosed: () => void = () => undefined;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    const upstream = http.createServer((req, res) => {
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: result\ndata: 1\n\n');
        // The second event is written only once the client has the first: a buffering proxy hangs here.
        void secondMayGo.then(() => res.end('event: done\ndata: 2\n\n'));
        return;
      }
      if (req.url === '/forever') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': open\n\n');
        res.on('close', () => upstreamClosed());
        return;
      }
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"unauthorized"}}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => upstream.close(r)));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const source = fakeSource();
    const plan = parsePlan('stages: [{weight: 100, window: 1h}]\ninterval: 1h\n');
    const store = new StateStore(tmp('canary-router-'));
    const controller = new CanaryController({ plan, source, store, targets: { stable: { url, release: 'r1' }, candidate: { url, release: 'r2' } } });
    controller.start();
    closers.push(() => controller.stop());
    const adminToken = store.adminToken();
    const app = await buildRouter({ controller, plan, adminToken });
    await app.listen({ host: '127.0.0.1', port: 0 });
    closers.push(() => app.close());
    const proxy = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

    const res = await fetch(`${proxy}/sse`);
    assert.equal(res.headers.get('x-relay-release'), 'r2');
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /data: 1/);
    release();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    assert.match(rest, /data: 2/);

    const ac = new AbortController();
    const forever = await fetch(`${proxy}/forever`, { signal: ac.signal });
    await forever.body!.getReader().read();
    ac.abort();
    await closed; // the upstream saw its request closed

    const denied = await fetch(`${proxy}/api/v1/memory`);
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('x-relay-release'), 'r2', 'errors from upstream carry the release too');
    await denied.body?.cancel();

    // Admin calls: refused without the token (or with a wrong one), done with it.
    for (const auth of [undefined, 'Bearer wrong', `Basic ${adminToken}`]) {
      const r = await fetch(`${proxy}/canary/admin/pause`, { method: 'POST', headers: auth ? { authorization: auth } : {} });
      assert.equal(r.status, 401);
      await r.body?.cancel();
    }
    assert.equal(controller.state.status, 'running');
    const ok = await fetch(`${proxy}/canary/admin/pause`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { status: string }).status, 'paused');
    const noForce = await fetch(`${proxy}/canary/admin/promote`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(noForce.status, 400);
    await noForce.body?.cancel();
    assert.equal((statSync(store.tokenPath).mode & 0o777).toString(8), '600');
    const status = (await (await fetch(`${proxy}/canary/status`)).json()) as { status: string; weight: number };
    assert.deepEqual([status.status, status.weight], ['paused', 100]);

    // The router's own metrics: Prometheus can alert on a rollback.
    const scrape = async () => {
      const r = await fetch(`${proxy}/canary/metrics`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
      const families = parsePrometheusTextFormat(await r.text());
      return (name: string, labels: Record<string, string> = {}) => {
        const m = families.find((f) => f.name === name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
        assert.ok(m, `${name}${JSON.stringify(labels)} is exported`);
        return Number(m.value);
      };
    };
    let read = await scrape();
    assert.equal(read('relay_canary_stage'), 1);
    assert.equal(read('relay_canary_candidate_weight_ratio'), 1);
    assert.equal(read('relay_canary_status', { status: 'paused' }), 1);
    assert.equal(read('relay_canary_status', { status: 'rolled_back' }), 0);
    assert.equal(read('relay_canary_decisions_total', { action: 'pause' }), 1);
    assert.equal(read('relay_canary_decisions_total', { action: 'abort' }), 0);
    assert.equal(read('relay_canary_info', { stable: 'r1', candidate: 'r2' }), 1);
    const aborted = await fetch(`${proxy}/canary/admin/abort`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(aborted.status, 200);
    await aborted.body?.cancel();
    read = await scrape();
    assert.equal(read('relay_canary_status', { status: 'aborted' }), 1);
    assert.equal(read('relay_canary_status', { status: 'paused' }), 0);
    assert.equal(read('relay_canary_candidate_weight_ratio'), 0);
    assert.equal(read('relay_canary_decisions_total', { action: 'abort' }), 1);
  });

  it('the router metrics: every label value exported from the start, and docs/canary.md lists exactly these', async () => {
    const controller = new CanaryController({ plan: parsePlan('stages: [{weight: 100, window: 1h}]\ninterval: 1h\n'), source: fakeSource(), store: new StateStore(tmp('canary-rm-')), targets });
    const m = createRouterMetrics(controller);
    controller.start();
    await controller.tick();
    await controller.tick();
    const json = await m.registry.getMetricsAsJSON();
    const values = (name: string) => json.find((x) => x.name === name)!.values;
    assert.deepEqual(values('relay_canary_status').map((v) => v.labels.status).sort(), [...CANARY_STATUSES].sort());
    assert.deepEqual(values('relay_canary_decisions_total').map((v) => v.labels.action).sort(), [...DECISION_ACTIONS].sort());
    assert.equal(values('relay_canary_decisions_total').find((v) => v.labels.action === 'start')!.value, 1);
    assert.equal(values('relay_canary_analyses_total').find((v) => v.labels.verdict === 'insufficient_data')!.value, 1, 'the first tick is the baseline, the second an analysis');
    await controller.stop();
    m.close();
    const doc = readFileSync('docs/canary.md', 'utf8');
    const section = doc.slice(doc.indexOf('## Router metrics'));
    const documented = [...section.slice(0, section.indexOf('\n## ', 3) === -1 ? undefined : section.indexOf('\n## ', 3)).matchAll(/^\| `(relay_canary_[a-z_]+)`/gm)].map((x) => x[1]);
    assert.deepEqual(documented.sort(), json.map((x) => x.name).sort());
  });
});

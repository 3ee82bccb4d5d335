// The canary end to end: two real `relay serve` processes (stable and candidate, each with its
// RELAY_RELEASE) and a real `relay canary run` in front of them, windows of seconds, load made
// here. RELAY_FAULTS drives the candidate bad. With RELAY_TEST_DATABASE_URL both releases share
// one server database, as in production; on a PGlite-only machine each release has its own data
// folder (two processes cannot open one PGlite folder), which changes nothing the canary judges.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bucketOf, stickyKey } from '../src/rollout/index.ts';
import { queryStream, scratchDir, sharedKeys, startController, startLoad, type ControllerProcess } from './helpers/canary.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

const STORE = process.env.RELAY_TEST_DATABASE_URL ? 'pg' : 'pglite';
const keys = sharedKeys();
const SERVICE_ENV = { ...keys, RELAY_RERANK: 'off', RELAY_RATE_LIMIT_PER_MIN: '1000000' };

type Audit = Record<string, unknown> & { at: string; type?: string; action?: string; reason?: string };
const audit = (c: ControllerProcess): Audit[] =>
  readFileSync(join(c.stateDir, 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Audit);

describe(`canary end to end: two releases and the controller, real processes (${STORE})`, { timeout: 900_000 }, () => {
  let stable: RelayProcess;
  const cleanup: Array<() => Promise<void>> = [];
  /** Tokens of users by bucket: `low` (< 5, candidate from the first stage), `mid` (5..50), `high` (≥ 50). */
  const users = { low: [] as string[], mid: [] as string[], high: [] as string[] };
  let tenant = '';

  before(async () => {
    stable = await startRelayProcess(STORE, { ...SERVICE_ENV, RELAY_RELEASE: 'r1-stable' });
    tenant = `canary-${Date.now()}`;
    for (let i = 0; users.low.length < 4 || users.mid.length < 4 || users.high.length < 4; i++) {
      const token = await stable.token(tenant, `user-${i}`);
      const b = bucketOf(stickyKey(`Bearer ${token}`, '127.0.0.1'));
      const group = b < 5 ? users.low : b < 50 ? users.mid : users.high;
      if (group.length < 4) group.push(token);
    }
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await stable?.stop();
  });

  let releases = 0;
  async function candidate(faults?: string): Promise<RelayProcess & { release: string }> {
    const release = `r2-candidate-${++releases}`;
    const p = await startRelayProcess(STORE, { ...SERVICE_ENV, RELAY_RELEASE: release, ...(faults ? { RELAY_FAULTS: faults } : {}) });
    cleanup.push(() => p.stop());
    return Object.assign(p, { release });
  }
  async function controller(cand: RelayProcess, plan: string, stateDir?: string): Promise<ControllerProcess> {
    const c = await startController({ stable: stable.url, candidate: cand.url, plan, ...(stateDir ? { stateDir } : {}) });
    cleanup.push(() => c.stop());
    return c;
  }
  const all = () => [...users.low, ...users.mid, ...users.high];

  it('1. a healthy candidate under load goes 5 → 50 → 100 and is promoted; the promotion hook ran', async () => {
    const cand = await candidate();
    const dir = scratchDir('canary-e2e-');
    const c = await controller(
      cand,
      `stages: [{weight: 5, window: 3s}, {weight: 50, window: 3s}, {weight: 100, window: 3s}]
interval: 1s
min_samples: 10
hooks:
  promote:
    - {name: announce, run: "echo promoted $RELAY_CANARY_CANDIDATE_RELEASE > ${dir}/promoted.txt"}
`,
      dir,
    );
    const load = startLoad(c.url, all());
    const done = await c.until('promotion', (s) => s.status === 'promoted' || s.status === 'rolled_back', 120);
    const outcomes = await load.stop();
    assert.equal(done.status, 'promoted', JSON.stringify(done.rollback));
    const stages = done.decisions.filter((d) => d.action === 'stage' || d.action === 'promoted').map((d) => d.weight);
    assert.deepEqual(stages, [50, 100, 100]);
    assert.equal(done.weight, 100);
    await c.until('promotion hooks', (s) => s.promotion !== null);
    assert.equal(readFileSync(join(dir, 'promoted.txt'), 'utf8').trim(), `promoted ${cand.release}`);
    const s = await c.status();
    assert.deepEqual(s.promotion!.hooks.map((h) => [h.name, h.exitCode]), [['announce', 0]]);
    assert.ok(outcomes.every((o) => o.ok), 'no stream failed');
    // Low-bucket users were on the candidate from the start; at 100% everyone is.
    const after100 = await queryStream(c.url, users.high[0]!);
    assert.equal(after100.release, cand.release);
  });

  it('2. TTFV delay → rolled back within 2 intervals of the first slow stream: weight 0, hook ran, webhook received, audit explains', async () => {
    const received: Array<{ text: string; event: { event: string } }> = [];
    const hookServer = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        received.push(JSON.parse(body) as (typeof received)[number]);
        res.end();
      });
    });
    await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => hookServer.close(() => r())));
    const cand = await candidate('ttfv_delay_ms=2000');
    const dir = scratchDir('canary-e2e-');
    const c = await controller(
      cand,
      `stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]
interval: 2s
min_samples: 10
hooks:
  rollback:
    - {name: schema-down, run: "echo \\"$RELAY_CANARY_REASON\\" > ${dir}/rolled-back.txt", timeout: 10s}
alerts:
  webhooks: ["http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/hook"]
`,
      dir,
    );
    const load = startLoad(c.url, [...users.low, ...users.high.slice(0, 2)]);
    const done = await c.until('rollback', (s) => s.status === 'rolled_back', 90);
    const outcomes = await load.stop();
    const firstSlow = Math.min(...outcomes.filter((o) => o.release === cand.release && o.firstAt !== null).map((o) => o.firstAt!));
    const entries = audit(c);
    const rollback = entries.find((e) => e.action === 'rollback')!;
    assert.match(rollback.reason!, /ttfv_p95/);
    assert.ok((rollback.values as Record<string, number>).ttfv_p95! >= 1.5, JSON.stringify(rollback.values));
    // Analyses that began after the first slow stream reached its client, up to the rollback.
    const analysesBetween = entries.filter((e) => e.type === 'analysis' && Date.parse(e.at) >= firstSlow - 50 && Date.parse(e.at) <= Date.parse(rollback.at));
    assert.ok(analysesBetween.length <= 2, `rolled back after ${analysesBetween.length} analyses since the first slow stream`);
    assert.equal(done.weight, 0);
    // The next request of a candidate user goes to stable.
    assert.equal((await queryStream(c.url, users.low[0]!)).release, 'r1-stable');
    const s = await c.until('rollback hooks', (x) => x.rollback?.hooks.length === 1 && x.rollback.alerts.length === 1);
    assert.equal(s.rollback!.hooks[0]!.exitCode, 0);
    assert.match(readFileSync(join(dir, 'rolled-back.txt'), 'utf8'), /ttfv_p95/);
    assert.equal(received.length, 1);
    assert.equal(received[0]!.event.event, 'rolled_back');
    assert.match(received[0]!.text, new RegExp(`rolled back.*${cand.release}.*ttfv_p95`, 's'));
    assert.ok(s.cooldown_until && Date.parse(s.cooldown_until) > Date.now());
    assert.ok(entries.some((e) => e.type === 'analysis' && (e.guardrails as Array<{ name: string; verdict: string }>).some((g) => g.name === 'ttfv_p95' && g.verdict === 'fail')));
  });

  it('3. one RLS error on the candidate → rolled back at the next interval', async () => {
    const cand = await candidate('rls_error_rate=1');
    const c = await controller(cand, 'stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\n');
    await c.until('the first analysis', (s) => s.decisions.length > 0 && s.report !== null, 60);
    const one = await queryStream(c.url, users.low[0]!);
    const erroredAt = Date.now();
    assert.equal(one.release, cand.release);
    assert.equal(one.status, 500);
    assert.equal(await cand.metric('relay_rls_errors_total'), 1);
    const done = await c.until('rollback', (s) => s.status === 'rolled_back', 60);
    assert.match(done.rollback?.reason ?? done.decisions.find((d) => d.action === 'rollback')!.reason, /rls_errors/);
    const entries = audit(c);
    const rollbackAt = Date.parse(entries.find((e) => e.action === 'rollback')!.at);
    const between = entries.filter((e) => e.type === 'analysis' && Date.parse(e.at) > erroredAt && Date.parse(e.at) < rollbackAt - 5);
    assert.ok(between.length <= 1, `${between.length} analyses passed the RLS error by`);
  });

  it('4a. SSE failures above 0.4% → rolled back', async () => {
    const cand = await candidate('sse_error_rate=0.05');
    const c = await controller(cand, 'stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\nmin_samples: 10\n');
    const load = startLoad(c.url, all());
    const done = await c.until('rollback', (s) => s.status === 'rolled_back', 120);
    await load.stop();
    assert.match(done.decisions.find((d) => d.action === 'rollback')!.reason, /sse_success/);
  });

  it('4b. SSE failures below 0.4% → not rolled back', async () => {
    // Every 260th stream of the candidate fails: one failure in the first 260..519, 0.2–0.38%,
    // below the 0.4% line, with no chance in it.
    const cand = await candidate('sse_error_every=260');
    const c = await controller(cand, 'stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\nmin_samples: 10\n');
    // The controller judges what comes after its first look at the candidate: the load waits for
    // it, so that the judged streams start at the candidate's first (streams served before the
    // look could put both the 260th and the 520th failure in a window of under 500).
    await c.until('the first report', (x) => x.report !== null && x.report !== undefined, 60);
    const load = startLoad(c.url, all());
    const s = await c.until('300 candidate streams judged', (x) => x.status !== 'running' || (x.report?.guardrails.find((g) => g.name === 'sse_success')?.samples ?? 0) >= 300, 300);
    await load.stop();
    assert.equal(s.status, 'running', JSON.stringify(s.decisions.slice(-3)));
    assert.notEqual(s.report!.guardrails.find((g) => g.name === 'sse_success')!.verdict, 'fail');
    const failed = await cand.metric('relay_sse_streams_total', { outcome: 'error' });
    const succeeded = await cand.metric('relay_sse_streams_total', { outcome: 'success' });
    assert.ok(failed >= 1, 'a candidate stream did fail');
    assert.ok(failed / (failed + succeeded) < 0.004, `${failed} of ${failed + succeeded} failed`);
  });

  it('5. a slow ANN search on the candidate → a warning only, no rollback (and it is promoted)', async () => {
    // Just over the 250 ms warning line, and few users: PGlite has one connection, so many
    // concurrent slow searches would queue into a real TTFV breach.
    const cand = await candidate('ann_delay_ms=270');
    const c = await controller(cand, 'stages: [{weight: 50, window: 3s}, {weight: 100, window: 2s}]\ninterval: 1s\nmin_samples: 10\n');
    const load = startLoad(c.url, [users.low[0]!, users.mid[0]!, users.high[0]!], 50);
    const warned = await c.until('an ANN warning', (s) => s.status !== 'running' || s.report?.guardrails.find((g) => g.name === 'ann_p95')?.verdict === 'warn', 120);
    assert.equal(warned.report!.guardrails.find((g) => g.name === 'ann_p95')!.verdict, 'warn');
    assert.ok(warned.report!.warnings.some((w) => w.startsWith('ann_p95')));
    const done = await c.until('the end', (s) => s.status === 'promoted' || s.status === 'rolled_back', 120);
    await load.stop();
    assert.equal(done.status, 'promoted', JSON.stringify(done.rollback));
    assert.ok(audit(c).some((e) => e.type === 'analysis' && (e.warnings as string[]).length > 0));
  });

  it('6. no traffic → no promotion: insufficient_data, held at stage 1', async () => {
    const cand = await candidate();
    const c = await controller(cand, 'stages: [{weight: 5, window: 2s}, {weight: 100, window: 2s}]\ninterval: 1s\n');
    const held = await c.until('the window to pass without a sample', (s) => s.decisions.some((d) => d.action === 'hold'), 60);
    const s = await c.until('a few more analyses', (x) => x.observed_ms >= held.observed_ms + 2000, 60);
    assert.equal(s.status, 'running');
    assert.equal(s.stage, 1);
    assert.equal(s.weight, 5);
    for (const name of ['ttfv_p95', 'sse_success']) assert.equal(s.report!.guardrails.find((g) => g.name === name)!.verdict, 'insufficient_data');
    assert.match(held.decisions.find((d) => d.action === 'hold')!.reason, /insufficient_data/);
  });

  it('7. a controller killed mid-stage and restarted resumes with the same weight, without the time it was down', async () => {
    const cand = await candidate();
    const dir = scratchDir('canary-e2e-');
    const plan = 'stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\nmin_samples: 10\n';
    const first = await startController({ stable: stable.url, candidate: cand.url, plan, stateDir: dir });
    const load = startLoad(first.url, users.low.slice(0, 2));
    const before = await first.until('3 s observed', (s) => s.observed_ms >= 3000, 60);
    await load.stop();
    await first.kill();
    // What the killed controller last wrote is what a restart resumes from.
    const persisted = (JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { observedMs: number }).observedMs;
    await new Promise((r) => setTimeout(r, 4000));
    const second = await controller(cand, plan, dir);
    const resumedAt = Date.now();
    const resumed = await second.status();
    assert.equal(resumed.status, 'running');
    assert.equal(resumed.stage, 1);
    assert.equal(resumed.weight, 50);
    assert.equal(resumed.run_id, before.run_id);
    // Against the persisted state, not a reading taken before the kill (the first controller may
    // have ticked any number of times in between on a busy machine): the 4 s down are not added.
    assert.ok(resumed.observed_ms >= before.observed_ms && resumed.observed_ms >= persisted && resumed.observed_ms < persisted + 4000, `${before.observed_ms} / ${persisted} persisted → ${resumed.observed_ms}`);
    assert.ok(resumed.decisions.some((d) => d.action === 'resume_after_restart'));
    const later = await second.until('two more analyses', (s) => s.observed_ms > resumed.observed_ms + 1000, 60);
    // Observed time grows no faster than the clock (one tick adds at most two intervals).
    assert.ok(later.observed_ms - resumed.observed_ms <= Date.now() - resumedAt + 2000, `${resumed.observed_ms} → ${later.observed_ms} in ${Date.now() - resumedAt} ms`);
    // Sticky across the restart.
    assert.equal((await queryStream(second.url, users.low[0]!)).release, cand.release);
  });

  /**
   * Closed loops like startLoad's, but each `nosy` user follows every query with a request naming
   * another user (403 forbidden_scope, counted as a cross-tenant attempt by whichever release
   * answers it): the same clients misbehave at the same rate on both sides of the split.
   */
  function nosyLoad(url: string, nosy: string[], polite: string[]) {
    let running = true;
    const refused: Array<{ release: string | null; status: number; code: string | null }> = [];
    const loop = async (token: string, asks: boolean) => {
      while (running) {
        await queryStream(url, token);
        if (asks) {
          const res = await fetch(`${url}/api/v1/memory?user_id=somebody-else`, { headers: { authorization: `Bearer ${token}` } }).catch(() => null);
          if (res) refused.push({ release: res.headers.get('x-relay-release'), status: res.status, code: ((await res.json().catch(() => null)) as { error?: { code?: string } } | null)?.error?.code ?? null });
        }
        await new Promise((r) => setTimeout(r, 30));
      }
    };
    const loops = [...nosy.map((t) => loop(t, true)), ...polite.map((t) => loop(t, false))];
    return {
      refused,
      async stop() {
        running = false;
        await Promise.all(loops);
        return refused;
      },
    };
  }
  const webhookServer = async () => {
    const received: Array<{ text: string; event: { event: string; attempts?: { candidate: number; stable: number } } }> = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        received.push(JSON.parse(body) as (typeof received)[number]);
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => server.close(() => r())));
    return { received, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
  };
  const attemptsVerdicts = (c: ControllerProcess) =>
    audit(c)
      .filter((e) => e.type === 'analysis')
      .map((e) => (e.guardrails as Array<{ name: string; verdict: string; value: number | null }>).find((g) => g.name === 'cross_tenant_attempts')!);

  it('9. clients sending forbidden_scope requests to stable and candidate at the same rate: alerted to security, and the candidate is promoted', async () => {
    const hook = await webhookServer();
    const cand = await candidate();
    const c = await controller(
      cand,
      `stages: [{weight: 5, window: 3s}, {weight: 50, window: 3s}, {weight: 100, window: 3s}]
interval: 1s
min_samples: 10
alerts: {webhooks: ["${hook.url}"]}
`,
    );
    // Every user asks for another user's memory after each query, whichever release it is on.
    const load = nosyLoad(c.url, all(), []);
    const done = await c.until('the end', (s) => s.status === 'promoted' || s.status === 'rolled_back', 120);
    const refused = await load.stop();
    assert.equal(done.status, 'promoted', JSON.stringify(done.rollback));
    assert.ok(refused.every((r) => r.status === 403 && r.code === 'forbidden_scope'), JSON.stringify(refused.slice(0, 3)));
    assert.ok(refused.some((r) => r.release === cand.release) && refused.some((r) => r.release === 'r1-stable'), 'both releases refused some');
    assert.ok((await cand.metric('relay_cross_tenant_attempts_total')) >= 20, 'the candidate counted the attempts (at least the old rollback\'s worth)');
    // Judged against stable (a pass on the shared rate), never a failure.
    const verdicts = attemptsVerdicts(c);
    assert.ok(verdicts.every((g) => g.verdict !== 'fail'), JSON.stringify(verdicts));
    assert.ok(verdicts.some((g) => g.verdict === 'pass' && (g.value ?? 0) > 0), 'a comparison with attempts on the candidate was made');
    // And security heard of it.
    for (let i = 0; i < 50 && !hook.received.some((r) => r.event.event === 'cross_tenant_attempts'); i++) await new Promise((r) => setTimeout(r, 100));
    const alert = hook.received.find((r) => r.event.event === 'cross_tenant_attempts');
    assert.ok(alert, JSON.stringify(hook.received.map((r) => r.event.event)));
    assert.ok(alert.event.attempts!.candidate + alert.event.attempts!.stable > 0);
    assert.match(alert.text, /refused/);
  });

  it('10. forbidden_scope requests only on the candidate, clearly above stable\'s rate → rolled back, and the router\'s metrics say so', async () => {
    const cand = await candidate();
    const c = await controller(cand, 'stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\nmin_samples: 10\n');
    // Only the candidate's users (bucket < 5) ask for others' memory; stable's users only query.
    const load = nosyLoad(c.url, users.low, [...users.mid, ...users.high]);
    const done = await c.until('rollback', (s) => s.status === 'rolled_back', 120);
    const refused = await load.stop();
    // (After the rollback the same users are on stable, and it refuses them too.)
    assert.ok(refused.every((r) => r.status === 403 && r.code === 'forbidden_scope'), JSON.stringify(refused.slice(0, 3)));
    assert.ok(refused.filter((r) => r.release === cand.release).length >= 20);
    const reason = done.decisions.find((d) => d.action === 'rollback')!.reason;
    assert.match(reason, /^guardrail breached: cross_tenant_attempts /);
    assert.match(reason, /on the candidate vs 0 of \d+ on stable/);
    const failed = attemptsVerdicts(c).find((g) => g.verdict === 'fail')!;
    assert.ok(failed, 'an analysis failed it');
    const metrics = await (await fetch(`${c.url}/canary/metrics`)).text();
    assert.match(metrics, /^relay_canary_status\{status="rolled_back"\} 1$/m);
    assert.match(metrics, /^relay_canary_decisions_total\{action="rollback"\} 1$/m);
    assert.match(metrics, /^relay_canary_candidate_weight_ratio 0$/m);
  });

  it('8. stickiness: 1,000 users at 5% → 4–6% on the candidate, each always on the same release', async () => {
    const cand = await candidate();
    const c = await controller(cand, 'stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 10s\n');
    // The unit suite's 1,000 users (the bucket is a pure function of tenant and user).
    const tokens = await Promise.all(Array.from({ length: 1000 }, (_, i) => stable.token(`t${i % 7}`, `user-${i}`)));
    const releases = async () => {
      const out: string[] = [];
      for (let i = 0; i < tokens.length; i += 50) {
        out.push(
          ...(await Promise.all(
            tokens.slice(i, i + 50).map(async (t) => {
              const res = await fetch(`${c.url}/healthz`, { headers: { authorization: `Bearer ${t}` } });
              await res.body?.cancel();
              return res.headers.get('x-relay-release') ?? 'none';
            }),
          )),
        );
      }
      return out;
    };
    const first = await releases();
    const second = await releases();
    const onCandidate = first.filter((r) => r === cand.release).length;
    assert.ok(onCandidate >= 40 && onCandidate <= 60, `${onCandidate} of 1000 on the candidate`);
    assert.deepEqual(second, first, 'every user stayed on its release');
    assert.ok(first.every((r) => r === cand.release || r === 'r1-stable'));
  });
});

// The canary with HAProxy as the split (`relay canary run --traffic haproxy=<socket>`): Debian's
// HAProxy 2.6 running the configuration docs/canary.md ships (canaryHaproxyConfig), on a free
// port with its runtime socket in a temp folder, in front of two real `relay serve` releases; the
// controller is a real `relay canary run` process that only writes HAProxy's weights. Every
// weight below is read from HAProxy itself (`get weight`). RELAY_FAULTS drives a candidate bad.
import assert from 'node:assert/strict';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startHaproxyWith, type HaproxyWith } from '../src/fleet/index.ts';
import { askHaproxy, canaryHaproxyConfig, parseGetWeight } from '../src/rollout/traffic/index.ts';
import { queryStream, scratchDir, sharedKeys, startController, startLoad, type ControllerProcess } from './helpers/canary.ts';
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.ts';

const STORE = process.env.RELAY_TEST_DATABASE_URL ? 'pg' : 'pglite';
const keys = sharedKeys();
const SERVICE_ENV = { ...keys, RELAY_RERANK: 'off', RELAY_RATE_LIMIT_PER_MIN: '1000000' };
const HAPROXY_ARGS = ['--backend', 'relay', '--stable-server', 'stable', '--candidate-server', 'candidate'];

type Audit = Record<string, unknown> & { at: string; type?: string; action?: string; reason?: string; confirmed_weight?: number };
const audit = (c: ControllerProcess): Audit[] =>
  readFileSync(join(c.stateDir, 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Audit);

const hostPort = (url: string) => new URL(url).host;

/** Both servers' weights as HAProxy holds them now. */
async function weights(hap: HaproxyWith, socket = hap.socket): Promise<{ stable: number; candidate: number }> {
  const read = async (s: string) => parseGetWeight(await askHaproxy(socket, `get weight relay/${s}`))!;
  return { stable: await read('stable'), candidate: await read('candidate') };
}

async function setWeights(hap: HaproxyWith, stable: number, candidate: number): Promise<void> {
  await askHaproxy(hap.socket, `set server relay/candidate weight ${candidate}`);
  await askHaproxy(hap.socket, `set server relay/stable weight ${stable}`);
}

/** The server (stable, candidate) HAProxy sends each token's user to now, 50 requests at a time. */
async function placement(url: string, tokens: string[]): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i += 50) {
    out.push(
      ...(await Promise.all(
        tokens.slice(i, i + 50).map(async (t) => {
          const res = await fetch(`${url}/healthz`, { headers: { authorization: `Bearer ${t}` } });
          await res.body?.cancel();
          return res.headers.get('x-relay-server') ?? `status ${res.status}`;
        }),
      )),
    );
  }
  return out;
}

async function admin(c: ControllerProcess, action: string): Promise<void> {
  const token = readFileSync(join(c.stateDir, 'admin.token'), 'utf8').trim();
  const res = await fetch(`${c.url}/canary/admin/${action}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(res.status, 200, await res.text());
}

describe(`canary with HAProxy as the split: real HAProxy, two releases and the controller as processes (${STORE})`, { timeout: 600_000 }, () => {
  let stable: RelayProcess;
  const cleanup: Array<() => Promise<void>> = [];
  /** Users by where HAProxy's consistent hash puts them: `low` (candidate at 5%), `mid` (candidate at 50% only), `high` (stable at 50%). */
  const users = { low: [] as string[], mid: [] as string[], high: [] as string[] };

  before(async () => {
    stable = await startRelayProcess(STORE, { ...SERVICE_ENV, RELAY_RELEASE: 'r1-stable' });
    // Placement is a pure function of the token's tid+sub and the weights: a probe HAProxy whose
    // two servers are both the stable process sorts users the way every HAProxy below will.
    const probe = await startHaproxyWith({ config: ({ port, socket }) => canaryHaproxyConfig({ bind: `127.0.0.1:${port}`, socket, stable: { address: hostPort(stable.url) }, candidate: { address: hostPort(stable.url) } }) });
    try {
      const tenant = `canary-hap-${Date.now()}`;
      const tokens = await Promise.all(Array.from({ length: 200 }, (_, i) => stable.token(tenant, `user-${i}`)));
      await setWeights(probe, 95, 5);
      const at5 = await placement(probe.url, tokens);
      await setWeights(probe, 50, 50);
      const at50 = await placement(probe.url, tokens);
      tokens.forEach((t, i) => {
        const group = at5[i] === 'candidate' ? users.low : at50[i] === 'candidate' ? users.mid : users.high;
        if (group.length < 4) group.push(t);
      });
    } finally {
      await probe.daemon.stop();
    }
    assert.ok(users.low.length >= 2 && users.mid.length === 4 && users.high.length === 4, JSON.stringify({ low: users.low.length, mid: users.mid.length, high: users.high.length }));
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await stable?.stop();
  });

  let releases = 0;
  /** A candidate release (with `faults`) and a fresh HAProxy in front of both (stable 100, candidate 0). */
  async function setup(faults?: string): Promise<{ cand: RelayProcess & { release: string }; hap: HaproxyWith }> {
    const release = `r2-candidate-${++releases}`;
    const p = await startRelayProcess(STORE, { ...SERVICE_ENV, RELAY_RELEASE: release, ...(faults ? { RELAY_FAULTS: faults } : {}) });
    cleanup.push(() => p.stop());
    const hap = await startHaproxyWith({ config: ({ port, socket }) => canaryHaproxyConfig({ bind: `127.0.0.1:${port}`, socket, stable: { address: hostPort(stable.url) }, candidate: { address: hostPort(p.url) } }) });
    cleanup.push(() => hap.daemon.stop());
    return { cand: Object.assign(p, { release }), hap };
  }
  async function controller(cand: RelayProcess, hap: HaproxyWith, plan: string, stateDir?: string): Promise<ControllerProcess> {
    const c = await startController({ stable: stable.url, candidate: cand.url, plan, ...(stateDir ? { stateDir } : {}), extraArgs: ['--traffic', `haproxy=${hap.socket}`, ...HAPROXY_ARGS] });
    cleanup.push(() => c.stop());
    return c;
  }
  const all = () => [...users.low, ...users.mid, ...users.high];

  it('1. a healthy candidate goes 5 → 50 → 100 in HAProxy\'s weights; 1,000 users keep their release across 5 → 50 unless moved to the candidate', async () => {
    const { cand, hap } = await setup();
    const c = await controller(cand, hap, 'stages: [{weight: 5, window: 2s}, {weight: 50, window: 2s}, {weight: 100, window: 2s}]\ninterval: 1s\nmin_samples: 10\n');
    // No load yet: stage 1 holds (insufficient data) at 5%.
    const at5 = await c.until('weight 5 confirmed', (s) => s.weight === 5 && s.traffic.layer === 'haproxy');
    assert.equal(at5.traffic.confirmed_weight, 5);
    assert.deepEqual(await weights(hap), { stable: 95, candidate: 5 });
    const tokens = await Promise.all(Array.from({ length: 1000 }, (_, i) => stable.token(`t${i % 7}`, `user-${i}`)));
    const first = await placement(hap.url, tokens);
    assert.deepEqual(await placement(hap.url, tokens), first, 'every user stays on its release at 5%');
    const onCandidate5 = first.filter((r) => r === 'candidate').length;
    assert.ok(onCandidate5 >= 20 && onCandidate5 <= 100, `${onCandidate5} of 1000 on the candidate at 5%`);
    assert.ok(first.every((r) => r === 'candidate' || r === 'stable'));

    const load = startLoad(hap.url, all());
    await c.until('stage 2', (s) => s.stage === 2 && s.weight === 50);
    // Held there (the stage clock stops) while 1,000 users are placed again.
    await admin(c, 'pause');
    assert.deepEqual(await weights(hap), { stable: 50, candidate: 50 });
    const second = await placement(hap.url, tokens);
    const moved = second.filter((r, i) => r !== first[i]);
    assert.ok(moved.every((r) => r === 'candidate'), 'users only moved from stable to the candidate');
    assert.ok(first.every((r, i) => r !== 'candidate' || second[i] === 'candidate'), 'no candidate user went back to stable');
    const onCandidate50 = second.filter((r) => r === 'candidate').length;
    assert.ok(onCandidate50 >= 350 && onCandidate50 <= 650, `${onCandidate50} of 1000 on the candidate at 50%`);
    await admin(c, 'resume');

    const done = await c.until('promotion', (s) => s.status === 'promoted' || s.status === 'rolled_back', 120);
    const outcomes = await load.stop();
    assert.equal(done.status, 'promoted', JSON.stringify(done.rollback));
    await c.until('weight 100 confirmed', (s) => s.weight === 100);
    assert.deepEqual(await weights(hap), { stable: 0, candidate: 100 });
    assert.ok(outcomes.length > 0 && outcomes.every((o) => o.ok), `${outcomes.filter((o) => !o.ok).length} of ${outcomes.length} streams failed`);
    assert.ok(outcomes.some((o) => o.server === 'candidate') && outcomes.some((o) => o.server === 'stable'));
    // Each confirmation is in the audit, in order.
    assert.deepEqual(audit(c).filter((e) => e.type === 'traffic').map((e) => e.confirmed_weight), [5, 50, 100]);
    assert.equal((await queryStream(hap.url, users.high[0]!)).server, 'candidate');
  });

  it('2. TTFV delay → rolled back: HAProxy holds candidate weight 0 within the rollback\'s interval', async () => {
    const { cand, hap } = await setup('ttfv_delay_ms=2000');
    const c = await controller(cand, hap, 'stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\nmin_samples: 10\n');
    const load = startLoad(hap.url, [...users.mid, ...users.high.slice(0, 2)]);
    const done = await c.until('rollback', (s) => s.status === 'rolled_back' && s.weight === 0, 90);
    const outcomes = await load.stop();
    assert.match(done.decisions.find((d) => d.action === 'rollback')!.reason, /ttfv_p95/);
    assert.deepEqual(await weights(hap), { stable: 100, candidate: 0 });
    const entries = audit(c);
    const rollbackAt = Date.parse(entries.find((e) => e.action === 'rollback')!.at);
    const zeroAt = Date.parse(entries.find((e) => e.type === 'traffic' && e.confirmed_weight === 0)!.at);
    assert.ok(zeroAt >= rollbackAt && zeroAt - rollbackAt < 1000, `weight 0 confirmed ${zeroAt - rollbackAt} ms after the rollback decision`);
    const firstSlow = Math.min(...outcomes.filter((o) => o.server === 'candidate' && o.firstAt !== null).map((o) => o.firstAt!));
    const analysesBetween = entries.filter((e) => e.type === 'analysis' && Date.parse(e.at) >= firstSlow - 50 && Date.parse(e.at) <= rollbackAt);
    assert.ok(analysesBetween.length <= 2, `rolled back after ${analysesBetween.length} analyses since the first slow stream`);
    assert.equal((await queryStream(hap.url, users.mid[0]!)).server, 'stable');
  });

  it('3. one RLS error on the candidate → rolled back at the next interval, weight 0 in HAProxy', async () => {
    const { cand, hap } = await setup('rls_error_rate=1');
    const c = await controller(cand, hap, 'stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\n');
    await c.until('the first analysis', (s) => s.report !== null && s.weight === 5, 60);
    const one = await queryStream(hap.url, users.low[0]!);
    const erroredAt = Date.now();
    assert.equal(one.server, 'candidate');
    assert.equal(one.status, 500);
    const done = await c.until('rollback and its hooks', (s) => s.status === 'rolled_back' && s.weight === 0 && s.rollback !== null, 60);
    assert.match(done.decisions.find((d) => d.action === 'rollback')!.reason, /rls_errors/);
    const entries = audit(c);
    // HAProxy confirmed weight 0 in the rollback's own turn, before its hooks ran (not an interval later).
    const order = entries.filter((e) => (e.type === 'traffic' && e.confirmed_weight === 0) || e.action === 'rollback_hooks').map((e) => (e.type === 'traffic' ? 'weight 0 confirmed' : 'hooks'));
    assert.deepEqual(order, ['weight 0 confirmed', 'hooks']);
    const rollbackAt = Date.parse(entries.find((e) => e.action === 'rollback')!.at);
    const between = entries.filter((e) => e.type === 'analysis' && Date.parse(e.at) > erroredAt && Date.parse(e.at) < rollbackAt - 5);
    assert.ok(between.length <= 1, `${between.length} analyses passed the RLS error by`);
    assert.deepEqual(await weights(hap), { stable: 100, candidate: 0 });
    assert.equal((await queryStream(hap.url, users.low[0]!)).server, 'stable');
  });

  it('4. SSE failures above 0.4% → rolled back, weight 0 in HAProxy', async () => {
    const { cand, hap } = await setup('sse_error_rate=0.05');
    const c = await controller(cand, hap, 'stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\nmin_samples: 10\n');
    const load = startLoad(hap.url, all());
    const done = await c.until('rollback', (s) => s.status === 'rolled_back' && s.weight === 0, 120);
    await load.stop();
    assert.match(done.decisions.find((d) => d.action === 'rollback')!.reason, /sse_success/);
    assert.deepEqual(await weights(hap), { stable: 100, candidate: 0 });
  });

  it('5. the controller killed (kill -9) mid-stage: HAProxy keeps 50/50 and 0 requests fail; restarted, it resumes from its state', async () => {
    const { cand, hap } = await setup();
    const dir = scratchDir('canary-hap-');
    const plan = 'stages: [{weight: 50, window: 1h}, {weight: 100, window: 1h}]\ninterval: 1s\nmin_samples: 10\n';
    const first = await startController({ stable: stable.url, candidate: cand.url, plan, stateDir: dir, extraArgs: ['--traffic', `haproxy=${hap.socket}`, ...HAPROXY_ARGS] });
    const load = startLoad(hap.url, all());
    const before = await first.until('2 s observed', (s) => s.observed_ms >= 2000, 60);
    await first.kill();
    const killedAt = Date.now();
    const atKill = load.outcomes.length;
    // Controller gone: HAProxy holds its last weights, and the load goes on through it.
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(await weights(hap), { stable: 50, candidate: 50 });
    const whileDown = load.outcomes.slice(atKill);
    const second = await controller(cand, hap, plan, dir);
    const outcomes = await load.stop();
    assert.ok(whileDown.length >= 20, `${whileDown.length} streams while the controller was down`);
    assert.ok(whileDown.some((o) => o.server === 'candidate') && whileDown.some((o) => o.server === 'stable'));
    assert.equal(outcomes.filter((o) => !o.ok).length, 0, 'no stream failed, before, during or after the controller\'s death');
    const resumed = await second.status();
    assert.equal(resumed.run_id, before.run_id);
    assert.equal(resumed.status, 'running');
    assert.equal(resumed.stage, 1);
    assert.equal(resumed.weight, 50);
    assert.ok(resumed.decisions.some((d) => d.action === 'resume_after_restart' && Date.parse(d.at) > killedAt));
    assert.deepEqual(await weights(hap), { stable: 50, candidate: 50 });
  });

  it('6. the runtime socket not answering: retried, rolled back after max_source_errors; weight 0 is reported only once HAProxy confirmed it', async () => {
    const { cand, hap } = await setup();
    const c = await controller(cand, hap, 'stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 500ms\nmax_source_errors: 3\n');
    await c.until('weight 5 confirmed', (s) => s.weight === 5);
    const away = `${hap.socket}.away`;
    renameSync(hap.socket, away);
    let restored = false;
    cleanup.push(async () => {
      if (!restored) renameSync(away, hap.socket);
    });
    const decided = await c.until('the rollback decision', (s) => s.status === 'rolled_back', 30);
    assert.match(decided.decisions.find((d) => d.action === 'rollback')!.reason, /traffic layer failed 3 times/);
    assert.equal(decided.decisions.filter((d) => d.action === 'traffic_error').length, 2);
    // Decided, not confirmed: the status still says what HAProxy last confirmed.
    await new Promise((r) => setTimeout(r, 1200));
    const blind = await c.status();
    assert.equal(blind.target_weight, 0);
    assert.equal(blind.weight, 5);
    assert.match(blind.traffic.error ?? '', /ENOENT/);
    renameSync(away, hap.socket);
    restored = true;
    const confirmed = await c.until('weight 0 confirmed', (s) => s.weight === 0, 10);
    assert.equal(confirmed.traffic.error, null);
    assert.deepEqual(await weights(hap), { stable: 100, candidate: 0 });
  });

  it('7. a guardrail breach while the runtime socket is gone still rolls back at once; weight 0 is written when HAProxy answers again', async () => {
    const { cand, hap } = await setup('rls_error_rate=1');
    const c = await controller(cand, hap, 'stages: [{weight: 5, window: 1h}, {weight: 100, window: 1h}]\ninterval: 500ms\nmax_source_errors: 1000\n');
    await c.until('the first analysis at weight 5', (s) => s.report !== null && s.weight === 5, 60);
    const away = `${hap.socket}.away`;
    renameSync(hap.socket, away);
    let restored = false;
    cleanup.push(async () => {
      if (!restored) renameSync(away, hap.socket);
    });
    await c.until('a traffic error', (s) => s.traffic.failures >= 1, 30);
    // HAProxy still splits at its last weights: the user it has on the candidate meets the RLS error.
    const one = await queryStream(hap.url, users.low[0]!);
    assert.deepEqual([one.server, one.status], ['candidate', 500]);
    const decided = await c.until('the rollback decision', (s) => s.status === 'rolled_back', 30);
    assert.match(decided.decisions.find((d) => d.action === 'rollback')!.reason, /rls_errors/);
    assert.equal(decided.weight, 5, 'not reported as 0 before HAProxy confirmed it');
    // (read through the moved socket, which the controller does not know)
    assert.deepEqual(await weights(hap, away), { stable: 95, candidate: 5 });
    renameSync(away, hap.socket);
    restored = true;
    await c.until('weight 0 confirmed', (s) => s.weight === 0, 10);
    assert.deepEqual(await weights(hap), { stable: 100, candidate: 0 });
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { runFailover, type FailoverResult, type FailoverScenario } from '../src/bench/index.ts';
import { haLabAvailable, startHaLab, type HaLab } from '../src/fleet/index.ts';

/**
 * Failover under load on the HA lab (scripts/ha-lab.sh: etcd, two Patroni-managed PostgreSQL
 * nodes in synchronous mode, HAProxy on Patroni's /primary and /replica): `relay serve` with
 * DATABASE_URL on HAProxy's primary port and RELAY_READ_DATABASE_URL on its replica port, 20 keyed
 * writers and 20 SSE readers, and the primary lost three ways. Timings are `relay bench
 * failover`'s to report; this asserts what a user counts on. Runs in the server run only (one
 * lab, once), skipped elsewhere saying why.
 */

const skip = !process.env.RELAY_TEST_DATABASE_URL
  ? 'a server-store suite: runs when RELAY_TEST_DATABASE_URL is set'
  : !haLabAvailable()
    ? "the HA lab needs Debian's patroni, etcd-server, haproxy and PostgreSQL (scripts/install-fleet.sh)"
    : false;

function assertNothingLost(r: FailoverResult): void {
  const why = JSON.stringify(r);
  assert.ok(r.acked_writes > 0, why);
  assert.equal(r.lost_writes, 0, `an acknowledged write is gone: ${why}`);
  assert.equal(r.duplicate_writes, 0, `a keyed retry wrote twice: ${why}`);
  // In-flight writes fail with 503 and Retry-After, never 500, never a hang.
  assert.deepEqual(Object.keys(r.write_statuses).filter((status) => status !== '503'), [], `a write was answered other than 201 or 503: ${why}`);
  assert.equal(r.missing_retry_after, 0, why);
  assert.equal(r.hung_requests, 0, why);
  // Writes came back by themselves: one was acknowledged after the new primary was up.
  assert.ok(Number.isFinite(r.reconnect_s), why);
  // Reads without a consistency token ride on the standby, or the primary, meanwhile.
  assert.ok(r.reads > 0, why);
  assert.equal(r.read_errors, 0, why);
}

describe('failover under load on Patroni + etcd + HAProxy (the HA lab)', { skip, timeout: 900_000 }, () => {
  let lab: HaLab;
  before(async () => {
    lab = await startHaLab();
  });
  after(async () => {
    await lab?.down();
  });

  // One database, one master key: every scenario's `relay serve` gets the same.
  const masterKey = randomBytes(32).toString('base64');
  const scenario = (name: FailoverScenario) => runFailover({ lab, masterKey, scenario: name, writers: 20, readers: 20, steadyS: 3, syncCost: false, log: (line) => console.log(`# ${line}`) });

  it('the primary node lost (kill -9 of its Patroni and PostgreSQL): nothing acknowledged lost or written twice, no 500, and the node rejoins as a standby that serves reads', async () => {
    const r = await scenario('kill-node');
    assertNothingLost(r);
    assert.equal(r.rejoined, true, JSON.stringify(r));
  });

  it("the primary's postmaster killed alone (Patroni starts it again in place): the same guarantees", async () => {
    assertNothingLost(await scenario('kill-postmaster'));
  });

  it('a planned patronictl switchover under the same load: the same guarantees', async () => {
    assertNothingLost(await scenario('switchover'));
  });
});

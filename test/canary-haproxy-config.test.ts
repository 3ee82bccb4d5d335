// The HAProxy side of `relay canary run --traffic haproxy=…` without releases: the configuration
// docs/canary.md ships is the one canaryHaproxyConfig writes and Debian's HAProxy accepts, the
// runtime API's answers are read as HAProxy writes them, and the weights the traffic layer sets
// are the ones a real HAProxy then holds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startHaproxyWith, type HaproxyWith } from '../src/fleet/index.ts';
import { askHaproxy, canaryHaproxyConfig, haproxyTraffic, parseGetWeight, parseTrafficSpec, shareOf, TrafficError } from '../src/rollout/traffic/index.ts';
import { scratchDir } from './helpers/canary.ts';

const DOC_EXAMPLE = { bind: '0.0.0.0:8080', socket: '/run/haproxy/relay-admin.sock', stable: { address: '10.0.0.11:8080' }, candidate: { address: '10.0.0.12:8080' } };

describe('canary HAProxy configuration and runtime API', () => {
  it('docs/canary.md ships the configuration canaryHaproxyConfig writes, and haproxy -c accepts it', () => {
    const doc = readFileSync('docs/canary.md', 'utf8');
    const block = /```haproxy\n([\s\S]*?)```/.exec(doc)?.[1];
    const config = canaryHaproxyConfig(DOC_EXAMPLE);
    assert.equal(block, config);
    for (const keyword of ['http_auth_bearer,jwt_payload_query', 'balance hash var(txn.relay_user)', 'hash-type consistent', 'level admin']) assert.ok(config.includes(keyword), keyword);
    const file = join(scratchDir('canary-hap-cfg-'), 'haproxy.cfg');
    writeFileSync(file, config);
    const check = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8' });
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
  });

  it('reads get weight answers and shares; parses --traffic', () => {
    assert.equal(parseGetWeight('50 (initial 0)\n\n'), 50);
    assert.equal(parseGetWeight('No such server.\n'), null);
    assert.equal(shareOf(95, 5), 5);
    assert.equal(shareOf(0, 100), 100);
    assert.equal(shareOf(0, 0), null);
    assert.deepEqual(parseTrafficSpec('builtin'), { kind: 'builtin' });
    assert.deepEqual(parseTrafficSpec('haproxy=/run/haproxy/admin.sock'), { kind: 'haproxy', socket: '/run/haproxy/admin.sock' });
    assert.throws(() => parseTrafficSpec('nginx'), /builtin or haproxy=/);
  });

  it('relay canary run --traffic haproxy=… needs the backend and server names, and refuses to start on a socket that does not answer', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, ['bin/relay.mjs', 'canary', 'run', '--stable', 'http://127.0.0.1:1', '--candidate', 'http://127.0.0.1:2', '--listen', '127.0.0.1:0', '--state-dir', scratchDir('canary-hap-cli-'), ...args], { encoding: 'utf8', timeout: 30_000 });
    const noNames = run('--traffic', 'haproxy=/nonexistent/admin.sock');
    assert.equal(noNames.status, 2, noNames.stderr);
    assert.match(noNames.stderr, /needs --backend NAME, --stable-server S and --candidate-server C/);
    const bad = run('--traffic', 'nginx');
    assert.equal(bad.status, 2, bad.stderr);
    const gone = run('--traffic', 'haproxy=/nonexistent/admin.sock', '--backend', 'relay', '--stable-server', 'stable', '--candidate-server', 'candidate');
    assert.equal(gone.status, 1, gone.stderr);
    assert.match(gone.stderr, /HAProxy runtime API \/nonexistent\/admin\.sock: ENOENT/);
  });

  describe('against a real HAProxy', () => {
    let hap: HaproxyWith;
    let upstream: http.Server;
    before(async () => {
      upstream = http.createServer((_req, res) => res.end('ok'));
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
      const address = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
      hap = await startHaproxyWith({ config: ({ port, socket }) => canaryHaproxyConfig({ bind: `127.0.0.1:${port}`, socket, stable: { address }, candidate: { address } }) });
    });
    after(async () => {
      await hap?.daemon.stop();
      await new Promise((r) => upstream?.close(r));
    });
    const held = async () => ({
      stable: parseGetWeight(await askHaproxy(hap.socket, 'get weight relay/stable')),
      candidate: parseGetWeight(await askHaproxy(hap.socket, 'get weight relay/candidate')),
    });

    it('starts at stable 100, candidate 0; apply(P) leaves HAProxy at 100−P / P and confirms P', async () => {
      const traffic = haproxyTraffic({ socket: hap.socket, backend: 'relay', stableServer: 'stable', candidateServer: 'candidate' });
      assert.equal(await traffic.read(), 0);
      assert.deepEqual(await held(), { stable: 100, candidate: 0 });
      for (const share of [5, 50, 100, 0]) {
        assert.equal(await traffic.apply(share), share);
        assert.deepEqual(await held(), { stable: 100 - share, candidate: share });
      }
    });

    it('a server HAProxy does not have, or a socket that is not there, is a TrafficError', async () => {
      const wrong = haproxyTraffic({ socket: hap.socket, backend: 'relay', stableServer: 'stable', candidateServer: 'canary' });
      await assert.rejects(wrong.apply(5), (e: Error) => e instanceof TrafficError && /get weight relay\/canary answered/.test(e.message));
      const gone = haproxyTraffic({ socket: `${hap.socket}.missing`, backend: 'relay', stableServer: 'stable', candidateServer: 'candidate', timeoutMs: 500 });
      await assert.rejects(gone.read(), (e: Error) => e instanceof TrafficError && /ENOENT/.test(e.message));
    });
  });
});

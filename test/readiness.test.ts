import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createPgDriver, Store } from '../src/store/index.ts';
import { startTestApi, type TestApi } from './helpers/api.ts';
import { targets, type Target } from './helpers/targets.ts';

/**
 * A TCP proxy in front of the test PostgreSQL that the test can cut and restore: the store
 * becomes unreachable for real (connections refused), then reachable again on the same port.
 */
class Cable {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(private readonly upstream: { host: string; port: number }) {}

  async plug(): Promise<void> {
    if (this.server) return;
    this.server = net.createServer((client) => {
      const up = net.connect(this.upstream);
      for (const s of [client, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(up).pipe(client);
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
    const addr = this.server.address();
    if (typeof addr === 'object' && addr) this.port = addr.port;
  }

  async cut(): Promise<void> {
    if (!this.server) return;
    const closed = new Promise((r) => this.server?.close(r));
    for (const s of this.sockets) s.destroy();
    await closed;
    this.server = null;
  }
}

const appUrl = process.env.RELAY_TEST_DATABASE_URL;
const ownerUrl = process.env.RELAY_TEST_MIGRATE_URL;

// The embedded store lives in the process: it cannot become unreachable. This suite needs the server.
if (appUrl && ownerUrl) {
  describe('readiness follows the store: 503 while it is unreachable, 200 again once it is back (pg)', () => {
    let api: TestApi;
    let cable: Cable;
    before(async () => {
      const u = new URL(appUrl);
      cable = new Cable({ host: u.hostname, port: Number(u.port || 5432) });
      await cable.plug();
      u.host = `127.0.0.1:${cable.port}`;
      const viaCable = u.toString();
      const target: Target = {
        name: 'pg',
        async open(opts = {}) {
          const store = new Store(createPgDriver({ appUrl: viaCable, ownerUrl, poolMax: 2 }), opts);
          await store.migrate();
          return store;
        },
      };
      api = await startTestApi(target);
    });
    after(async () => {
      await cable.plug().catch(() => undefined);
      await api?.close();
      await cable.cut();
    });

    const ready = async () => {
      const res = await fetch(`${api.url}/readyz`);
      return { status: res.status, body: (await res.json()) as { status: string; checks: { store: string } } };
    };

    it('reports the store unreachable, then recovers without a restart', async () => {
      assert.equal((await ready()).status, 200);
      await cable.cut();
      const down = await ready();
      assert.equal(down.status, 503);
      assert.deepEqual([down.body.status, down.body.checks.store], ['not_ready', 'unreachable']);
      // The API says so too, with its code, instead of hanging or a 500.
      const token = await api.token('readiness-tenant', 'rick');
      const q = await fetch(`${api.url}/api/v1/memory/query`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'anything' }),
      });
      assert.equal(q.status, 503);
      assert.equal(((await q.json()) as { error: { code: string } }).error.code, 'store_unavailable');
      await cable.plug();
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = (await ready()).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(status, 200);
    });
  });
}

describe('readiness on the embedded store: 503 once its database is closed (pglite)', () => {
  it('reports the store unreachable', async () => {
    const api = await startTestApi(targets()[0]!);
    try {
      assert.equal((await fetch(`${api.url}/readyz`)).status, 200);
      await api.store.driver.close();
      const res = await fetch(`${api.url}/readyz`);
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { checks: { store: string } }).checks.store, 'unreachable');
    } finally {
      await api.server.app.close();
    }
  });
});

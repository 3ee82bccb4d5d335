import { randomBytes } from 'node:crypto';
import { mintToken } from '../auth/index.ts';
import { createPgDriver, purgeShreddedTenant, SqlKeyRepository } from '../store/index.ts';
import { percentile } from './load.ts';

export interface KeyEventLatencyOptions {
  /** Base URLs of the running `relay serve` replicas to watch (all on the database below). */
  replicas: readonly string[];
  /** The replicas' database: the application login (DATABASE_URL)… */
  appUrl: string;
  /** …and the owner login (RELAY_MIGRATE_URL), which shreds as `relay keys shred` does. */
  ownerUrl: string;
  /** The replicas' RELAY_JWT_SECRET, for the sample tenants' tokens. */
  jwtSecret: string;
  /** Shreds measured, one fresh tenant each. Default 20. */
  samples?: number;
  /** The replicas' RELAY_METRICS_TOKEN, when they have one. */
  metricsToken?: string;
  /** Longest wait for one replica to drop one tenant, ms; past it the run fails. Default 10,000. */
  timeoutMs?: number;
}

export interface KeyEventLatency {
  /** Per shred: until the last replica had dropped the tenant, ms. */
  samplesMs: number[];
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `relay_key_events_total{kind="shred"}` of one replica now. */
async function shredEvents(base: string, metricsToken: string | undefined): Promise<number> {
  const res = await fetch(`${base}/metrics/memory`, { headers: metricsToken ? { authorization: `Bearer ${metricsToken}` } : {} });
  if (res.status !== 200) throw new Error(`${base}/metrics/memory answered ${res.status}`);
  const m = /^relay_key_events_total\{kind="shred"\} (\S+)$/m.exec(await res.text());
  return m ? Number(m[1]) : 0;
}

async function postJson(url: string, token: string, body: unknown): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const parsed = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
  return { status: res.status, code: parsed.error?.code };
}

/**
 * Shred on one side, cache dropped on every other: for each sample, a fresh tenant is written
 * through the first replica and queried through every replica (so each has its keys cached);
 * then this process shreds it as the operator's `relay keys shred` does (the owner login; the
 * key event is published in the shred's transaction), and each replica's
 * `relay_key_events_total{kind="shred"}` is scraped back to back until it moves. A replica counts
 * an event in the same synchronous step in which its keyring drops the tenant, so the moved
 * counter is the drop; the sample is the time from the shred's start to the last replica's move
 * (it includes the shred's own transaction and up to one scrape). Each drop is then checked for
 * real: a query on every replica must answer 410 `tenant_shredded`, or the run fails.
 */
export async function measureKeyEventLatency(opts: KeyEventLatencyOptions): Promise<KeyEventLatency> {
  if (opts.replicas.length === 0) throw new Error('measureKeyEventLatency: no replicas');
  const samples = opts.samples ?? 20;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const driver = createPgDriver({ appUrl: opts.appUrl, ownerUrl: opts.ownerUrl, poolMax: 2 });
  const owner = new SqlKeyRepository(driver, 'owner');
  const samplesMs: number[] = [];
  try {
    for (let s = 0; s < samples; s++) {
      const tenant = `bench-keyev-${randomBytes(6).toString('hex')}`;
      const token = await mintToken({ secret: opts.jwtSecret, tenant, user: 'bench', ttlSeconds: 600 });
      const wrote = await postJson(`${opts.replicas[0]}/api/v1/memory`, token, { text: 'The bench parks on level 3.' });
      if (wrote.status !== 201) throw new Error(`the sample write answered ${wrote.status} ${wrote.code ?? ''}`);
      for (const base of opts.replicas) {
        const q = await postJson(`${base}/api/v1/memory/query`, token, { query: 'where does the bench park?', top_k: 1 });
        if (q.status !== 200) throw new Error(`${base}: the warming query answered ${q.status} ${q.code ?? ''}`);
      }
      const before = await Promise.all(opts.replicas.map((base) => shredEvents(base, opts.metricsToken)));
      const started = performance.now();
      await owner.shred(tenant);
      const dropped = await Promise.all(
        opts.replicas.map(async (base, i) => {
          for (;;) {
            if ((await shredEvents(base, opts.metricsToken)) > before[i]!) return performance.now() - started;
            if (performance.now() - started > timeoutMs) throw new Error(`${base} did not drop a shredded tenant within ${timeoutMs} ms`);
            await sleep(1);
          }
        }),
      );
      samplesMs.push(Math.max(...dropped));
      for (const base of opts.replicas) {
        const q = await postJson(`${base}/api/v1/memory/query`, token, { query: 'where does the bench park?', top_k: 1 });
        if (q.status !== 410 || q.code !== 'tenant_shredded') throw new Error(`${base} still answered ${q.status} for a shredded tenant`);
      }
      await purgeShreddedTenant(driver, tenant);
    }
  } finally {
    await driver.close();
  }
  return { samplesMs, p50Ms: percentile(samplesMs, 50), p95Ms: percentile(samplesMs, 95), maxMs: percentile(samplesMs, 100) };
}

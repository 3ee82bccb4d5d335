// The export's memory bound, measured: RSS of the service process while one user's N chunks are
// exported over HTTP, for two N. `node --expose-gc --import tsx scripts/bench-export-memory.ts 1000 100000`
// (embedded PGlite in memory, scratch only; the figures go to docs/benchmarks.md).
import { randomBytes, randomUUID } from 'node:crypto';
import { createTokenVerifier, mintToken } from '../src/auth/index.ts';
import { startServer } from '../src/api/index.ts';
import { Keyring, LocalKeyProvider } from '../src/crypto/index.ts';
import { createHashEmbedder } from '../src/embed/index.ts';
import { MemoryService, SealedMemory } from '../src/memory/index.ts';
import { createMetrics } from '../src/metrics/index.ts';
import { VECTOR_INDEX } from '../src/store/bulk-load.ts';
import { createPgliteDriver, SqlKeyRepository, Store } from '../src/store/index.ts';

const sizes = process.argv.slice(2).map(Number);
const mb = (n: number) => Math.round(n / 2 ** 20);

const store = new Store(await createPgliteDriver({ dataDir: 'memory://' }));
await store.migrate();
// Scratch database: no vector index needed to export, and loading is far faster without it.
await store.driver.ownerTransaction((sql) => sql.exec(`DROP INDEX ${VECTOR_INDEX}`));
const keyring = new Keyring({ provider: new LocalKeyProvider(randomBytes(32)), repository: new SqlKeyRepository(store.driver, 'app') });
const sealed = new SealedMemory(store, keyring);
const embedder = await createHashEmbedder(store.embeddingDim);
const memory = new MemoryService({ memory: sealed, embedder, chunking: { maxChars: 1000, overlapChars: 0 } });
const secret = randomBytes(32).toString('base64url');
const server = await startServer({
  store,
  metrics: createMetrics({ defaultMetrics: false }),
  memory,
  verifier: await createTokenVerifier({ secret }),
  limits: { rateLimitPerMin: 1_000_000, bodyLimitBytes: 1 << 20, heartbeatMs: 15_000 },
  host: '127.0.0.1',
  port: 0,
  shutdownGraceMs: 1000,
  sweepIntervalS: 0,
});
const tenant = `bench-export-${randomUUID()}`;
const [vector] = await embedder.embed(['a memory of typical length']);

for (const n of sizes) {
  const user = `user-${n}`;
  for (let done = 0; done < n; done += 1000) {
    const batch = Array.from({ length: Math.min(1000, n - done) }, (_, i) => ({
      text: `memory ${done + i}: ${'a sentence of about the usual length for a remembered fact. '.repeat(3)}`,
      embedding: vector!,
      embedderId: embedder.id,
      metadata: { n: done + i, topic: 'bench' },
    }));
    await sealed.write(tenant, user, batch);
  }
  global.gc?.();
  const token = await mintToken({ secret, tenant, user, ttlSeconds: 3600 });
  const before = process.memoryUsage();
  let peak = before.rss;
  let peakHeap = before.heapUsed;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 20);
  const started = performance.now();
  const res = await fetch(`${server.url}/api/v1/users/${user}/memory/export`, { headers: { authorization: `Bearer ${token}` } });
  let lines = 0;
  let bytes = 0;
  // The live heap: after a full GC every ~2 MB of body (peak heapUsed alone counts garbage not yet collected).
  let liveHeap = 0;
  let nextGc = 0;
  const decoder = new TextDecoder();
  for await (const part of res.body!) {
    bytes += part.byteLength;
    if (global.gc && bytes >= nextGc) {
      global.gc();
      liveHeap = Math.max(liveHeap, process.memoryUsage().heapUsed);
      nextGc = bytes + 2 * 2 ** 20;
    }
    for (const c of decoder.decode(part, { stream: true })) if (c === '\n') lines++;
  }
  clearInterval(timer);
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ rows: n, exported: lines, body_mb: mb(bytes), seconds: Math.round(seconds * 10) / 10, rss_before_mb: mb(before.rss), rss_growth_mb: mb(peak - before.rss), heap_before_mb: mb(before.heapUsed), heap_growth_mb: mb(peakHeap - before.heapUsed), live_heap_growth_mb: global.gc ? mb(liveHeap - before.heapUsed) : null }));
}
await server.close();

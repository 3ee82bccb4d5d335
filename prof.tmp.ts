import { openStore } from './src/store/index.ts';
import { placeholderUserHash } from './src/crypto/index.ts';
import { ClusteredSpace } from './src/bench/index.ts';
const store = await openStore({ location: { kind: 'pg', databaseUrl: 'postgres://app_user@127.0.0.1:5432/relay_bench' } });
const t = 'bench-ann-1-1'.replace('-1-1', '-1-agent'); const scope = { tenantId: t, userHash: placeholderUserHash(t, 'long-history') };
const space = new ClusteredSpace(384, 2000, 1);
const qs = Array.from({ length: 400 }, (_, i) => space.near((i * 7) % 2000));
const times: number[] = [];
const end = Date.now() + Number(process.env.SECS ?? 15) * 1000;
let i = 0;
while (Date.now() < end) { const s = process.hrtime.bigint(); await store.withScope(scope, (c) => c.search(qs[i++ % qs.length]!, 10)); times.push(Number(process.hrtime.bigint() - s) / 1e6); }
times.sort((a, b) => a - b); console.log('n', times.length, 'p50', times[times.length >> 1]!.toFixed(2), 'p95', times[Math.floor(times.length * 0.95)]!.toFixed(2));
await store.close();

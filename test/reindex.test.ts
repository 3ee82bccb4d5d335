import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Keyring, LocalKeyProvider } from '../src/crypto/index.ts';
import { createHashEmbedder, type Embedder } from '../src/embed/index.ts';
import { ownerKeyring, reindexTenant, SealedMemory, shredTenant, type ReindexProgress } from '../src/memory/index.ts';
import { createPgliteDriver, SqlKeyRepository, Store } from '../src/store/index.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

/** Embedder "B": a different id and different vectors (the hash of the reversed text), deterministic. */
async function reversedEmbedder(dim: number): Promise<Embedder & { calls: number }> {
  const hash = await createHashEmbedder(dim);
  const e = {
    id: `test-reversed/d${dim}`,
    dimensions: dim,
    calls: 0,
    async embed(texts: readonly string[], opts?: { signal?: AbortSignal }) {
      e.calls++;
      return hash.embed(texts.map((t) => [...t].reverse().join('')), opts);
    },
  };
  return e;
}

type RawRow = {
  id: string;
  tenant_id: string;
  user_hash: Uint8Array;
  embedder_id: string;
  embedding: string;
  vector_key: number | null;
  version: number;
};

/** pgvector's text form back to numbers; float4 prints the shortest text that reads back as the same float. */
const parseVector = (text: string) => text.slice(1, -1).split(',').map(Number);

for (const target of targets()) {
  describe(`relay reindex: reindexTenant (${target.name})`, () => {
    let store: Store;
    let provider: LocalKeyProvider;
    let memory: SealedMemory;
    let A: Embedder;
    let B: Embedder & { calls: number };
    const tenants: string[] = [];
    const tenant = (label: string) => {
      const t = testTenant(label);
      tenants.push(t);
      return t;
    };

    const rows = async (tenantId: string): Promise<RawRow[]> =>
      (
        await store.driver.ownerTransaction((sql) =>
          sql.query<RawRow>(
            'SELECT id, tenant_id, user_hash, embedder_id, embedding::text AS embedding, vector_key, version FROM memory_chunks WHERE tenant_id = $1 ORDER BY id',
            [tenantId],
          ),
        )
      ).rows;

    /** Writes `texts` for `user` under embedder A; returns id → text. */
    async function seed(tenantId: string, user: string, texts: string[]): Promise<Map<string, string>> {
      const vectors = await A.embed(texts);
      const ids = await memory.write(
        tenantId,
        user,
        texts.map((text, i) => ({ text, embedding: vectors[i]!, embedderId: A.id })),
      );
      return new Map(ids.map((id, i) => [id, texts[i]!]));
    }

    async function assertEmbeddedBy(e: Embedder, row: RawRow, text: string): Promise<void> {
      assert.equal(row.embedder_id, e.id);
      const [model] = await e.embed([text]);
      // At rest under the keyed transform of the row's user and of the key that sealed its text.
      assert.ok(row.vector_key !== null, 'the new vector is stored under the transform');
      const transform = await memory.vectors.transformFor({ tenantId: row.tenant_id, userHash: Buffer.from(row.user_hash) }, row.vector_key);
      assert.deepEqual(parseVector(row.embedding).map(Math.fround), Array.from(transform.apply(model!)).map(Math.fround));
    }

    before(async () => {
      store = await target.open();
      provider = new LocalKeyProvider(randomBytes(32));
      memory = new SealedMemory(store, new Keyring({ provider, repository: new SqlKeyRepository(store.driver) }));
      A = await createHashEmbedder(store.embeddingDim);
      B = await reversedEmbedder(store.embeddingDim);
    });

    after(async () => {
      for (const t of tenants) await shredTenant(store.driver, null, t);
      await store.close();
    });

    const run = (tenantId: string, opts: Parameters<typeof reindexTenant>[4] = {}, embedder: Embedder = B) =>
      reindexTenant(store.driver, ownerKeyring(store.driver, provider), embedder, tenantId, opts);

    it("re-embeds every row of the tenant (all users) in batches, leaving version and other tenants alone", async () => {
      const t = tenant('reindex-all');
      const other = tenant('reindex-other');
      const texts = new Map([
        ...(await seed(t, 'alice', ['Ada likes green tea', 'her sister lives in Lisbon', 'the dog is called Émile', 'meeting on Friday'])),
        ...(await seed(t, 'bob', ['Bob plays the cello', 'allergic to peanuts', 'works nights'])),
      ]);
      const otherTexts = await seed(other, 'alice', ['another tenant entirely', 'must not change']);
      const otherBefore = await rows(other);

      const progress: ReindexProgress[] = [];
      const report = await run(t, { batchSize: 3, onProgress: (p) => progress.push(p) });
      assert.deepEqual(report, { done: 7, total: 7, skipped: 0, embedderId: B.id, failures: {} });
      assert.deepEqual(progress.map((p) => [p.done, p.total]), [[0, 7], [3, 7], [6, 7], [7, 7]]);

      const after = await rows(t);
      assert.equal(after.length, 7);
      for (const row of after) {
        await assertEmbeddedBy(B, row, texts.get(row.id)!);
        assert.equal(row.version, 1);
      }
      assert.deepEqual(await rows(other), otherBefore);
      for (const row of otherBefore) await assertEmbeddedBy(A, row, otherTexts.get(row.id)!);

      // The rows still open, and search with B's query vector finds them.
      const [q] = await B.embed(['Ada likes green tea']);
      const found = await memory.search(t, 'alice', q!, 1);
      assert.equal(found.hits[0]?.text, 'Ada likes green tea');

      // Nothing left: a second run does nothing and calls no embedder.
      const calls = B.calls;
      assert.deepEqual(await run(t), { done: 0, total: 0, skipped: 0, embedderId: B.id, failures: {} });
      assert.equal(B.calls, calls);
      // Back to A is just another reindex.
      assert.equal((await run(t, {}, A)).done, 7);
      for (const row of await rows(t)) await assertEmbeddedBy(A, row, texts.get(row.id)!);
    });

    it('goes on where a run cut short stopped', async () => {
      const t = tenant('reindex-resume');
      const texts = await seed(t, 'carol', ['one', 'two', 'three', 'four', 'five']);
      const stop = new AbortController();
      const reason = new Error('operator pressed Ctrl-C');
      await assert.rejects(
        run(t, { batchSize: 2, signal: stop.signal, onProgress: (p) => p.done >= 2 && stop.abort(reason) }),
        (err) => err === reason,
      );
      const midway = await rows(t);
      assert.equal(midway.filter((r) => r.embedder_id === B.id).length, 2);
      assert.equal(midway.filter((r) => r.embedder_id === A.id).length, 3);

      const report = await run(t, { batchSize: 2 });
      assert.deepEqual([report.done, report.total, report.skipped], [3, 3, 0]);
      for (const row of await rows(t)) await assertEmbeddedBy(B, row, texts.get(row.id)!);
    });

    it('counts a row that does not open, skips it and leaves it as it is', async () => {
      const t = tenant('reindex-tamper');
      const texts = await seed(t, 'dave', ['first note', 'second note', 'third note']);
      const [victim] = [...texts.keys()];
      await store.driver.ownerTransaction((sql) =>
        sql.query('UPDATE memory_chunks SET ciphertext = set_byte(ciphertext, 40, get_byte(ciphertext, 40) # 1) WHERE id = $1', [victim]),
      );
      const before = (await rows(t)).find((r) => r.id === victim)!;

      const report = await run(t);
      assert.deepEqual([report.done, report.total, report.skipped], [2, 3, 1]);
      assert.deepEqual(report.failures, { wrong_context_or_tampered: 1 });
      const after = await rows(t);
      assert.deepEqual(after.find((r) => r.id === victim), before);
      for (const row of after.filter((r) => r.id !== victim)) await assertEmbeddedBy(B, row, texts.get(row.id)!);
      // Still there on the next run, still counted.
      assert.deepEqual([(await run(t)).skipped, (await run(t)).done], [1, 0]);
    });

    it('leaves a row whose text changed while it was being embedded for the next run', async () => {
      const t = tenant('reindex-race');
      const texts = await seed(t, 'erin', ['old text', 'stays the same']);
      const [changed] = [...texts.keys()];
      // The text changes (a PATCH from a replica still on A) between the SELECT and the UPDATE.
      const racing: Embedder = {
        id: B.id,
        dimensions: B.dimensions,
        async embed(batch, opts) {
          const [v] = await A.embed(['new text']);
          await memory.update(t, 'erin', changed!, { text: 'new text', embedding: v!, embedderId: A.id });
          return B.embed(batch, opts);
        },
      };
      const report = await run(t, {}, racing);
      assert.deepEqual([report.done, report.total], [1, 2]);
      const row = (await rows(t)).find((r) => r.id === changed)!;
      await assertEmbeddedBy(A, row, 'new text');

      assert.equal((await run(t)).done, 1);
      await assertEmbeddedBy(B, (await rows(t)).find((r) => r.id === changed)!, 'new text');
    });
  });
}

describe('relay reindex (CLI, embedded store)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-reindex-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const masterKey = randomBytes(32);
  const env = { RELAY_DATA_DIR: join(dir, 'data'), RELAY_MASTER_KEY: masterKey.toString('base64') };

  function relay(args: string[]) {
    const clean = { ...process.env };
    delete clean.DATABASE_URL;
    delete clean.RELAY_MIGRATE_URL;
    const r = spawnSync(process.execPath, ['bin/relay.mjs', ...args], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  async function withStore<T>(fn: (store: Store, memory: SealedMemory) => Promise<T>): Promise<T> {
    const store = new Store(await createPgliteDriver({ dataDir: env.RELAY_DATA_DIR }));
    try {
      await store.migrate();
      return await fn(store, new SealedMemory(store, new Keyring({ provider: new LocalKeyProvider(masterKey), repository: new SqlKeyRepository(store.driver) })));
    } finally {
      await store.close();
    }
  }

  it('re-embeds with the configured embedder, and a second run finds nothing to do', async () => {
    const old = await reversedEmbedder(384);
    await withStore(async (_store, memory) => {
      const texts = ['alpha note', 'beta note', 'gamma note'];
      const vectors = await old.embed(texts);
      await memory.write('acme', 'alice', texts.map((text, i) => ({ text, embedding: vectors[i]!, embedderId: old.id })));
      await memory.write('other', 'alice', [{ text: 'not this tenant', embedding: vectors[0]!, embedderId: old.id }]);
    });

    const first = relay(['reindex', '--tenant', 'acme', '--batch-size', '2']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /tenant acme: re-embedded 3 rows with hash-v1\/d384$/m);
    assert.match(relay(['reindex', '--tenant', 'acme']).stdout, /re-embedded 0 rows/);

    const ids = await withStore(async (store) =>
      (await store.driver.ownerTransaction((sql) => sql.query<{ tenant_id: string; embedder_id: string }>('SELECT tenant_id, embedder_id FROM memory_chunks ORDER BY tenant_id'))).rows,
    );
    assert.deepEqual(
      ids.map((r) => `${r.tenant_id} ${r.embedder_id}`),
      ['acme hash-v1/d384', 'acme hash-v1/d384', 'acme hash-v1/d384', `other ${old.id}`],
    );
  });

  it('exits 2 without --tenant', () => {
    const run = relay(['reindex']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--tenant is required/);
  });
});

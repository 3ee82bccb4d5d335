import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CryptoError, KeyError, Keyring, LocalKeyProvider, type OpenFailureReason } from '../src/crypto/index.ts';
import { createMetrics } from '../src/metrics/index.ts';
import { ownerKeyring, resealTenant, rotateMasterKey, SealedMemory, shredTenant } from '../src/memory/index.ts';
import { SqlKeyRepository, type Store } from '../src/store/index.ts';
import { axis, testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

const SECRET = 'the vault code is 4242, do not tell anyone';

for (const target of targets()) {
  describe(`sealed memory over the key catalog (${target.name})`, () => {
    let store: Store;
    let provider: LocalKeyProvider;
    let memory: SealedMemory;
    let failures: OpenFailureReason[];
    const tenantA = testTenant('seal-a');
    const tenantB = testTenant('seal-b');

    const keyringFor = (p: LocalKeyProvider, previous: LocalKeyProvider[] = []) =>
      new Keyring({ provider: p, previousProviders: previous, repository: new SqlKeyRepository(store.driver), onOpenFailure: (r) => failures.push(r) });
    const vec = (i: number) => axis(store.embeddingDim, i, 0.05);
    const raw = (tenantId: string) =>
      store.driver.ownerTransaction((sql) =>
        sql.query<{ id: string; ciphertext: Buffer; user_hash: Buffer; key_id: string }>(
          'SELECT id, ciphertext, user_hash, key_id FROM memory_chunks WHERE tenant_id = $1 ORDER BY id',
          [tenantId],
        ),
      );

    before(async () => {
      store = await target.open();
      provider = new LocalKeyProvider(randomBytes(32));
      failures = [];
      memory = new SealedMemory(store, keyringFor(provider));
    });

    after(async () => {
      for (const t of [tenantA, tenantB]) await shredTenant(store.driver, null, t);
      await store.close();
    });

    it('stores no plaintext: a raw SELECT of ciphertext and user_hash holds neither the text nor the user id', async () => {
      const ids = await memory.write(tenantA, 'alice', [
        { text: SECRET, embedding: vec(0), embedderId: 'test' },
        { text: 'second note about gardening', embedding: vec(1), embedderId: 'test' },
      ]);
      const rows = (await raw(tenantA)).rows;
      assert.equal(rows.length, 2);
      for (const row of rows) {
        const bytes = Buffer.from(row.ciphertext);
        for (const needle of [SECRET, 'vault code', '4242', 'gardening', 'alice']) {
          assert.equal(bytes.includes(Buffer.from(needle)), false, `ciphertext holds "${needle}"`);
          assert.equal(Buffer.from(row.user_hash).includes(Buffer.from(needle)), false);
        }
        assert.equal(row.key_id, 'dk:1');
      }
      const got = await memory.get(tenantA, 'alice', ids[0]!);
      assert.equal(got?.text, SECRET);
      const found = await memory.search(tenantA, 'alice', vec(0), 5);
      assert.deepEqual(found.hits.map((h) => h.text), [SECRET, 'second note about gardening']);
      assert.deepEqual(found.skipped, []);
    });

    it('never opens a row moved to another user or another tenant, or a ciphertext copied onto another id', async () => {
      const [moved, victim, donor] = await memory.write(tenantA, 'bob', [
        { text: 'bob private one', embedding: vec(10), embedderId: 'test' },
        { text: 'bob private two', embedding: vec(11), embedderId: 'test' },
        { text: 'bob private three', embedding: vec(12), embedderId: 'test' },
      ]);
      const carol = await memory.scope(tenantA, 'carol');
      const evil = await memory.scope(tenantB, 'mallory');
      await memory.write(tenantB, 'mallory', [{ text: 'mallory own', embedding: vec(13), embedderId: 'test' }]);
      failures.length = 0;
      // As an attacker with the owner's SQL would: move one row to carol, one to another tenant,
      // and paste a third one's ciphertext over a row of bob's own.
      await store.driver.ownerTransaction(async (sql) => {
        await sql.query('UPDATE memory_chunks SET user_hash = $2 WHERE id = $1', [moved, carol.userHash]);
        await sql.query('UPDATE memory_chunks SET tenant_id = $2, user_hash = $3 WHERE id = $1', [donor, evil.tenantId, evil.userHash]);
      });
      await store.driver.ownerTransaction((sql) =>
        sql.query('UPDATE memory_chunks SET ciphertext = (SELECT ciphertext FROM memory_chunks WHERE id = $2) WHERE id = $1', [victim, moved]),
      );

      const asCarol = await memory.search(tenantA, 'carol', vec(10), 10);
      assert.deepEqual(asCarol.hits, []);
      assert.deepEqual(asCarol.skipped, [{ id: moved, reason: 'wrong_context_or_tampered' }]);
      const asMallory = await memory.search(tenantB, 'mallory', vec(12), 10);
      assert.deepEqual(asMallory.hits.map((h) => h.text), ['mallory own']);
      assert.equal(asMallory.skipped.length, 1);
      await assert.rejects(memory.get(tenantA, 'bob', victim!), (e: unknown) => e instanceof CryptoError && e.reason === 'wrong_context_or_tampered');
      assert.ok(failures.length >= 3 && failures.every((r) => r === 'wrong_context_or_tampered'), String(failures));
    });

    it('skips a tampered ciphertext in search and says so; the other results still come', async () => {
      const [good, bad] = await memory.write(tenantA, 'dave', [
        { text: 'dave good', embedding: vec(20), embedderId: 'test' },
        { text: 'dave bad', embedding: vec(21), embedderId: 'test' },
      ]);
      await store.driver.ownerTransaction((sql) =>
        // One byte flipped (XOR 0xff), never left as it was: writing 0xff over it was a no-op,
        // and the row opened, whenever the random ciphertext already had 0xff there (1 run in 256).
        sql.query('UPDATE memory_chunks SET ciphertext = set_byte(ciphertext, length(ciphertext) - 21, get_byte(ciphertext, length(ciphertext) - 21) # 255) WHERE id = $1', [bad]),
      );
      const res = await memory.search(tenantA, 'dave', vec(20), 10);
      assert.deepEqual(res.hits.map((h) => h.id), [good]);
      assert.deepEqual(res.skipped, [{ id: bad, reason: 'wrong_context_or_tampered' }]);
      // As the service wires it: the keyring's hook is the relay_open_failures_total counter.
      const metrics = createMetrics({ defaultMetrics: false });
      const wired = new SealedMemory(store, new Keyring({ provider, repository: new SqlKeyRepository(store.driver), onOpenFailure: metrics.openFailure }));
      await wired.search(tenantA, 'dave', vec(20), 10);
      const text = await metrics.registry.getSingleMetricAsString('relay_open_failures_total');
      assert.match(text, /^relay_open_failures_total\{reason="wrong_context_or_tampered"\} 1$/m);
      assert.match(text, /^relay_open_failures_total\{reason="key_shredded"\} 0$/m);
    });

    it('an update changes text and embedding together: either alone is refused, and the row is left as it was', async () => {
      const [id] = await memory.write(tenantA, 'dora', [{ text: 'dora first words', embedding: vec(20), embedderId: 'test' }]);
      const row = async () =>
        (
          await store.driver.ownerTransaction((sql) =>
            sql.query<{ ciphertext: Buffer; embedding: string; vector_key: number | null; version: number }>(
              'SELECT ciphertext, embedding::text AS embedding, vector_key, version FROM memory_chunks WHERE id = $1',
              [id],
            ),
          )
        ).rows[0]!;
      const before = await row();
      await assert.rejects(memory.update(tenantA, 'dora', id!, { embedding: vec(21), embedderId: 'test' }), /a new embedding needs its text/);
      await assert.rejects(memory.update(tenantA, 'dora', id!, { text: 'dora second words' }), /a new text needs its new embedding/);
      assert.deepEqual(await row(), before);
      // Together they go through, and the vector is stored in the space of the key that sealed the text.
      await memory.update(tenantA, 'dora', id!, { text: 'dora second words', embedding: vec(21), embedderId: 'test' });
      const after = await row();
      assert.equal(after.version, before.version + 1);
      assert.notEqual(after.embedding, before.embedding);
      assert.equal(after.vector_key, before.vector_key);
      const found = await memory.search(tenantA, 'dora', vec(21), 1);
      assert.deepEqual(found.hits.map((h) => h.text), ['dora second words']);
    });

    it('key catalog: app_user reads and adds only its scoped tenant\'s keys, and can change or delete none', async () => {
      await memory.write(tenantB, 'erin', [{ text: 'erin note', embedding: vec(30), embedderId: 'test' }]);
      const asTenant = <T>(tenantId: string | null, fn: Parameters<Store['driver']['appTransaction']>[1]) =>
        store.driver.appTransaction(tenantId ? [['relay.tenant_id', tenantId]] : [], fn) as Promise<T>;
      const countFor = (tenantId: string | null) =>
        asTenant<number>(tenantId, async (sql) => (await sql.query('SELECT tenant_id FROM tenant_keys')).rows.length);
      const seen = await asTenant<string[]>(tenantA, async (sql) =>
        (await sql.query<{ tenant_id: string }>('SELECT DISTINCT tenant_id FROM tenant_keys')).rows.map((r) => r.tenant_id),
      );
      assert.deepEqual(seen, [tenantA]);
      assert.equal(await countFor(null), 0);
      assert.equal(await countFor(`${tenantA}' OR '1'='1`), 0);
      const denied = (e: { code?: string }) => e.code === '42501';
      await assert.rejects(asTenant(tenantA, (sql) => sql.query('UPDATE tenant_keys SET provider_id = $1', ['x'])), denied);
      await assert.rejects(asTenant(tenantA, (sql) => sql.query('DELETE FROM tenant_keys')), denied);
      await assert.rejects(asTenant(tenantA, (sql) => sql.query('DELETE FROM tenant_shreds')), denied);
      await assert.rejects(
        asTenant(tenantA, (sql) =>
          sql.query("INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, provider_id) VALUES ($1, 'data', 99, $2, 'x')", [tenantB, randomBytes(60)]),
        ),
        denied,
      );
      await assert.rejects(asTenant(tenantA, (sql) => sql.query("INSERT INTO tenant_shreds (tenant_id) VALUES ($1)", [tenantB])), denied);
      // tenant B's keys are all still there
      assert.ok((await countFor(tenantB)) >= 2);
    });

    it('rotates: new writes use the new version, old rows open; reseal moves every row, resumes after a crash', async () => {
      const before = await memory.write(tenantA, 'frank', Array.from({ length: 5 }, (_, i) => ({ text: `frank ${i}`, embedding: vec(40 + i), embedderId: 'test' })));
      const v = await memory.keyring.rotate(tenantA);
      assert.equal(v, 2);
      const [fresh] = await memory.write(tenantA, 'frank', [{ text: 'frank new', embedding: vec(50), embedderId: 'test' }]);
      const keyIds = new Map((await raw(tenantA)).rows.map((r) => [r.id, r.key_id]));
      assert.equal(keyIds.get(fresh!), 'dk:2');
      assert.equal(keyIds.get(before[0]!), 'dk:1');
      assert.equal((await memory.get(tenantA, 'frank', before[0]!))?.text, 'frank 0');

      const owner = ownerKeyring(store.driver, provider);
      await assert.rejects(
        resealTenant(store.driver, owner, tenantA, {
          batchSize: 2,
          onProgress: (p) => {
            if (p.done > 0) throw new Error('simulated crash');
          },
        }),
        /simulated crash/,
      );
      const midway = (await raw(tenantA)).rows.filter((r) => r.key_id === 'dk:1').length;
      assert.ok(midway > 0, 'the crash left work to do');
      const report = await resealTenant(store.driver, owner, tenantA, { batchSize: 2 });
      assert.equal(report.target, 'dk:2');
      // The rows that do not open (moved, tampered above) are left as they are and reported.
      const left = (await raw(tenantA)).rows.filter((r) => r.key_id !== 'dk:2');
      assert.equal(left.length, report.skipped);
      assert.ok(report.skipped >= 1 && report.failures.wrong_context_or_tampered === report.skipped);
      for (const [i, id] of before.entries()) assert.equal((await memory.get(tenantA, 'frank', id))?.text, `frank ${i}`);
      assert.equal((await resealTenant(store.driver, owner, tenantA)).done, 0, 'a second run has nothing to do');
    });

    it('hmacUser is stable across keyrings over the same catalog and differs across tenants', async () => {
      const again = keyringFor(provider);
      assert.deepEqual(await again.hmacUser(tenantA, 'alice'), await memory.keyring.hmacUser(tenantA, 'alice'));
      assert.notDeepEqual(await again.hmacUser(tenantB, 'alice'), await again.hmacUser(tenantA, 'alice'));
    });

    it('rotates the master key: keys are rewrapped, everything opens under the new one alone', async () => {
      const next = new LocalKeyProvider(randomBytes(32));
      // This run's tenants only: the shared server database also holds other suites' tenants,
      // wrapped by master keys of their own.
      const n = await rotateMasterKey(store.driver, provider, next, [tenantA, tenantB]);
      assert.ok(n >= 4, `rewrapped ${n}`);
      const onlyNew = new SealedMemory(store, keyringFor(next));
      const found = await onlyNew.search(tenantA, 'alice', vec(0), 1);
      assert.equal(found.hits[0]?.text, SECRET);
      const onlyOld = new SealedMemory(store, keyringFor(provider));
      await assert.rejects(onlyOld.search(tenantA, 'alice', vec(0), 1), (e: unknown) => e instanceof KeyError && e.code === 'unknown_provider');
      assert.equal(await rotateMasterKey(store.driver, next, next, [tenantA, tenantB]), 0, 'a second run rewraps nothing');
      provider = next;
      memory = onlyNew;
    });

    it('shreds: once the keys are gone the rows still in the table open for nobody, then they are deleted', async () => {
      const before = (await raw(tenantA)).rows;
      assert.ok(before.length > 0);
      const report = await shredTenant(store.driver, memory.keyring, tenantA, { deleteRows: false });
      assert.ok(report.keysDestroyed >= 3);
      // A keyring that never saw the keys (another replica, a restart) and this one alike.
      for (const keyring of [keyringFor(provider), memory.keyring]) {
        const m = new SealedMemory(store, keyring);
        await assert.rejects(m.scope(tenantA, 'alice'), (e: unknown) => e instanceof CryptoError && e.reason === 'key_shredded');
        const scope = { tenantId: tenantA, userHash: Buffer.from(before[0]!.user_hash) };
        await assert.rejects(
          keyring.openSealed(Buffer.from(before[0]!.ciphertext), { tenantId: tenantA, userHash: scope.userHash, chunkId: before[0]!.id, purpose: 'chunk.text' }),
          (e: unknown) => e instanceof CryptoError && e.reason === 'key_shredded',
        );
      }
      // The catalog keeps nothing of the tenant, and no write can make a key for it again.
      const keys = await store.driver.ownerTransaction((sql) => sql.query('SELECT 1 FROM tenant_keys WHERE tenant_id = $1', [tenantA]));
      assert.equal(keys.rowCount, 0);
      await assert.rejects(memory.write(tenantA, 'alice', [{ text: 'again', embedding: vec(1), embedderId: 'test' }]), (e: unknown) => e instanceof CryptoError);
      assert.equal((await raw(tenantA)).rows.length, before.length, 'nothing written');

      const second = await shredTenant(store.driver, memory.keyring, tenantA);
      assert.equal(second.rowsDeleted, before.length);
      assert.equal((await raw(tenantA)).rows.length, 0);
      // The other tenant is untouched.
      const b = await new SealedMemory(store, keyringFor(provider)).search(tenantB, 'erin', vec(30), 1);
      assert.equal(b.hits[0]?.text, 'erin note');
    });
  });
}

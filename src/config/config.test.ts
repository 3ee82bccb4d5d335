import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from './index.ts';

describe('loadConfig', () => {
  it('defaults to the embedded store on 127.0.0.1:8080', () => {
    const c = loadConfig({});
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.port, 8080);
    assert.deepEqual(c.store, { kind: 'pglite', dataDir: './.relay' });
    assert.equal(c.embeddingDim, 384);
    assert.equal(c.migrateOnStart, true);
  });

  it('switches to the server store when DATABASE_URL is set', () => {
    const c = loadConfig({ DATABASE_URL: 'postgres://app_user@db/relay', RELAY_MIGRATE_URL: 'postgres://relay_owner@db/relay', PORT: '9000' });
    assert.equal(c.port, 9000);
    assert.equal(c.store.kind, 'pg');
    assert.equal(c.store.kind === 'pg' && c.store.migrateUrl, 'postgres://relay_owner@db/relay');
  });

  it('names every bad variable in one error', () => {
    assert.throws(
      () => loadConfig({ PORT: 'eighty', RELAY_EMBED_DIM: '0', DATABASE_URL: 'mysql://x', RELAY_MIGRATE_ON_START: 'maybe' }),
      (err: Error) =>
        ['PORT', 'RELAY_EMBED_DIM', 'DATABASE_URL', 'RELAY_MIGRATE_ON_START'].every((name) => err.message.includes(name)),
    );
  });

  it('treats empty variables as unset', () => {
    assert.equal(loadConfig({ PORT: '', DATABASE_URL: '' }).store.kind, 'pglite');
  });
});

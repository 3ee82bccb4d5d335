import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scopeSettings } from './scope.ts';
import { setConfigStatement } from './sql-client.ts';

describe('setConfigStatement', () => {
  it('makes one parameterised set_config call per setting, transaction-local', () => {
    const s = setConfigStatement([['role', 'app_user'], ['relay.tenant_id', "t' OR '1'='1"]]);
    assert.equal(s.text, 'SELECT set_config($1, $2, true), set_config($3, $4, true)');
    assert.deepEqual(s.params, ['role', 'app_user', 'relay.tenant_id', "t' OR '1'='1"]);
  });

  it('refuses an empty list', () => {
    assert.throws(() => setConfigStatement([]));
  });
});

describe('scopeSettings', () => {
  it('carries the tenant as given and the user hash as hex', () => {
    const userHash = Buffer.alloc(32, 0xab);
    assert.deepEqual(scopeSettings({ tenantId: 'acme', userHash }), [
      ['relay.tenant_id', 'acme'],
      ['relay.user_hash', 'ab'.repeat(32)],
    ]);
  });

  it('rejects empty, oversized and NUL-bearing tenants and short hashes', () => {
    const userHash = Buffer.alloc(32);
    for (const tenantId of ['', 'x'.repeat(129), 'a\0b']) {
      assert.throws(() => scopeSettings({ tenantId, userHash }), { code: 'invalid_scope' });
    }
    assert.throws(() => scopeSettings({ tenantId: 'acme', userHash: Buffer.alloc(8) }), { code: 'invalid_scope' });
  });
});

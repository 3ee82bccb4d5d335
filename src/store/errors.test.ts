import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { createPgliteDriver } from './pglite-driver.ts';
import { isConnectionError, sqlState } from './errors.ts';

/** A real EPIPE: writes to the stdin of a process that exits without reading it. */
async function epipe(): Promise<Error> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: ['pipe', 'ignore', 'ignore'] });
  const failed = once(child.stdin, 'error') as Promise<[Error]>;
  const chunk = Buffer.alloc(64 * 1024);
  const pump = setInterval(() => child.stdin.writable && child.stdin.write(chunk), 5);
  try {
    return (await failed)[0];
  } finally {
    clearInterval(pump);
  }
}

describe('store errors', () => {
  it('EPIPE (five capitals, like a SQLSTATE) is a broken connection, not a SQLSTATE', async () => {
    const err = await epipe();
    assert.equal((err as Error & { code?: string }).code, 'EPIPE');
    assert.equal(sqlState(err), undefined);
    assert.equal(isConnectionError(err), true);
  });

  it("a database error's SQLSTATE is read, and a statement error is not a connection error", async () => {
    const driver = await createPgliteDriver({ dataDir: 'memory://' });
    try {
      const err = await driver.ownerTransaction((sql) => sql.query('SELECT 1/0')).then(
        () => assert.fail('1/0 succeeded'),
        (e: unknown) => e,
      );
      assert.equal(sqlState(err), '22012');
      assert.equal(isConnectionError(err), false);
    } finally {
      await driver.close();
    }
  });
});

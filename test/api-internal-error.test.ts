import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { logOptions } from '../src/api/index.ts';
import type { Embedder } from '../src/embed/index.ts';
import { call, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type LogLine = { level: number; msg: string; reqId?: string; error?: { type?: string; code?: string; message?: string; stack?: string } };

/** An embedder with a bug: what a 500 is made of (not an EmbedderError, which has its own codes). */
function buggy(inner: Embedder): Embedder {
  return {
    id: inner.id,
    dimensions: inner.dimensions,
    embed: async () => {
      throw new TypeError('tensor shape [1, 7] does not match the model input [1, 384]');
    },
  };
}

describe('a 500 logs what an operator needs (message and stack), never the request', () => {
  let api: TestApi;
  const lines: string[] = [];
  const T = testTenant('internal');
  const secretText = 'Olga keeps the vault code 7731 in her left boot.';
  const secretQuery = 'where does olga keep the vault code?';
  let token: string;

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    api = await startTestApi(targets()[0]!, { logger: pino(logOptions('info'), sink), embedder: buggy });
    token = await api.token(T, 'olga');
  });
  after(async () => {
    await api?.close();
  });

  /** The `request failed` line of one request, waiting for the log to come through. */
  async function failedLine(requestId: string): Promise<LogLine> {
    for (let i = 0; i < 100; i++) {
      const found = lines.map((l) => JSON.parse(l) as LogLine).find((l) => l.reqId === requestId && l.msg === 'request failed');
      if (found) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no 'request failed' line for ${requestId} in:\n${lines.join('\n')}`);
  }

  for (const [name, path, body, accept] of [
    ['a write', '/api/v1/memory', { text: secretText, metadata: { vault: 'code-7731' } }, 'application/json'],
    ['a query answered in one body', '/api/v1/memory/query', { query: secretQuery }, 'application/json'],
    ['a query asked as a stream', '/api/v1/memory/query', { query: secretQuery }, 'text/event-stream'],
  ] as const) {
    it(`${name}: the client gets 500 internal and no detail; the log gets type, message and stack`, async () => {
      const requestId = `internal-${lines.length}-${name.length}`;
      const res = await call(`${api.url}${path}`, 'POST', token, body, { accept, 'x-request-id': requestId, 'idempotency-key': 'idem-secret-4411' });
      assert.equal(res.status, 500);
      assert.deepEqual(res.body, { error: { code: 'internal', message: 'internal error' } });

      const line = await failedLine(requestId);
      assert.equal(line.level, 50);
      assert.equal(line.error?.type, 'TypeError');
      assert.equal(line.error?.message, 'tensor shape [1, 7] does not match the model input [1, 384]');
      assert.match(line.error?.stack ?? '', /^TypeError: tensor shape/);
      // The frame of the code that threw: where an operator starts looking.
      assert.match(line.error?.stack ?? '', /at .*api-internal-error\.test\.ts/);

      const log = lines.join('\n');
      for (const secret of [secretText, secretQuery, 'code-7731', 'idem-secret-4411', token]) assert.ok(!log.includes(secret), `the log holds ${secret.slice(0, 20)}…`);
    });
  }
});

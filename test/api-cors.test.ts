// Browsers: RELAY_CORS_ORIGINS lets pages of the named origins call the API (preflight, plain
// answers, SSE streams, errors), others get no CORS headers; and the typed client, bundled for the
// browser, stores and streams from a page of another origin in headless Chromium.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { startTestApi, type TestApi } from './helpers/api.ts';
import { launchChromium } from './helpers/browser.ts';
import { targets } from './helpers/targets.ts';

const [pglite] = targets();

/** A page server standing for the web app's own origin: one HTML page and the bundled client. */
async function pageServer(): Promise<{ server: Server; origin: string }> {
  const bundle = await build({ entryPoints: ['dist/client/index.js'], bundle: true, format: 'esm', platform: 'browser', write: false });
  const js = bundle.outputFiles[0]!.text;
  const server = createServer((req, res) => {
    if (req.url === '/client.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title><p>app</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const preflight = (url: string, origin: string) =>
  fetch(`${url}/api/v1/memory/query`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,idempotency-key' },
  });

describe('CORS is off unless configured', () => {
  let api: TestApi;
  before(async () => (api = await startTestApi(pglite!)));
  after(() => api.close());

  it('no CORS headers for any origin, on a preflight or an answer', async () => {
    const pre = await preflight(api.url, 'https://evil.example');
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
    const res = await fetch(`${api.url}/healthz`, { headers: { origin: 'https://evil.example' } });
    assert.equal(res.headers.get('access-control-allow-origin'), null);
  });
});

describe('RELAY_CORS_ORIGINS', () => {
  let api: TestApi;
  let page: { server: Server; origin: string };
  let browser: Browser;

  before(async () => {
    page = await pageServer();
    api = await startTestApi(pglite!, { limits: { corsOrigins: [page.origin] } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await api?.close();
    page?.server.close();
  });

  it('answers an allowed origin’s preflight with the methods and headers the API needs; another origin gets nothing', async () => {
    const ok = await preflight(api.url, page.origin);
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get('access-control-allow-origin'), page.origin);
    assert.equal(ok.headers.get('access-control-allow-credentials'), null);
    for (const h of ['authorization', 'content-type', 'idempotency-key', 'if-match']) assert.match(ok.headers.get('access-control-allow-headers') ?? '', new RegExp(h));
    for (const m of ['GET', 'POST', 'PATCH', 'DELETE']) assert.match(ok.headers.get('access-control-allow-methods') ?? '', new RegExp(m));
    const other = await preflight(api.url, 'https://evil.example');
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });

  it('a streamed query, and an error, carry the CORS headers (the stream writes its own head)', async () => {
    const token = await api.token('cors', 'cleo');
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', origin: page.origin };
    const stream = await fetch(`${api.url}/api/v1/memory/query`, { method: 'POST', headers: { ...headers, accept: 'text/event-stream' }, body: JSON.stringify({ query: 'x' }) });
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get('access-control-allow-origin'), page.origin);
    assert.match(stream.headers.get('access-control-expose-headers') ?? '', /x-request-id/);
    await stream.text();
    const bad = await fetch(`${api.url}/api/v1/memory/query`, { method: 'POST', headers, body: JSON.stringify({ query: '' }) });
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.get('access-control-allow-origin'), page.origin);
  });

  it('the typed client, bundled for the browser, stores, streams and reports errors from a page of another origin', async () => {
    const token = await api.token('cors', 'cleo');
    const tab = await browser.newPage();
    try {
      await tab.goto(page.origin);
      const out = await tab.evaluate(
        async ({ baseUrl, token, clientUrl }) => {
          const { RelayClient } = (await import(clientUrl)) as typeof import('relay-memory/client');
          const relay = new RelayClient({ baseUrl, token });
          const { ids } = await relay.add({ text: 'Cleo parks the bike behind the bakery.' });
          const hits: string[] = [];
          const stream = relay.query({ query: 'where is the bike?' });
          for await (const hit of stream) hits.push(hit.text);
          const done = await stream.done;
          let error: { name: string; code?: string; status?: number; requestId?: string } | null = null;
          try {
            await relay.get('00000000-0000-4000-8000-000000000000');
          } catch (e) {
            const err = e as { name: string; code?: string; status?: number; requestId?: string };
            error = { name: err.name, code: err.code, status: err.status, requestId: err.requestId };
          }
          return { ids, hits, count: done.count, error, ua: (globalThis as unknown as { navigator: { userAgent: string } }).navigator.userAgent };
        },
        { baseUrl: api.url, token, clientUrl: `${page.origin}/client.js` },
      );
      assert.match(out.ua, /Chrome\//);
      assert.equal(out.ids.length, 1);
      assert.deepEqual(out.hits, ['Cleo parks the bike behind the bakery.']);
      assert.equal(out.count, 1);
      assert.equal(out.error?.code, 'not_found');
      assert.equal(out.error?.status, 404);
      assert.ok(out.error?.requestId, 'the request id header is readable across origins');
    } finally {
      await tab.close();
    }
  });
});

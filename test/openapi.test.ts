import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { ErrorCode } from '../src/api/errors.ts';
import { ChunkAnswer, ErasureAnswer, ListAnswer, QueryAnswer, QueryDone, QueryResult, UpdatedAnswer, WriteAnswer } from '../src/api/responses.ts';
import { LIMITS } from '../src/api/schemas.ts';
import { call, sseQuery, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

/**
 * Every method and path Fastify has registered, from app.printRoutes({commonPrefix: false}):
 * a tree whose lines are `<indent><branch><segment> (METHODS)`, 4 characters per level, a
 * child's path being its parent's plus its segment.
 */
function registeredRoutes(tree: string): Set<string> {
  const routes = new Set<string>();
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/u.exec(line.trimEnd());
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const path = stack.join('');
    for (const method of m[3]?.split(', ') ?? []) routes.add(`${method} ${path}`);
  }
  return routes;
}

/** `/api/v1/memory/:id` as OpenAPI writes it. */
const openapiPath = (path: string) => path.replace(/:(\w+)/g, '{$1}');

for (const target of targets()) {
  describe(`OpenAPI document and reference (${target.name})`, () => {
    let api: TestApi;
    let doc: Json;
    const T = testTenant('openapi');

    before(async () => {
      api = await startTestApi(target);
      // No token: the document and the reference are public.
      const res = await fetch(`${api.url}/openapi.json`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      doc = (await res.json()) as Json;
    });
    after(async () => {
      await api?.close();
    });

    const op = (method: string, path: string): Json => {
      const found = doc.paths?.[path]?.[method];
      assert.ok(found, `${method.toUpperCase()} ${path} is in the document`);
      return found as Json;
    };

    it('is a valid OpenAPI 3.1 document with the package version', async () => {
      const validator = new Validator();
      const res = await validator.validate(structuredClone(doc));
      assert.deepEqual(res.errors ?? [], [], 'no validation errors');
      assert.equal(res.valid, true);
      assert.equal(validator.version, '3.1');
      const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
      assert.equal(doc.info.version, pkg.version);
      // Every $ref points at something in the document.
      const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
      for (const ref of refs) {
        const name = /#\/components\/schemas\/([^"]+)"/.exec(ref)?.[1];
        assert.ok(name && doc.components.schemas[name], ref);
      }
    });

    it('has every route the server registered, with its method, and nothing else', async () => {
      const registered = registeredRoutes(api.server.app.printRoutes({ commonPrefix: false }));
      const documented = new Set<string>();
      for (const [path, ops] of Object.entries(doc.paths as Json)) {
        for (const method of Object.keys(ops as Json)) if (METHODS.includes(method)) documented.add(`${method.toUpperCase()} ${path}`);
      }
      const expected = [...registered]
        // The document and the reference themselves.
        .filter((r) => !/^\w+ \/(docs|openapi\.json)\b/.test(r))
        // Fastify answers HEAD on every GET route on its own; the GET is documented.
        .filter((r) => !(r.startsWith('HEAD ') && registered.has(r.replace(/^HEAD/, 'GET'))))
        .map((r) => openapiPath(r));
      assert.ok(expected.includes('POST /api/v1/memory/query') && expected.includes('GET /healthz'), `routes read from printRoutes: ${expected.join(', ')}`);
      assert.deepEqual([...documented].sort(), expected.sort());
      // Each through documented(): @fastify/swagger lists a route without a schema too, bare.
      for (const [path, ops] of Object.entries(doc.paths as Json)) {
        for (const [method, o] of Object.entries(ops as Json)) {
          assert.ok(o.summary, `${method} ${path} has a summary`);
          for (const [status, r] of Object.entries(o.responses as Json)) assert.notEqual(r.description, 'Default Response', `${method} ${path} ${status}`);
        }
      }
    });

    it('takes its schemas from the zod schemas the handlers parse with', () => {
      const write = op('post', '/api/v1/memory');
      const writeBody = write.requestBody.content['application/json'].schema;
      assert.deepEqual(writeBody.oneOf, [{ required: ['text'] }, { required: ['chunks'] }]);
      assert.equal(writeBody.additionalProperties, false);
      assert.equal(writeBody.properties.chunks.maxItems, LIMITS.chunksPerWrite);
      assert.equal(writeBody.properties.text.maxLength, LIMITS.textChars);
      assert.deepEqual(writeBody.properties.metadata.additionalProperties, { $ref: '#/components/schemas/JsonValue' });
      assert.equal(write.parameters.find((p: Json) => p.in === 'header' && /^idempotency-key$/i.test(p.name))?.schema.pattern, '^[\\x21-\\x7e]{1,255}$');

      const query = op('post', '/api/v1/memory/query');
      const topK = query.requestBody.content['application/json'].schema.properties.top_k;
      assert.deepEqual(topK, { type: 'integer', minimum: 1, maximum: LIMITS.topK, default: 10 });
      assert.deepEqual(query.requestBody.content['application/json'].schema.properties.rerank.enum, ['auto', 'on', 'off']);
      // JSON or a stream of result / done / error events.
      const ok = query.responses['200'].content;
      assert.deepEqual(Object.keys(ok).sort(), ['application/json', 'text/event-stream']);
      assert.deepEqual(ok['text/event-stream'].schema.oneOf.map((e: Json) => e.properties.event.enum[0]), ['result', 'done', 'error']);
      assert.deepEqual(Object.keys(ok['application/json'].schema.properties).sort(), Object.keys(QueryAnswer.shape).sort());

      const list = op('get', '/api/v1/memory').parameters as Json[];
      assert.deepEqual(list.find((p) => p.name === 'limit')?.schema, { type: 'integer', minimum: 1, maximum: LIMITS.listLimit, default: 20 });
      assert.ok(op('patch', '/api/v1/memory/{id}').parameters.some((p: Json) => p.in === 'header' && /^if-match$/i.test(p.name)));
      assert.ok(op('delete', '/api/v1/users/{user_id}/memory').parameters.some((p: Json) => p.in === 'path' && p.name === 'user_id' && p.schema.maxLength === LIMITS.userIdChars));
    });

    it('lists the error codes each route answers, by status, all of them ErrorCode values', () => {
      const codeOf = (o: Json, status: string): string[] => o.responses[status]?.content?.['application/json']?.schema.properties.error?.properties.code.enum ?? [];
      assert.deepEqual(codeOf(op('post', '/api/v1/memory'), '422'), [ErrorCode.IdempotencyKeyReused]);
      assert.deepEqual(codeOf(op('patch', '/api/v1/memory/{id}'), '412'), [ErrorCode.VersionMismatch]);
      assert.deepEqual(codeOf(op('post', '/api/v1/memory/query'), '406'), [ErrorCode.NotAcceptable]);
      assert.ok(codeOf(op('post', '/api/v1/memory/query'), '400').includes(ErrorCode.InvalidFilter));
      assert.ok(codeOf(op('get', '/api/v1/memory'), '400').includes(ErrorCode.InvalidCursor));
      const seen = new Set<string>();
      for (const [path, ops] of Object.entries(doc.paths as Json)) {
        for (const [method, o] of Object.entries(ops as Json)) {
          const api = path.startsWith('/api/');
          if (api) {
            assert.deepEqual(o.security, [{ bearer: [] }], `${method} ${path} needs a token`);
            for (const status of ['401', '403', '429', '500']) assert.ok(o.responses[status], `${method} ${path} documents ${status}`);
          }
          for (const status of Object.keys(o.responses)) for (const code of codeOf(o, status)) seen.add(code);
        }
      }
      assert.deepEqual([...seen].sort(), Object.values(ErrorCode).sort(), 'every code is documented somewhere, and no other');
      assert.deepEqual(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: doc.components.securitySchemes.bearer.description });
    });

    it('has a unique operationId on every operation, a security entry on every one (public ones say [] ), servers and a license', () => {
      const ids: string[] = [];
      for (const [path, ops] of Object.entries(doc.paths as Json)) {
        for (const [method, o] of Object.entries(ops as Json)) {
          assert.match(o.operationId ?? '', /^[a-z][A-Za-z]+$/, `${method} ${path} has a camelCase operationId`);
          ids.push(o.operationId);
          assert.ok(Array.isArray(o.security), `${method} ${path} says who may call it`);
        }
      }
      assert.equal(new Set(ids).size, ids.length, `operationIds are unique: ${ids.join(', ')}`);
      assert.deepEqual(op('get', '/healthz').security, []);
      assert.deepEqual(op('get', '/readyz').security, []);
      assert.ok(doc.servers?.length >= 1);
      assert.equal(doc.info.license.identifier, 'Apache-2.0');
    });

    if (target === targets()[0]) {
      it("passes Redocly's recommended lint, and openapi-typescript's types compile under strict", () => {
        const dir = mkdtempSync(join(tmpdir(), 'relay-openapi-'));
        try {
          const file = join(dir, 'openapi.json');
          writeFileSync(file, JSON.stringify(doc));
          const bin = (name: string) => resolve('node_modules/.bin', name);
          // Telemetry off: the lint must not reach out (and CI may have no network).
          const lint = spawnSync(bin('redocly'), ['lint', '--format=json', '--config', resolve('redocly.yaml'), file], { encoding: 'utf8', env: { ...process.env, REDOCLY_TELEMETRY: 'off' }, cwd: dir, timeout: 60_000 });
          const report = JSON.parse(lint.stdout) as { totals: { errors: number; warnings: number }; problems: { ruleId: string; location: { pointer: string }[] }[] };
          const problems = report.problems.map((p) => `${p.ruleId} ${p.location[0]?.pointer}`);
          assert.deepEqual(problems, [], 'no errors and no warnings');
          assert.deepEqual(report.totals, { ...report.totals, errors: 0, warnings: 0 });
          // redocly.yaml turns operation-4xx-response off for the health routes' sake (200 or 503 to
          // any GET): every other operation still lists a 4xx.
          const without4xx = Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>)
            .flatMap(([path, ops]) => Object.entries(ops).map(([method, o]) => ({ at: `${method} ${path}`, codes: Object.keys(o.responses) })))
            .filter((o) => !o.codes.some((c) => /^4\d\d$/.test(c)))
            .map((o) => o.at);
          assert.deepEqual(without4xx.sort(), ['get /healthz', 'get /readyz']);

          const types = join(dir, 'api.d.ts');
          execFileSync(bin('openapi-typescript'), [file, '-o', types], { stdio: 'pipe', timeout: 60_000 });
          assert.match(readFileSync(types, 'utf8'), /JsonValue: /);
          const tsc = spawnSync(bin('tsc'), ['--strict', '--noEmit', '--target', 'es2022', types], { encoding: 'utf8', cwd: dir, timeout: 60_000 });
          assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }

    it('serves the interactive reference at /docs, its assets from this server', async () => {
      const page = await fetch(`${api.url}/docs`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      const html = await page.text();
      const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
      assert.ok(assets.some((a) => a.endsWith('swagger-ui-bundle.js')) && assets.some((a) => a.endsWith('.css')), assets.join(', '));
      for (const asset of assets) {
        assert.doesNotMatch(asset, /^(?:[a-z]+:)?\/\//i, `${asset} is served here, not from a CDN`);
        const res = await fetch(new URL(asset, `${api.url}/docs`));
        assert.equal(res.status, 200, asset);
        assert.ok((await res.arrayBuffer()).byteLength > 0, asset);
      }
      // The UI reads the same document, and its online validator badge (an outside request) is off.
      const init = await (await fetch(`${api.url}/docs/static/swagger-initializer.js`)).text();
      assert.match(init, /validatorUrl: null/);
      assert.deepEqual(await (await fetch(`${api.url}/docs/json`)).json(), doc);
    });

    it("accepts the document's examples, and answers in the documented shapes", async () => {
      const token = await api.token(T);
      const examples = op('post', '/api/v1/memory').requestBody.content['application/json'].examples as Record<string, { value: Json }>;
      assert.ok(Object.keys(examples).length >= 2);
      const ids: string[] = [];
      for (const { value } of Object.values(examples)) {
        const res = await call(`${api.url}/api/v1/memory`, 'POST', token, value);
        assert.equal(res.status, 201, JSON.stringify(res.body));
        ids.push(...WriteAnswer.parse(res.body).ids);
      }
      const queryExample = op('post', '/api/v1/memory/query').requestBody.content['application/json'].example as Json;
      const found = await call(`${api.url}/api/v1/memory/query`, 'POST', token, queryExample);
      assert.equal(found.status, 200, JSON.stringify(found.body));
      assert.ok(QueryAnswer.parse(found.body).count >= 1);
      const events = await sseQuery(api.url, token, queryExample);
      assert.equal(events.at(-1)?.event, 'done');
      for (const e of events.slice(0, -1)) QueryResult.parse(JSON.parse(e.data));
      QueryDone.parse(JSON.parse(events.at(-1)!.data));

      const one = await call(`${api.url}/api/v1/memory/${ids[0]}?user_id=alice`, 'GET', token);
      ChunkAnswer.parse(one.body);
      const patched = await call(`${api.url}/api/v1/memory/${ids[0]}`, 'PATCH', token, { user_id: 'alice', metadata: { topic: 'garden' } }, { 'if-match': one.headers.get('etag')! });
      UpdatedAnswer.parse(patched.body);
      ListAnswer.parse((await call(`${api.url}/api/v1/memory?user_id=alice&limit=2`, 'GET', token)).body);
      assert.equal(ErasureAnswer.parse((await call(`${api.url}/api/v1/users/alice/memory`, 'DELETE', token)).body).deleted, ids.length);
    });
  });
}

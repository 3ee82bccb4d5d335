import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { ERROR_CATALOG } from '../src/api/error-catalog.ts';
import { shredTenant } from '../src/memory/index.ts';
import { call, startTestApi, type TestApi } from './helpers/api.ts';
import { testTenant } from './helpers/fixtures.ts';
import { targets } from './helpers/targets.ts';

/**
 * Property: no request, however malformed, answers 5xx, and every error is
 * `{"error": {"code", "message"}}` with a code of the catalog at the catalog's status. The routes
 * come from the OpenAPI document (so a new route is covered the day it is documented), each
 * with its path parameters, query parameters, headers and body fields; every part is either
 * plausible or odd. Fixed seeds and run counts: the same requests every run.
 */

type Json = Record<string, unknown>;
type Schema = Json & { type?: string; properties?: Record<string, Schema>; items?: Schema; enum?: unknown[]; minimum?: number; maximum?: number; $ref?: string };

interface Route {
  method: string;
  /** OpenAPI template, `/api/v1/memory/{id}`. */
  path: string;
  pathParams: string[];
  queryParams: string[];
  headers: string[];
  body: Schema | null;
  /** Answers 201: a request to it could store something. */
  creates: boolean;
  /** The error codes the document says it answers (null: not in the document). */
  errors: Set<string> | null;
}

interface Request {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload: string | undefined;
  /** The route it was made for, when it keeps that route's method. */
  route: Route | null;
}

/** The codes of a route's error answers: `error.code`'s enum in each 4xx/5xx JSON schema. */
function documentedCodes(responses: Record<string, Schema> | undefined): Set<string> {
  const codes = new Set<string>();
  for (const [status, answer] of Object.entries(responses ?? {})) {
    if (Number(status) < 400) continue;
    const schema = (answer.content as Record<string, { schema: Schema }> | undefined)?.['application/json']?.schema;
    const code = ((schema?.properties?.error as Schema | undefined)?.properties?.code as Schema | undefined)?.enum ?? [];
    for (const c of code) codes.add(String(c));
  }
  return codes;
}

/** The documented routes, and the two the document leaves out (itself and Swagger UI's files). */
function routesOf(app: FastifyInstance): Route[] {
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, Json>> };
  const out: Route[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters ?? []) as { in: string; name: string }[];
      const body = (op.requestBody as { content?: Record<string, { schema: Schema }> } | undefined)?.content?.['application/json']?.schema ?? null;
      out.push({
        method: method.toUpperCase(),
        path,
        pathParams: params.filter((p) => p.in === 'path').map((p) => p.name),
        queryParams: params.filter((p) => p.in === 'query').map((p) => p.name),
        headers: params.filter((p) => p.in === 'header').map((p) => p.name.toLowerCase()),
        body,
        creates: Object.hasOwn((op.responses ?? {}) as Json, '201'),
        errors: documentedCodes(op.responses as Record<string, Schema> | undefined),
      });
    }
  }
  out.push({ method: 'GET', path: '/openapi.json', pathParams: [], queryParams: [], headers: [], body: null, creates: false, errors: null });
  out.push({ method: 'GET', path: '/docs/{asset}', pathParams: ['asset'], queryParams: [], headers: [], body: null, creates: false, errors: null });
  return out;
}

// ---- the parts of a request ----------------------------------------------------------------

const printable = (max: number) => fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: max });
/** What an HTTP client can put in a header value: visible Latin-1, spaces and tabs. */
const headerValue = fc.oneof(printable(40), fc.string({ unit: fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 10 }), fc.constant('\t x \t'));

const oddStrings = ['', ' ', '\u0000', '\ud800', '\udfff x', 'a\u0007b', '\n', 'é', '👩‍👩‍👧', '%', '../..', 'x'.repeat(300), 'x'.repeat(20_000), '$ne', '__proto__', 'constructor', 'null', '1e309'];
const anyString = fc.oneof({ weight: 3, arbitrary: fc.string({ maxLength: 30 }) }, { weight: 2, arbitrary: fc.constantFrom(...oddStrings) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) });
const oddJson: unknown[] = [null, true, false, 0, -0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, '', [], {}, [[]], { a: { b: { c: {} } } }, { $and: [] }, { __proto__: null, polluted: true }];
const oddValue = fc.oneof(fc.constantFrom(...oddJson), anyString, fc.jsonValue({ maxDepth: 3 }));

/** A placeholder that `serialize` swaps for `depth` levels of `[` (or `{"k":`) written out as text. */
const DEEP = '\u0001deep\u0001';
const deepValue = fc.tuple(fc.constantFrom(9, 31, 33, 1000, 10_000, 100_000), fc.boolean()).map(([n, arrays]) => `${DEEP}${n}:${arrays ? 'a' : 'o'}`);
const deepText = (n: number, arrays: boolean) => (arrays ? '['.repeat(n) + ']'.repeat(n) : '{"k":'.repeat(n) + '1' + '}'.repeat(n));

function serialize(value: unknown): string {
  return JSON.stringify(value).replace(new RegExp(`"${DEEP}(\\d+):([ao])"`, 'g'), (_m, n: string, kind: string) => deepText(Number(n), kind === 'a'));
}

function refName(s: Schema): string | undefined {
  return s.$ref?.split('/').pop();
}

/** A value for one field that may well be valid: of its type, mostly within its bounds. */
function plausible(s: Schema, depth = 0): fc.Arbitrary<unknown> {
  if (s.enum) return fc.constantFrom(...s.enum);
  if (refName(s) === 'JsonValue' || depth > 2) return fc.jsonValue({ maxDepth: 2 });
  switch (s.type) {
    case 'string':
      return fc.oneof({ weight: 3, arbitrary: fc.constantFrom('mia', 'sam', 'A chunk about tea.', 'where is the tea?') }, { weight: 1, arbitrary: anyString });
    case 'integer':
    case 'number':
      return fc.integer({ min: Math.max(s.minimum ?? -1000, -1e9), max: Math.min(s.maximum ?? 1000, 1e9) });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(plausible(s.items ?? {}, depth + 1), { maxLength: 4 });
    default:
      // An object (metadata, filter): small JSON objects, sometimes filter-shaped.
      return fc.oneof(
        fc.dictionary(fc.constantFrom('topic', 'k', 'n', '$and', '$or', 'price'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
        fc.constantFrom({ topic: 'home' }, { n: { $gt: 1 } }, { $or: [{ k: 1 }, { k: { $in: [1, 2] } }] }, { k: { $exists: true } }),
      );
  }
}

/** A field's value: plausible, odd, or nested far too deep. */
const fieldValue = (s: Schema) => fc.oneof({ weight: 5, arbitrary: plausible(s) }, { weight: 2, arbitrary: oddValue }, { weight: 1, arbitrary: deepValue });

/**
 * A JSON object body: one of the schema's examples (a valid body) with some of its fields
 * replaced, left out or added, and now and then an unknown field.
 */
function objectBody(s: Schema): fc.Arbitrary<Json> {
  const examples = ((s.examples ?? []) as Json[]).filter((e) => e && typeof e === 'object');
  const base = examples.length ? fc.constantFrom(...examples, {}) : fc.constant({});
  const KEEP = Symbol('keep');
  const DROP = Symbol('drop');
  const fields = Object.fromEntries(
    Object.entries(s.properties ?? {}).map(([name, f]) => [name, fc.oneof({ weight: 6, arbitrary: fc.constant(KEEP) }, { weight: 1, arbitrary: fc.constant(DROP) }, { weight: 3, arbitrary: fieldValue(f) })]),
  );
  return fc.tuple(base, fc.record(fields), fc.option(fc.dictionary(anyString, oddValue, { maxKeys: 2 }), { freq: 5 })).map(([example, changes, extra]) => {
    const out: Json = { ...(extra ?? {}), ...example };
    for (const [name, v] of Object.entries(changes)) {
      if (v === DROP) delete out[name];
      else if (v !== KEEP) out[name] = v;
    }
    return out;
  });
}

const rawBodies = [
  '',
  ' ',
  'null',
  '[]',
  '"x"',
  '{',
  '{"a":1,}',
  "{'a':1}",
  '{"a":1}{"b":2}',
  '\ufeff{}',
  '{"__proto__":{"polluted":true}}',
  '{"metadata":{"__proto__":{"polluted":true}},"text":"a","query":"a","user_id":"mia"}',
  '{"metadata":{"\\u005f_proto__":{"polluted":true}},"text":"a","user_id":"mia"}',
  '{"metadata":{"constructor":{"prototype":{"polluted":true}}},"text":"a","query":"a","user_id":"mia"}',
  '{"text":"a","user_id":"mia","metadata":{"n":1e400}}',
  '{"text":"\\ud800","user_id":"mia"}',
];

function bodyFor(route: Route): fc.Arbitrary<string | undefined> {
  const schema = route.body ?? { type: 'object', properties: {} };
  const object = objectBody(schema);
  return fc.oneof(
    { weight: 8, arbitrary: object.map(serialize) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.tuple(object, fc.nat(20)).map(([o, cut]) => serialize(o).slice(0, -1 - cut)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.constantFrom(...rawBodies) },
    { weight: 1, arbitrary: fc.constantFrom(9, 33, 10_000, 100_000).map((n) => deepText(n, true)) },
    // Over the 1 MiB body limit.
    { weight: 1, arbitrary: fc.constant(`{"text":"${'x'.repeat(1_100_000)}"}`) },
    { weight: route.body ? 0 : 3, arbitrary: fc.constant(undefined) },
  );
}

const contentTypes = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      undefined,
      'application/json; charset=utf-8',
      'APPLICATION/JSON;CHARSET="UTF-8"',
      'application/json; charset=latin1',
      'text/plain',
      'text/plain; charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/merge-patch+json',
      'application/jsonx',
      '',
      ';;',
      'application/json, text/plain',
      '*/*',
    ),
  },
  { weight: 1, arbitrary: headerValue },
);

const accepts = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'application/json',
      'text/event-stream',
      'text/*',
      'application/*',
      '*/*',
      'text/html',
      'text/event-stream;q=0',
      'text/event-stream;q=0, */*',
      'application/json;q=0.5, text/event-stream;q=0.9',
      'application/json;q=abc',
      '*/*;q=0',
      ',,;q=',
      'image/*;q=1.5',
    ),
  },
  { weight: 1, arbitrary: headerValue },
);

/** Percent-encoding that survives a lone surrogate: it becomes the (invalid) UTF-8 bytes %ED%A0%80. */
const encode = (s: string) => encodeURIComponent(s.replace(/\p{Cs}/gu, '\u0000surrogate\u0000')).replaceAll('%00surrogate%00', '%ED%A0%80');

/** Path segments as a client would send them: encoded, or odd bytes already escaped. */
const oddSegments = ['%', '%zz', '%00', '..', '.', '%2e%2e', '%2F', '%ED%A0%80', '%C0%AF', '%FF', 'a;b', '00000000-0000-0000-0000-000000000000', 'x'.repeat(2500), '%20', '*'];

/** Query values: what a browser form or a script sends. */
const queryValue = fc.oneof(
  fc.constantFrom('', '0', '1', '20', '100', '101', '-1', '1.5', '1e1', 'abc', 'NaN', 'Infinity', '0x10', ' 5 ', '%', '%zz', 'mia', 'sam'),
  anyString.map(encode),
);

/** Cursors: what the list gave out, and what it did not. */
function cursorValue(given: readonly string[]): fc.Arbitrary<string> {
  const b64 = (s: string) => Buffer.from(s).toString('base64url');
  return fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom(...given, 'none') },
    // Of the old shape ([created_at, id]), with timestamps PostgreSQL cannot take.
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom('2026-13-45 25:61:61+00', '2026-02-30 00:00:00+00', '0000-01-01 00:00:00+00', '2026-01-01 00:00:00+99', '2026-01-01 00:00:00+00'), fc.uuid())
        .map((position) => b64(JSON.stringify(position))),
    },
    { weight: 1, arbitrary: fc.constantFrom(b64('[]'), b64('{"a":1}'), 'eyJhIjoxfQ', '!!!', 'x'.repeat(600)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map(b64) },
    { weight: 1, arbitrary: printable(40).map(encode) },
  );
}

// ---- one request ---------------------------------------------------------------------------

interface Context {
  tokens: { service: string; user: string; forged: string };
  existingIds: string[];
  cursors: string[];
}

/** A way a write is certain to be refused, whatever else the request says. */
type Breaker = 'unknown_field' | 'invalid_json' | 'text_plain' | 'no_token' | 'deep' | 'bad_idempotency_key';

function requestFor(route: Route, ctx: Context, breakers: readonly Breaker[]): fc.Arbitrary<Request> {
  const segment = (name: string) =>
    fc.oneof(
      fc.constantFrom(...ctx.existingIds),
      fc.uuid().map(String),
      fc.constantFrom(...oddSegments),
      anyString.map(encode),
      name === 'user_id' ? fc.constantFrom('mia', 'sam', 'mia%0A', 'MIA') : fc.constant('00000000-0000-4000-8000-000000000000'),
    );
  const pathArb = fc.tuple(...route.pathParams.map(segment)).map((values) => route.pathParams.reduce((p, name, i) => p.replace(`{${name}}`, values[i]!), route.path));
  const paramValue = (name: string) =>
    name === 'cursor' ? cursorValue(ctx.cursors) : name === 'user_id' ? fc.oneof(fc.constantFrom('mia', 'sam'), queryValue) : queryValue;
  // Each documented parameter there or not (once, or now and then twice), and rarely one it does not take.
  const queryArb = fc
    .tuple(
      fc.tuple(...route.queryParams.map((name) => fc.option(fc.oneof({ weight: 6, arbitrary: paramValue(name).map((v) => [v]) }, { weight: 1, arbitrary: fc.tuple(paramValue(name), paramValue(name)) }), { freq: 2 }).map((vs) => (vs ?? []).map((v) => `${name}=${v}`)))),
      fc.option(fc.tuple(fc.constantFrom('sort', 'limit[]', '__proto__', '%zz', ''), queryValue).map(([k, v]) => `${k}=${v}`), { freq: 8 }),
    )
    .map(([params, extra]) => {
      const pairs = [...params.flat(), ...(extra === null ? [] : [extra])];
      return pairs.length ? `?${pairs.join('&')}` : '';
    });
  const authArb = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(`Bearer ${ctx.tokens.service}`, `Bearer ${ctx.tokens.user}`) },
    { weight: 1, arbitrary: fc.constantFrom(undefined, 'Bearer', 'Bearer not.a.jwt', `Bearer ${ctx.tokens.forged}`, `Basic ${Buffer.from('a:b').toString('base64')}`, `bearer  ${ctx.tokens.user}`) },
    { weight: 1, arbitrary: headerValue.map((v) => `Bearer ${v}`) },
  );
  const optionalHeader = (values: fc.Arbitrary<string>) => fc.option(values, { freq: 2 });
  const idemArb = optionalHeader(fc.oneof(fc.uuid().map(String), headerValue, fc.constantFrom('has space', '', 'x'.repeat(300), 'é')));
  const ifMatchArb = optionalHeader(fc.oneof(fc.constantFrom('*', '"1"', '1', '"2"', 'W/"1"', '"99999999999"', '"-1"', '"1", "2"', ''), headerValue));
  const hasBody = ['POST', 'PATCH', 'PUT', 'DELETE'];
  return fc
    .record({
      method: fc.oneof({ weight: 9, arbitrary: fc.constant(route.method) }, { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD') }),
      path: pathArb,
      query: queryArb,
      auth: authArb,
      contentType: contentTypes,
      accept: accepts,
      idem: route.headers.includes('idempotency-key') ? idemArb : fc.constant(null),
      ifMatch: route.headers.includes('if-match') ? ifMatchArb : fc.constant(null),
      body: bodyFor(route),
      breaker: breakers.length ? fc.constantFrom(...breakers) : fc.constant(null),
      requestId: fc.option(headerValue, { freq: 4 }),
    })
    .map((r) => {
      const headers: Record<string, string> = {};
      if (r.auth !== undefined) headers.authorization = r.auth;
      if (r.accept !== undefined) headers.accept = r.accept;
      if (r.idem !== null) headers['idempotency-key'] = r.idem;
      if (r.ifMatch !== null) headers['if-match'] = r.ifMatch;
      if (r.requestId !== null) headers['x-request-id'] = r.requestId;
      let payload = hasBody.includes(r.method) ? r.body : undefined;
      if (payload !== undefined && r.contentType !== undefined) headers['content-type'] = r.contentType;
      if (r.method === route.method && r.breaker) {
        if (r.breaker === 'unknown_field') payload = (payload && payload.startsWith('{') && payload.length > 2 ? `{"not_a_field":1,${payload.slice(1)}` : '{"not_a_field":1}');
        if (r.breaker === 'invalid_json') payload = `${payload ?? ''}{`;
        if (r.breaker === 'text_plain') headers['content-type'] = 'text/plain';
        if (r.breaker === 'no_token') delete headers.authorization;
        if (r.breaker === 'deep') payload = `{"text":"a","user_id":"mia","metadata":{"k":${deepText(10_000, true)}}}`;
        if (r.breaker === 'bad_idempotency_key') headers['idempotency-key'] = 'has space';
        if (payload !== undefined && !headers['content-type'] && r.breaker !== 'text_plain') headers['content-type'] = 'application/json';
      }
      return { method: r.method, url: `${r.path}${r.query}`, headers, payload, route: r.method === route.method ? route : null };
    });
}

// ---- what every answer must be -------------------------------------------------------------

const show = (r: Request) => `${r.method} ${r.url.slice(0, 200)} ${JSON.stringify(r.headers).slice(0, 300)} ${(r.payload ?? '').slice(0, 200)}`;

function checkAnswer(req: Request, status: number, contentType: string | undefined, body: string): void {
  assert.ok(status < 500, `${status} ${body.slice(0, 300)} for ${show(req)}`);
  if (status < 400 || req.method === 'HEAD') return;
  assert.match(contentType ?? '', /^application\/json/, `${status} without a JSON error for ${show(req)}`);
  const parsed = JSON.parse(body) as { error?: { code?: string; message?: unknown } };
  const code = parsed.error?.code;
  assert.ok(code !== undefined && Object.hasOwn(ERROR_CATALOG, code), `unknown code ${code} for ${show(req)}`);
  assert.equal(ERROR_CATALOG[code as keyof typeof ERROR_CATALOG].status, status, `${code} answered with ${status}`);
  // What the OpenAPI document promises of the route. not_found can come from the router, before
  // any route (an odd path segment can make the URL name no route at all).
  const documented = req.route?.errors;
  if (documented && code !== 'not_found') assert.ok(documented.has(code!), `${code} is not among ${req.route!.method} ${req.route!.path}'s documented codes, for ${show(req)}`);
  assert.equal(typeof parsed.error?.message, 'string');
  assert.ok((parsed.error!.message as string).length > 0 && (parsed.error!.message as string).length <= 600);
}

for (const target of targets()) {
  describe(`no request, however malformed, answers 5xx (${target.name})`, () => {
    let api: TestApi;
    let app: FastifyInstance;
    let routes: Route[];
    // M gets the malformed requests; S holds rows they must never reach; W takes anything.
    const M = testTenant('prop-malformed');
    const S = testTenant('prop-seeded');
    const W = testTenant('prop-anything');
    const seeded: string[] = [];
    const statuses = new Map<number, number>();

    const counts = async (tenant: string) =>
      (
        await api.store.driver.ownerTransaction((sql) =>
          sql.query<{ n: number; v: number; k: number }>(
            `SELECT count(*)::int AS n, coalesce(sum(version), 0)::int AS v,
                    (SELECT count(*)::int FROM idempotency_keys WHERE tenant_id = $1) AS k
               FROM memory_chunks WHERE tenant_id = $1`,
            [tenant],
          ),
        )
      ).rows[0]!;

    async function run(req: Request): Promise<void> {
      const res = await app.inject({ method: req.method as 'GET', url: req.url, headers: req.headers, ...(req.payload === undefined ? {} : { payload: req.payload }) });
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      checkAnswer(req, res.statusCode, res.headers['content-type'] as string | undefined, res.body);
    }

    async function contextOf(tenant: string): Promise<Context> {
      const list = await call(`${api.url}/api/v1/memory?user_id=sam&limit=1`, 'GET', await api.token(S));
      const cursor = (list.body as { next_cursor: string | null }).next_cursor;
      return {
        tokens: { service: await api.token(tenant), user: await api.token(tenant, 'mia'), forged: await api.forged(tenant, 'mia') },
        existingIds: seeded,
        cursors: cursor ? [cursor] : [],
      };
    }

    before(async () => {
      api = await startTestApi(target);
      app = api.server.app;
      routes = routesOf(app);
      const sam = await api.token(S, 'sam');
      for (const text of ['Sam likes green tea.', 'Sam parks on level 3.', 'Sam has a cat named Miso.']) {
        const res = await call(`${api.url}/api/v1/memory`, 'POST', sam, { text, metadata: { topic: 'sam' } });
        assert.equal(res.status, 201);
        seeded.push(...((res.body as { ids: string[] }).ids));
      }
    });
    after(async () => {
      await api?.close();
    });

    it('the document lists the memory routes (so the property covers them)', () => {
      const names = routes.map((r) => `${r.method} ${r.path}`);
      for (const r of ['POST /api/v1/memory', 'POST /api/v1/memory/query', 'GET /api/v1/memory', 'PATCH /api/v1/memory/{id}', 'DELETE /api/v1/users/{user_id}/memory']) assert.ok(names.includes(r), r);
    });

    it('malformed requests on every route: never 5xx, errors from the catalog, nothing written, no other tenant touched', async () => {
      const before = await counts(S);
      const ctx = await contextOf(M);
      const breakers: Breaker[] = ['unknown_field', 'invalid_json', 'text_plain', 'no_token', 'deep', 'bad_idempotency_key'];
      const request = fc.constantFrom(...routes).chain((route) => requestFor(route, ctx, route.creates ? breakers.filter((b) => b !== 'bad_idempotency_key' || route.headers.includes('idempotency-key')) : []));
      await fc.assert(fc.asyncProperty(request, run), { seed: 1717, numRuns: 6000, endOnFailure: true });
      assert.deepEqual(await counts(M), { n: 0, v: 0, k: 0 }, 'a malformed request wrote to its tenant');
      assert.deepEqual(await counts(S), before, "a request of another tenant changed this one's rows");
      assert.equal(({} as Json).polluted, undefined, 'Object.prototype polluted');
    });

    it('any request (writes may succeed): never 5xx, errors from the catalog', async () => {
      const ctx = await contextOf(W);
      const request = fc.constantFrom(...routes).chain((route) => requestFor(route, ctx, []));
      await fc.assert(fc.asyncProperty(request, run), { seed: 4242, numRuns: 3000, endOnFailure: true });
      assert.equal(({} as Json).polluted, undefined, 'Object.prototype polluted');
    });

    it("a tenant whose keys were shredded: never 5xx, errors from the catalog and the route's document, nothing written", async () => {
      const X = testTenant('prop-shredded');
      const xena = await api.token(X, 'xena');
      for (const text of ['Xena keeps a spare key.', 'Xena likes rain.']) assert.equal((await call(`${api.url}/api/v1/memory`, 'POST', xena, { text, user_id: 'xena' })).status, 201);
      // Keys gone, rows left: what a replica meets between a shred and the row deletion.
      await shredTenant(api.store.driver, api.keyring, X, { deleteRows: false });
      const before = await counts(X);
      const ctx = await contextOf(X);
      const request = fc.constantFrom(...routes).chain((route) => requestFor(route, ctx, []));
      const seen = new Map(statuses);
      await fc.assert(fc.asyncProperty(request, run), { seed: 410, numRuns: 1200, endOnFailure: true });
      const after = await counts(X);
      // Erasure may delete what is left; nothing may be added or changed.
      assert.ok(after.n <= before.n && after.k === 0, `rows ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
      assert.ok((statuses.get(410) ?? 0) > (seen.get(410) ?? 0), 'some requests reached the shredded keys (410)');
    });

    it('the requests reached every kind of answer (the generator is not stuck at one gate)', () => {
      const seen = [...statuses.keys()].sort();
      for (const status of [200, 201, 400, 401, 404, 406, 413, 415]) assert.ok(statuses.has(status), `no ${status} among ${seen.join(', ')}`);
    });
  });
}

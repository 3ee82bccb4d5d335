import { randomBytes, randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { mintToken } from '../../src/auth/index.ts';
import { reindexTenant } from '../../src/memory/index.ts';
import type { Scope, SqlClient } from '../../src/store/index.ts';
import { counter } from '../helpers/api.ts';
import { axis, chunk } from '../helpers/fixtures.ts';
import type { FuzzHarness } from './harness.ts';
import { badAuthorization } from './hostile.ts';
import { filterJson, MARKER, Oracle, scopeKey, type FilterSpec, type ModelRow } from './model.ts';
import type { Actor, Op, Target, WorldSpec } from './ops.ts';

/** One scenario: a fresh world, its operations in order, each checked against the oracle, then an audit. */

class Violation extends Error {}

/** Carries a row count out of a transaction that must roll back. */
class RolledBack extends Error {
  constructor(readonly rowCount: number) {
    super('rolled back on purpose');
  }
}

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Violation(what);
}

const j = (v: unknown) => JSON.stringify(v);

interface Answer {
  status: number;
  text: string;
  json: unknown;
  headers: Headers;
}

/** What the service must do with a request: refuse it, or act for exactly this scope. */
type Expect = { refuse: 401 } | { refuse: 403 } | { tenant: string; user: string };

export class Scenario {
  readonly tenants: string[];
  /** A tenant of the scenario whose keys were shredded: nothing may be added to its catalog. */
  readonly shredded: string;
  readonly users: string[][];
  readonly oracle = new Oracle();
  private readonly hashes = new Map<string, string>();
  private readonly tokens = new Map<string, string>();

  constructor(
    private readonly h: FuzzHarness,
    world: WorldSpec,
    /** Tally of what ran, by `kind status` (printed by the full run, to show what was covered). */
    private readonly stats: Map<string, number> = new Map(),
  ) {
    const tag = randomBytes(4).toString('hex');
    this.tenants = world.tenants.map((t, i) => `fz${tag}-${i}${t.suffix}`);
    this.shredded = `fz${tag}-shredded`;
    this.users = world.tenants.map((t) => t.users);
    h.embedder.active = 'A';
  }

  async run(ops: readonly Op[]): Promise<void> {
    try {
      await this.h.api.store.driver.ownerTransaction((sql) => sql.query('INSERT INTO tenant_shreds (tenant_id) VALUES ($1)', [this.shredded]));
      for (const [i, op] of ops.entries()) {
        try {
          await this.step(op);
        } catch (err) {
          const why = err instanceof Violation ? err.message : `threw ${(err as Error).stack ?? String(err)}`;
          throw new Error(`operation #${i} ${j(op)}: ${why}`);
        }
      }
      await this.audit();
    } finally {
      await this.cleanup();
    }
  }

  // ---- names ---------------------------------------------------------------------------------

  private t(i: number): string {
    return this.tenants[i % this.tenants.length]!;
  }

  private u(tenant: number, user: number): string {
    const pool = this.users[tenant % this.users.length]!;
    return pool[user % pool.length]!;
  }

  private async hash(tenant: string, user: string): Promise<string> {
    const k = scopeKey(tenant, user);
    let h = this.hashes.get(k);
    if (!h) {
      h = (await this.h.api.keyring.hmacUser(tenant, user)).toString('hex');
      this.hashes.set(k, h);
    }
    return h;
  }

  private async scope(tenant: string, user: string): Promise<Scope> {
    return { tenantId: tenant, userHash: Buffer.from(await this.hash(tenant, user), 'hex') };
  }

  /** A row id to aim at: one of the acting scope's when `own` and it has any, else any id ever written. */
  private row(n: number, own: boolean, exp: Expect): string {
    const mine = own && !('refuse' in exp) ? this.oracle.inScope(exp.tenant, exp.user).map((r) => r.id) : [];
    const ids = mine.length > 0 ? mine : this.oracle.everIds;
    return ids.length === 0 ? randomUUID() : ids[n % ids.length]!;
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  private async authorization(a: Actor): Promise<string | null> {
    const tenant = this.t(a.tenant);
    const user = a.user === null ? undefined : this.u(a.tenant, a.user);
    if (a.auth !== 'valid') return badAuthorization(a.auth, this.h.secret, tenant, user, this.t(a.tenant + 1));
    const k = `${tenant}\u0000${user ?? '\u0000service'}`;
    let tok = this.tokens.get(k);
    if (!tok) {
      tok = await mintToken({ secret: this.h.secret, tenant, ...(user === undefined ? { service: true } : { user }), ttlSeconds: 3600 });
      this.tokens.set(k, tok);
    }
    return `Bearer ${tok}`;
  }

  private tally(what: string): void {
    this.stats.set(what, (this.stats.get(what) ?? 0) + 1);
  }

  private async http(method: string, path: string, a: Actor, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const auth = await this.authorization(a);
    const res = await fetch(`${this.h.api.url}${path}`, {
      method,
      headers: { ...(auth ? { authorization: auth } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    this.tally(`${method} ${path.replace(/\?.*$/, '').replace(/memory\/(?!query$)[^/]+$/, 'memory/:id').replace(/users\/.*\/memory$/, 'users/:user/memory')} ${res.status}`);
    let json: unknown = null;
    try {
      json = text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { status: res.status, text, json, headers: res.headers };
  }

  /** What the API must do for `a` naming `target`: the rules of docs/api.md "Whose memory a request touches". */
  private expect(a: Actor, target: Target): Expect {
    if (a.auth !== 'valid') return { refuse: 401 };
    const own = this.t(a.tenant);
    const named = target.namedTenant === 'none' ? undefined : target.namedTenant === 'own' ? own : this.t(target.tenant);
    if (named !== undefined && named !== own) return { refuse: 403 };
    const namedUser = this.u(target.tenant, target.user);
    if (a.user === null) return { tenant: own, user: namedUser };
    const sub = this.u(a.tenant, a.user);
    if (target.omitUser || namedUser === sub) return { tenant: own, user: sub };
    return { refuse: 403 };
  }

  /** user_id / tenant_id as the request carries them (a service token always names its user). */
  private naming(a: Actor, target: Target): { user_id?: string; tenant_id?: string } {
    const out: { user_id?: string; tenant_id?: string } = {};
    if (a.user === null || !target.omitUser) out.user_id = this.u(target.tenant, target.user);
    if (target.namedTenant === 'own') out.tenant_id = this.t(a.tenant);
    if (target.namedTenant === 'target') out.tenant_id = this.t(target.tenant);
    return out;
  }

  private query(params: Record<string, string | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  /**
   * The checks every answer gets: never a 5xx; a refusal is exactly the expected one (a 403
   * counted as a cross-tenant attempt, nothing else counted); no marker of a row outside `allowed`.
   */
  private async common(what: string, ans: Answer, exp: Expect, allowed: readonly ModelRow[], crossBefore: number): Promise<boolean> {
    check(ans.status < 500, `${what}: ${ans.status} ${ans.text.slice(0, 300)}`);
    const markers = Oracle.markersOf(allowed);
    for (const m of ans.text.match(MARKER) ?? []) check(markers.has(m), `${what}: the answer holds ${m}, a row this caller may not see: ${ans.text.slice(0, 300)}`);
    const crossAfter = await counter(this.h.api.metrics, 'relay_cross_tenant_attempts_total');
    if ('refuse' in exp) {
      const code = exp.refuse === 401 ? 'unauthorized' : 'forbidden_scope';
      check(ans.status === exp.refuse && (ans.json as { error?: { code?: string } })?.error?.code === code, `${what}: expected ${exp.refuse} ${code}, got ${ans.status} ${ans.text.slice(0, 300)}`);
      check(crossAfter - crossBefore === (exp.refuse === 403 ? 1 : 0), `${what}: cross-tenant attempts went ${crossBefore} → ${crossAfter}`);
      return false;
    }
    check(crossAfter === crossBefore, `${what}: an allowed request was counted as a cross-tenant attempt`);
    return true;
  }

  private sameRow(what: string, got: { text?: unknown; metadata?: unknown }, r: ModelRow, withText = true): void {
    if (withText) check(got.text === r.text, `${what}: row ${r.id} text ${j(got.text)}, expected ${j(r.text)}`);
    check(isDeepStrictEqual(got.metadata, r.metadata), `${what}: row ${r.id} metadata ${j(got.metadata)}, expected ${j(r.metadata)}`);
  }

  // ---- operations -----------------------------------------------------------------------------

  private async step(op: Op): Promise<void> {
    if ('target' in op && op.target.aligned) op = { ...op, target: { ...op.target, tenant: op.actor.tenant, user: op.actor.user ?? op.target.user } };
    if (op.kind === 'sql_read' || op.kind === 'sql_write' || op.kind === 'sql_catalog' || op.kind === 'tamper') this.tally(`${op.kind} ${'variant' in op ? op.variant : op.how}`);
    if (op.kind === 'reindex') this.tally('reindex');
    const cross = await counter(this.h.api.metrics, 'relay_cross_tenant_attempts_total');
    switch (op.kind) {
      case 'write':
        return this.write(op, cross);
      case 'query':
        return this.queryOp(op, cross);
      case 'get':
        return this.getOp(op, cross);
      case 'patch':
        return this.patchOp(op, cross);
      case 'list':
        return this.listOp(op, cross);
      case 'delete':
        return this.deleteOp(op, cross);
      case 'erase':
        return this.eraseOp(op, cross);
      case 'reindex':
        return this.reindexOp(op);
      case 'sql_read':
        return this.sqlRead(op);
      case 'sql_write':
        return this.sqlWrite(op);
      case 'sql_catalog':
        return this.sqlCatalog(op);
      case 'tamper':
        return this.tamper(op);
    }
  }

  private async write(op: Extract<Op, { kind: 'write' }>, cross: number): Promise<void> {
    const exp = this.expect(op.actor, op.target);
    const scopeK = 'refuse' in exp ? null : scopeKey(exp.tenant, exp.user);
    const idemK = op.idem === null || scopeK === null ? null : `${scopeK}\u0000${op.idem}`;
    const prior = idemK === null ? undefined : this.oracle.idem.get(idemK);
    let body: { chunks: string[]; metadata: Record<string, string> } & Record<string, unknown>;
    if (prior && op.replayPrevious) {
      body = JSON.parse(prior.body);
    } else {
      const marker = this.oracle.nextMarker();
      body = { chunks: op.pieces.map((p) => `${marker} ${p}`), metadata: { tag: marker, [op.meta[0]]: op.meta[1] } };
    }
    const sent = { ...body, ...this.naming(op.actor, op.target) };
    const ans = await this.http('POST', '/api/v1/memory', op.actor, sent, op.idem === null ? {} : { 'idempotency-key': op.idem });
    if (!(await this.common('write', ans, exp, [], cross)) || 'refuse' in exp) return;
    const canonical = j({ chunks: body.chunks, metadata: body.metadata });
    if (prior && prior.body !== canonical) {
      check(ans.status === 422 && (ans.json as { error: { code: string } }).error.code === 'idempotency_key_reused', `write: a reused key with another body got ${ans.status} ${ans.text.slice(0, 200)}`);
      return;
    }
    check(ans.status === 201, `write: expected 201, got ${ans.status} ${ans.text.slice(0, 300)}`);
    const ids = (ans.json as { ids: string[] }).ids;
    if (prior) {
      check(isDeepStrictEqual(ids, prior.ids) && ans.headers.get('idempotent-replayed') === 'true', `write: a replay answered ${j(ids)} (replayed ${ans.headers.get('idempotent-replayed')}), expected ${j(prior.ids)}`);
      return;
    }
    check(ids.length === body.chunks.length && ids.every((id) => !this.oracle.everIds.includes(id)), `write: ids ${j(ids)} are not ${body.chunks.length} new ids`);
    if (op.idem !== null) check(ans.headers.get('idempotent-replayed') === 'false', 'write: a first use of a key says it was replayed');
    const hash = await this.hash(exp.tenant, exp.user);
    const marker = body.metadata.tag!;
    ids.forEach((id, i) => {
      this.oracle.add({ id, tenant: exp.tenant, user: exp.user, hash, text: body.chunks[i]!.trim(), marker, metadata: body.metadata, embedder: this.oracle.active, tampered: false });
    });
    if (idemK !== null) this.oracle.idem.set(idemK, { body: canonical, ids });
  }

  private async queryOp(op: Extract<Op, { kind: 'query' }>, cross: number): Promise<void> {
    const exp = this.expect(op.actor, op.target);
    const body = { query: op.text, top_k: op.topK, rerank: op.rerank, ...(op.filter ? { filter: filterJson(op.filter) } : {}), ...this.naming(op.actor, op.target) };
    const accept = op.sse ? 'text/event-stream' : 'application/json';
    const opensBefore = await counter(this.h.api.metrics, 'relay_open_failures_total');
    const ans = await this.http('POST', '/api/v1/memory/query', op.actor, body, { accept });
    const filter: FilterSpec | null = op.filter;
    const findable = 'refuse' in exp ? [] : this.oracle.searchable(exp.tenant, exp.user, filter);
    if (!(await this.common('query', ans, exp, findable, cross)) || 'refuse' in exp) return;
    check(ans.status === 200, `query: expected 200, got ${ans.status} ${ans.text.slice(0, 300)}`);
    let results: Array<{ id: string; text: string; metadata: unknown }>;
    let skipped: number;
    if (op.sse) {
      const events = parseSse(ans.text);
      check(!events.some((e) => e.event === 'error'), `query: the stream failed: ${ans.text.slice(-300)}`);
      const done = events.filter((e) => e.event === 'done');
      check(done.length === 1 && events.at(-1)?.event === 'done', 'query: the stream did not end in exactly one done');
      results = events.filter((e) => e.event === 'result').map((e) => JSON.parse(e.data));
      const summary = JSON.parse(done[0]!.data) as { count: number; skipped: number };
      check(summary.count === results.length, `query: done says ${summary.count}, the stream had ${results.length}`);
      skipped = summary.skipped;
    } else {
      const b = ans.json as { results: typeof results; count: number; skipped: number };
      results = b.results;
      skipped = b.skipped;
      check(b.count === results.length, 'query: count is not the number of results');
    }
    const unopenable = this.oracle.unopenableCandidates(exp.tenant, exp.user, filter);
    const want = Math.min(op.topK, findable.length);
    check(new Set(results.map((r) => r.id)).size === results.length, 'query: an id came back twice');
    for (const r of results) {
      const m = findable.find((x) => x.id === r.id);
      check(m !== undefined, `query: returned ${r.id}, which this scope may not find (filter ${j(filter)})`);
      this.sameRow('query', r, m);
    }
    check(results.length <= want, `query: ${results.length} results, at most ${want} may match`);
    if (unopenable.length === 0) check(results.length === want, `query: ${results.length} results, expected min(top_k, matching) = ${want}`);
    check(skipped <= unopenable.length, `query: skipped ${skipped}, only ${unopenable.length} rows of the scope do not open`);
    if (skipped > 0) check((await counter(this.h.api.metrics, 'relay_open_failures_total')) >= opensBefore + skipped, 'query: skipped rows were not counted as open failures');
  }

  private async getOp(op: Extract<Op, { kind: 'get' }>, cross: number): Promise<void> {
    const exp = this.expect(op.actor, op.target);
    const id = this.row(op.row, op.own, exp);
    const r = this.oracle.rows.get(id);
    const mine = !('refuse' in exp) && r !== undefined && r.tenant === exp.tenant && r.user === exp.user;
    const opensBefore = await counter(this.h.api.metrics, 'relay_open_failures_total');
    const ans = await this.http('GET', `/api/v1/memory/${id}${this.query(this.naming(op.actor, op.target))}`, op.actor);
    if (!(await this.common('get', ans, exp, mine && !r.tampered ? [r] : [], cross))) return;
    if (mine && !r.tampered) {
      check(ans.status === 200, `get: own row ${id} answered ${ans.status} ${ans.text.slice(0, 200)}`);
      this.sameRow('get', ans.json as ModelRow, r);
      return;
    }
    check(ans.status === 404, `get: ${mine ? 'a row that does not open' : 'a row outside the scope'} answered ${ans.status} ${ans.text.slice(0, 200)}`);
    if (mine) check((await counter(this.h.api.metrics, 'relay_open_failures_total')) > opensBefore, 'get: a row that did not open was not counted');
  }

  private async patchOp(op: Extract<Op, { kind: 'patch' }>, cross: number): Promise<void> {
    const exp = this.expect(op.actor, op.target);
    const id = this.row(op.row, op.own, exp);
    const r = this.oracle.rows.get(id);
    const mine = !('refuse' in exp) && r !== undefined && r.tenant === exp.tenant && r.user === exp.user;
    const metadata = { tag: mine ? r.marker : this.oracle.nextMarker(), [op.meta[0]]: op.meta[1] };
    const ans = await this.http('PATCH', `/api/v1/memory/${id}`, op.actor, { metadata, ...this.naming(op.actor, op.target) });
    if (!(await this.common('patch', ans, exp, mine ? [r] : [], cross))) return;
    if (!mine) {
      check(ans.status === 404, `patch: a row outside the scope answered ${ans.status} ${ans.text.slice(0, 200)}`);
      return;
    }
    // Metadata alone: nothing is opened, so a row that does not open is still the scope's to change.
    check(ans.status === 200, `patch: own row answered ${ans.status} ${ans.text.slice(0, 200)}`);
    r.metadata = metadata;
    this.sameRow('patch', ans.json as ModelRow, r, false);
  }

  private async listOp(op: Extract<Op, { kind: 'list' }>, cross: number): Promise<void> {
    const exp = this.expect(op.actor, op.target);
    const readable = 'refuse' in exp ? [] : this.oracle.readable(exp.tenant, exp.user);
    const ans = await this.http('GET', `/api/v1/memory${this.query({ limit: '100', ...this.naming(op.actor, op.target) })}`, op.actor);
    if (!(await this.common('list', ans, exp, readable, cross)) || 'refuse' in exp) return;
    this.checkList('list', ans, exp.tenant, exp.user);
  }

  private checkList(what: string, ans: Answer, tenant: string, user: string): void {
    check(ans.status === 200, `${what}: expected 200, got ${ans.status} ${ans.text.slice(0, 300)}`);
    const page = ans.json as { items: Array<{ id: string; text: string; metadata: unknown }>; next_cursor: string | null; skipped: number };
    const readable = this.oracle.readable(tenant, user);
    const unreadable = this.oracle.inScope(tenant, user).length - readable.length;
    const got = page.items.map((i) => i.id).sort();
    const want = readable.map((r) => r.id).sort();
    check(isDeepStrictEqual(got, want), `${what} of ${j([tenant, user])}: ids ${j(got)}, expected ${j(want)}`);
    for (const item of page.items) this.sameRow(what, item, readable.find((r) => r.id === item.id)!);
    check(page.skipped === unreadable && page.next_cursor === null, `${what}: skipped ${page.skipped} (expected ${unreadable}), next_cursor ${page.next_cursor}`);
  }

  private async deleteOp(op: Extract<Op, { kind: 'delete' }>, cross: number): Promise<void> {
    const exp = this.expect(op.actor, op.target);
    const id = this.row(op.row, op.own, exp);
    const r = this.oracle.rows.get(id);
    const mine = !('refuse' in exp) && r !== undefined && r.tenant === exp.tenant && r.user === exp.user;
    const ans = await this.http('DELETE', `/api/v1/memory/${id}${this.query(this.naming(op.actor, op.target))}`, op.actor);
    if (!(await this.common('delete', ans, exp, [], cross))) return;
    check(ans.status === (mine ? 204 : 404), `delete: ${mine ? 'own row' : 'a row outside the scope'} answered ${ans.status} ${ans.text.slice(0, 200)}`);
    if (mine) this.oracle.rows.delete(id);
  }

  private async eraseOp(op: Extract<Op, { kind: 'erase' }>, cross: number): Promise<void> {
    const exp = this.expect(op.actor, op.target);
    const { user_id, tenant_id } = this.naming(op.actor, op.target);
    const pathUser = user_id ?? this.u(op.actor.tenant, op.actor.user ?? 0);
    const ans = await this.http('DELETE', `/api/v1/users/${encodeURIComponent(pathUser)}/memory${this.query({ tenant_id })}`, op.actor);
    if (!(await this.common('erase', ans, exp, [], cross)) || 'refuse' in exp) return;
    const want = this.oracle.eraseScope(exp.tenant, exp.user);
    check(ans.status === 200 && (ans.json as { deleted: number }).deleted === want, `erase: answered ${ans.status} ${ans.text.slice(0, 200)}, expected deleted ${want}`);
  }

  private async reindexOp(op: Extract<Op, { kind: 'reindex' }>): Promise<void> {
    if (op.switchEmbedder) {
      this.oracle.active = this.oracle.active === 'A' ? 'B' : 'A';
      this.h.embedder.active = this.oracle.active;
    }
    const tenant = this.t(op.tenant);
    const stale = [...this.oracle.rows.values()].filter((r) => r.tenant === tenant && r.embedder !== this.oracle.active);
    const report = await reindexTenant(this.h.api.store.driver, this.h.api.keyring, this.h.embedder, tenant, { batchSize: 7 });
    const opens = stale.filter((r) => !r.tampered);
    check(
      report.total === stale.length && report.done === opens.length && report.skipped === stale.length - opens.length,
      `reindex of ${j(tenant)}: ${j(report)}, expected total ${stale.length}, done ${opens.length}, skipped ${stale.length - opens.length}`,
    );
    for (const r of opens) r.embedder = this.oracle.active;
  }

  private async sqlRead(op: Extract<Op, { kind: 'sql_read' }>): Promise<void> {
    const tenant = this.t(op.tenant);
    const user = this.u(op.tenant, op.user);
    const scope = await this.scope(tenant, user);
    const store = this.h.api.store;
    const hex = scope.userHash.toString('hex');
    const ids = (rows: Array<{ id: string }>) => rows.map((r) => r.id).sort();
    const expectIds = (rows: ModelRow[]) => rows.map((r) => r.id).sort();
    switch (op.variant) {
      case 'scoped': {
        const own = this.oracle.inScope(tenant, user);
        const foreign = [...this.oracle.rows.values()].filter((r) => !own.includes(r)).map((r) => r.id);
        await store.withScopeSql(scope, async (sql) => {
          const all = await sql.query<{ id: string }>('SELECT id FROM memory_chunks');
          check(isDeepStrictEqual(ids(all.rows), expectIds(own)), `sql scoped SELECT saw ${j(ids(all.rows))}, expected ${j(expectIds(own))}`);
          const outside = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks WHERE tenant_id <> $1 OR user_hash <> $2', [tenant, scope.userHash]);
          check(outside.rows[0]?.n === 0, `sql: SELECT outside the scope counted ${outside.rows[0]?.n}`);
          const byId = await sql.query<{ id: string }>('SELECT id FROM memory_chunks WHERE id = ANY($1::uuid[])', [foreign]);
          check(byId.rows.length === 0, `sql: SELECT of foreign ids by id saw ${j(ids(byId.rows))}`);
          const byPath = await sql.query<{ id: string }>(`SELECT id FROM memory_chunks WHERE metadata ? $1 OR jsonb_path_exists(metadata, '$.** ? (@ like_regex ".*")')`, [op.forged]);
          check(byPath.rows.every((r) => own.some((o) => o.id === r.id)), 'sql: a jsonpath over all metadata reached a foreign row');
          const keys = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys');
          const prefix = `${scopeKey(tenant, user)}\u0000`;
          const wantKeys = [...this.oracle.idem.keys()].filter((k) => k.startsWith(prefix)).length;
          check(keys.rows[0]?.n === wantKeys, `sql: the scope sees ${keys.rows[0]?.n} idempotency keys, it has ${wantKeys}`);
        });
        return;
      }
      case 'other_tenant_same_hash':
      case 'forged_tenant': {
        const forged = op.variant === 'forged_tenant' ? `${tenant}${op.forged}` : this.t(op.tenant + 1);
        const seen = await store.withScopeSql({ tenantId: forged, userHash: scope.userHash }, (sql) => sql.query<{ id: string }>('SELECT id FROM memory_chunks'));
        const want = expectIds(this.oracle.atHash(forged, hex));
        check(isDeepStrictEqual(ids(seen.rows), want), `sql: scope ${j(forged)} with ${j(user)}'s hash of ${j(tenant)} saw ${j(ids(seen.rows))}, expected ${j(want)}`);
        return;
      }
      case 'no_scope':
      case 'bad_hash': {
        const settings: Array<[string, string]> = op.variant === 'no_scope' ? [] : [['relay.tenant_id', tenant], ['relay.user_hash', `${hex}${op.forged}`]];
        const seen = await store.driver
          .appTransaction(settings, (sql) => sql.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_chunks'))
          .then((r) => r.rows[0]?.n ?? 0)
          .catch(() => 0);
        // PostgreSQL's hex decoding skips whitespace: "<hash> " is the same hash, so the same scope.
        const same = op.variant === 'bad_hash' && op.forged.trim() === '';
        const want = same ? this.oracle.inScope(tenant, user).length : 0;
        check(seen === want, `sql: ${op.variant} ${j(op.forged)} saw ${seen} rows, expected ${want}`);
        return;
      }
    }
  }

  /** All (tenant, user) pairs of the world, this one excluded. */
  private async others(tenant: string, user: string): Promise<Array<{ tenant: string; user: string }>> {
    const out: Array<{ tenant: string; user: string }> = [];
    for (const [ti, t] of this.tenants.entries()) for (const u of this.users[ti]!) if (t !== tenant || u !== user) out.push({ tenant: t, user: u });
    return out;
  }

  private async sqlWrite(op: Extract<Op, { kind: 'sql_write' }>): Promise<void> {
    const tenant = this.t(op.tenant);
    const user = this.u(op.tenant, op.user);
    const scope = await this.scope(tenant, user);
    const store = this.h.api.store;
    const own = this.oracle.inScope(tenant, user);
    const others = await this.others(tenant, user);
    const pick = (list: typeof others) => list[op.other % list.length];
    const refused = async (what: string, fn: (sql: SqlClient) => Promise<unknown>) => {
      const outcome = await store.withScopeSql(scope, fn).then(
        (r) => `succeeded (${j((r as { rowCount?: number })?.rowCount)} rows)`,
        () => null,
      );
      check(outcome === null, `sql: ${what} ${outcome}, must be refused`);
    };
    switch (op.variant) {
      case 'insert_other_tenant':
      case 'insert_sibling': {
        const to = pick(op.variant === 'insert_sibling' ? others.filter((o) => o.tenant === tenant) : others.filter((o) => o.tenant !== tenant));
        if (!to) return;
        const toScope = await this.scope(to.tenant, to.user);
        const c = chunk('planted', axis(store.embeddingDim, 3));
        await refused(`INSERT of a row for ${j(to)}`, (sql) =>
          sql.query(
            `INSERT INTO memory_chunks (id, tenant_id, user_hash, ciphertext, key_id, embedding, embedder_id) VALUES ($1, $2, $3, $4, $5, $6::vector, $7)`,
            [c.id, toScope.tenantId, toScope.userHash, c.ciphertext, c.keyId, `[${Array.from(c.embedding).join(',')}]`, c.embedderId],
          ),
        );
        return;
      }
      case 'move_own_to_other':
      case 'move_own_to_sibling': {
        const to = pick(op.variant === 'move_own_to_sibling' ? others.filter((o) => o.tenant === tenant) : others);
        const mine = own[op.row % Math.max(1, own.length)];
        if (!to || !mine) return;
        const toScope = await this.scope(to.tenant, to.user);
        await refused(`UPDATE moving own row ${mine.id} to ${j(to)}`, (sql) =>
          sql.query('UPDATE memory_chunks SET tenant_id = $2, user_hash = $3 WHERE id = $1', [mine.id, toScope.tenantId, toScope.userHash]),
        );
        return;
      }
      case 'move_all_to_other':
      case 'move_all_to_sibling': {
        // Without WHERE the new rows are checked by the UPDATE policy's WITH CHECK alone (a WHERE
        // brings the SELECT policy in, which checks them too). Rolled back whatever happens.
        const to = pick(op.variant === 'move_all_to_sibling' ? others.filter((o) => o.tenant === tenant) : others.filter((o) => o.tenant !== tenant));
        if (!to || own.length === 0) return;
        const toScope = await this.scope(to.tenant, to.user);
        const moved = await store
          .withScopeSql(scope, async (sql) => {
            throw new RolledBack((await sql.query('UPDATE memory_chunks SET tenant_id = $1, user_hash = $2', [toScope.tenantId, toScope.userHash])).rowCount ?? -1);
          })
          .catch((err: unknown) => (err instanceof RolledBack ? err.rowCount : null));
        check(moved === null, `sql: UPDATE without WHERE moved ${moved} of the scope's rows to ${j(to)}, must be refused`);
        return;
      }
      case 'update_all': {
        // Reads no column, so only the UPDATE policy stands between it and the rest of the table.
        const active = this.h.embedder.idOf(this.oracle.active);
        const res = await store.withScopeSql(scope, (sql) => sql.query('UPDATE memory_chunks SET embedder_id = $1', [active]));
        check(res.rowCount === own.length, `sql: UPDATE without WHERE touched ${res.rowCount} rows, the scope has ${own.length}`);
        for (const r of own) r.embedder = this.oracle.active;
        return;
      }
      case 'delete_foreign': {
        const foreign = [...this.oracle.rows.values()].filter((r) => !own.includes(r)).map((r) => r.id);
        const res = await store.withScopeSql(scope, (sql) => sql.query('DELETE FROM memory_chunks WHERE id = ANY($1::uuid[])', [foreign]));
        check(res.rowCount === 0, `sql: DELETE of foreign ids removed ${res.rowCount}`);
        return;
      }
      case 'delete_all': {
        const res = await store.withScopeSql(scope, (sql) => sql.query('DELETE FROM memory_chunks'));
        check(res.rowCount === own.length, `sql: DELETE without WHERE removed ${res.rowCount} rows, the scope had ${own.length}`);
        for (const r of own) this.oracle.rows.delete(r.id);
        return;
      }
    }
  }

  /**
   * The other tables under RLS, as app_user: a tenant reads only its own key catalog and shred
   * mark, adds keys only to its own catalog and never to a shredded one, adds idempotency keys
   * only in its own scope, and erasure's DELETE reaches only the scope's keys (measured in a
   * transaction that rolls back: it reads no column, so only the DELETE policy limits it).
   */
  private async sqlCatalog(op: Extract<Op, { kind: 'sql_catalog' }>): Promise<void> {
    const tenant = this.t(op.tenant);
    const user = this.u(op.tenant, op.user);
    const scope = await this.scope(tenant, user);
    const driver = this.h.api.store.driver;
    const all = [...this.tenants, this.shredded];
    const tenantOnly = (t: string): Array<[string, string]> => [['relay.tenant_id', t]];
    const full: Array<[string, string]> = [['relay.tenant_id', tenant], ['relay.user_hash', scope.userHash.toString('hex')]];
    const refused = async (what: string, settings: Array<[string, string]>, q: string, params: unknown[]) => {
      const outcome = await driver.appTransaction(settings, (sql) => sql.query(q, params)).then(
        (r) => `succeeded (${j(r.rowCount)} rows)`,
        () => null,
      );
      check(outcome === null, `sql: ${what} ${outcome}, must be refused`);
    };
    const newKey = (t: string) => [t, 'data', 1000 + Math.floor(Math.random() * 1_000_000), randomBytes(60), 'fuzz'];
    const keySql = 'INSERT INTO tenant_keys (tenant_id, kind, version, wrapped, provider_id) VALUES ($1, $2, $3, $4, $5)';
    switch (op.variant) {
      case 'key_read': {
        const keys = await driver.appTransaction(tenantOnly(tenant), (sql) => sql.query<{ tenant_id: string }>('SELECT DISTINCT tenant_id FROM tenant_keys WHERE tenant_id = ANY($1::text[])', [all]));
        check(keys.rows.every((r) => r.tenant_id === tenant), `sql: ${j(tenant)} read the key catalog of ${j(keys.rows.map((r) => r.tenant_id))}`);
        const marks = await driver.appTransaction(tenantOnly(tenant), (sql) => sql.query<{ tenant_id: string }>('SELECT tenant_id FROM tenant_shreds WHERE tenant_id = ANY($1::text[])', [all]));
        check(marks.rows.length === 0, `sql: ${j(tenant)} read the shred marks of ${j(marks.rows.map((r) => r.tenant_id))}`);
        return;
      }
      case 'key_for_other_tenant': {
        const other = this.t(op.tenant + 1 + (op.other % Math.max(1, this.tenants.length - 1)));
        if (other === tenant) return;
        await refused(`INSERT of a key into ${j(other)}'s catalog by ${j(tenant)}`, tenantOnly(tenant), keySql, newKey(other));
        return;
      }
      case 'key_for_shredded':
        await refused(`INSERT of a key for the shredded ${j(this.shredded)} by its own scope`, tenantOnly(this.shredded), keySql, newKey(this.shredded));
        return;
      case 'idem_for_other': {
        const to = (await this.others(tenant, user))[op.other % Math.max(1, (await this.others(tenant, user)).length)];
        if (!to) return;
        const toScope = await this.scope(to.tenant, to.user);
        const h = randomBytes(32);
        await refused(`INSERT of an idempotency key for ${j(to)}`, full, 'INSERT INTO idempotency_keys (tenant_id, user_hash, key_hash, request_hash, response) VALUES ($1, $2, $3, $3, $4)', [
          toScope.tenantId,
          toScope.userHash,
          h,
          '{"ids":[]}',
        ]);
        return;
      }
      case 'idem_delete_all': {
        const prefix = `${scopeKey(tenant, user)}\u0000`;
        const own = [...this.oracle.idem.keys()].filter((k) => k.startsWith(prefix)).length;
        const reached = await driver
          .appTransaction(full, async (sql) => {
            throw new RolledBack((await sql.query('DELETE FROM idempotency_keys')).rowCount ?? -1);
          })
          .catch((err: unknown) => {
            if (err instanceof RolledBack) return err.rowCount;
            throw err;
          });
        check(reached === own, `sql: the scope's DELETE FROM idempotency_keys reached ${reached} keys, it has ${own}`);
        return;
      }
    }
  }

  /** As the owner: a ciphertext copied onto another row, or a row moved to another scope. */
  private async tamper(op: Extract<Op, { kind: 'tamper' }>): Promise<void> {
    const sound = [...this.oracle.rows.values()].filter((r) => !r.tampered);
    const src = sound[op.row % Math.max(1, sound.length)];
    if (!src) return;
    const driver = this.h.api.store.driver;
    if (op.how === 'copy_ciphertext') {
      const all = [...this.oracle.rows.values()];
      const dst = all[op.to % all.length]!;
      if (dst.id === src.id) return;
      await driver.ownerTransaction((sql) => sql.query('UPDATE memory_chunks SET ciphertext = (SELECT ciphertext FROM memory_chunks WHERE id = $2) WHERE id = $1', [dst.id, src.id]));
      dst.tampered = true;
      return;
    }
    const tenant = this.t(op.toTenant);
    const user = this.u(op.toTenant, op.toUser);
    if (tenant === src.tenant && user === src.user) return;
    const hash = await this.hash(tenant, user);
    await driver.ownerTransaction((sql) => sql.query('UPDATE memory_chunks SET tenant_id = $2, user_hash = $3 WHERE id = $1', [src.id, tenant, Buffer.from(hash, 'hex')]));
    Object.assign(src, { tenant, user, hash, tampered: true });
  }

  // ---- the end ---------------------------------------------------------------------------------

  /** The whole table for these tenants, as the owner sees it, then every scope's list through the API. */
  private async audit(): Promise<void> {
    const res = await this.h.api.store.driver.ownerTransaction((sql) =>
      sql.query<{ id: string; tenant_id: string; h: string; embedder_id: string }>(
        `SELECT id, tenant_id, encode(user_hash, 'hex') AS h, embedder_id FROM memory_chunks WHERE tenant_id = ANY($1::text[]) ORDER BY id`,
        [this.tenants],
      ),
    );
    const want = [...this.oracle.rows.values()]
      .map((r) => ({ id: r.id, tenant_id: r.tenant, h: r.hash, embedder_id: this.h.embedder.idOf(r.embedder) }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    const got = res.rows.map((r) => ({ id: r.id, tenant_id: r.tenant_id, h: r.h, embedder_id: r.embedder_id }));
    check(isDeepStrictEqual(got, want), `audit: the table holds ${j(got)}, the oracle ${j(want)}`);
    const scopes = new Map<string, { tenant: string; user: string; ti: number }>();
    for (const [ti, t] of this.tenants.entries()) for (const u of this.users[ti]!) scopes.set(scopeKey(t, u), { tenant: t, user: u, ti });
    for (const r of this.oracle.rows.values()) {
      const ti = this.tenants.indexOf(r.tenant);
      scopes.set(scopeKey(r.tenant, r.user), { tenant: r.tenant, user: r.user, ti });
    }
    for (const s of scopes.values()) {
      const actor: Actor = { tenant: s.ti, user: null, auth: 'valid' };
      // Read before the request: a reading taken after it could not see the request counted.
      const cross = await counter(this.h.api.metrics, 'relay_cross_tenant_attempts_total');
      const ans = await this.http('GET', `/api/v1/memory${this.query({ limit: '100', user_id: s.user })}`, actor);
      await this.common('audit list', ans, { tenant: s.tenant, user: s.user }, this.oracle.readable(s.tenant, s.user), cross);
      this.checkList('audit list', ans, s.tenant, s.user);
    }
  }

  private async cleanup(): Promise<void> {
    await this.h.api.store.driver.ownerTransaction(async (sql) => {
      for (const table of ['memory_chunks', 'idempotency_keys', 'tenant_keys', 'tenant_shreds']) {
        await sql.query(`DELETE FROM ${table} WHERE tenant_id = ANY($1::text[])`, [[...this.tenants, this.shredded]]);
      }
    });
    this.h.embedder.active = 'A';
  }
}

/** The events of a whole SSE body. */
export function parseSse(text: string): Array<{ event: string; data: string }> {
  const out: Array<{ event: string; data: string }> = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length > 0 || event !== 'message') out.push({ event, data: data.join('\n') });
  }
  return out;
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { compileFilter, parseFilter, type MetadataFilter, type Scalar } from '../src/store/filter.ts';
import type { Store } from '../src/store/index.ts';
import { targets } from './helpers/targets.ts';

/**
 * Metadata rows as JSON text, so number spellings like 1.0 and 1e2 reach the database
 * as written. Row i has id i.
 */
const ROWS: readonly string[] = [
  /* 0 */ '{"n": 1, "s": "a", "b": true}',
  /* 1 */ '{"n": 1.0, "s": "A"}',
  /* 2 */ '{"n": "1", "s": "b"}',
  /* 3 */ '{"n": true, "b": false}',
  /* 4 */ '{"n": null, "s": null}',
  /* 5 */ '{}',
  /* 6 */ '{"n": [1], "s": ["a", "b"]}',
  /* 7 */ '{"n": {"n": 1}, "s": {}}',
  /* 8 */ '{"n": 2.5, "d": "2024-03-01T00:00:00Z"}',
  /* 9 */ '{"n": -3, "d": "2023-12-31"}',
  /* 10 */ JSON.stringify({ q: 'it\'s "quoted" \\ back', 'a.b': 1, "it's": 'x', 'k"q': 'y' }),
  /* 11 */ JSON.stringify({ q: "'; DROP TABLE memory_chunks; --", ключ: 'значение 🔑', a: { b: 1 } }),
  /* 12 */ '{"n": 10, "s": "é", "d": "2024-03-01"}',
  /* 13 */ '{"n": 1e2, "s": "B"}',
];
const ALL = ROWS.map((_, i) => i);
const except = (...ids: number[]) => ALL.filter((i) => !ids.includes(i));

const CASES: ReadonlyArray<readonly [filter: unknown, ids: number[]]> = [
  // JSON equality: 1 equals 1.0 and 1e0, never "1", true or [1].
  [{ n: 1 }, [0, 1]],
  [{ n: { $eq: 1 } }, [0, 1]],
  [{ n: '1' }, [2]],
  [{ n: true }, [3]],
  [{ n: null }, [4]],
  [{ n: 100 }, [13]],
  [{ n: 2.5 }, [8]],
  [{ s: 'a' }, [0]],
  [{ b: false }, [3]],
  [{ n: { $ne: 1 } }, except(0, 1)],
  [{ b: { $ne: true } }, except(0)],
  [{ n: { $in: [1, '1'] } }, [0, 1, 2]],
  [{ n: { $in: [null, true] } }, [3, 4]],
  [{ s: { $in: ['a', 'zzz'] } }, [0]],
  [{ n: { $nin: [1, '1'] } }, except(0, 1, 2)],
  // Ranges: numbers numerically, strings by code point, never across types.
  [{ n: { $gt: 1 } }, [8, 12, 13]],
  [{ n: { $gte: 1 } }, [0, 1, 8, 12, 13]],
  [{ n: { $lt: 1 } }, [9]],
  [{ n: { $lte: 1 } }, [0, 1, 9]],
  [{ n: { $gt: 0, $lt: 50 } }, [0, 1, 8, 12]],
  [{ n: { $gt: '0' } }, [2]],
  [{ s: { $gt: 'a' } }, [2, 12]],
  [{ s: { $lt: 'a' } }, [1, 13]],
  [{ d: { $gte: '2024-01-01' } }, [8, 12]],
  [{ d: { $lt: '2024' } }, [9]],
  [{ d: { $gt: '2024-03-01' } }, [8]],
  [{ b: { $gt: 0 } }, []],
  // Presence.
  [{ n: { $exists: true } }, except(5, 10, 11)],
  [{ n: { $exists: false } }, [5, 10, 11]],
  [{ zz: { $ne: 1 } }, ALL],
  [{ zz: { $nin: [1, null] } }, ALL],
  [{ zz: null }, []],
  [{ zz: { $in: [null] } }, []],
  [{ zz: { $lte: 'z' } }, []],
  // Keys are names, not paths; quotes and SQL in keys and values are just data.
  [{ 'a.b': 1 }, [10]],
  [{ "it's": 'x' }, [10]],
  [{ 'k"q': 'y' }, [10]],
  [{ q: 'it\'s "quoted" \\ back' }, [10]],
  [{ q: "'; DROP TABLE memory_chunks; --" }, [11]],
  [{ q: { $in: ["'; DROP TABLE memory_chunks; --", "x' OR '1'='1"] } }, [11]],
  [{ ключ: 'значение 🔑' }, [11]],
  [{ "x' OR '1'='1": { $exists: false } }, ALL],
  // And / or.
  [{ $or: [{ n: '1' }, { s: 'A' }] }, [1, 2]],
  [{ n: 1, $or: [{ s: 'a' }, { b: true }] }, [0]],
  [{ n: 1, s: 'A' }, [1]],
  [{ $and: [{ n: { $gte: 1 } }, { $or: [{ s: { $exists: false } }, { s: 'B' }] }] }, [8, 13]],
  [{ $or: [{ $and: [{ n: { $lt: 0 } }] }, { d: { $gt: '2024-02' } }] }, [8, 9, 12]],
  [{ $or: [{ n: 1 }], $and: [{ s: { $ne: 'a' } }] }, [1]],
];

/** Evaluates one compiled filter over `rows` (JSON texts): the predicate's value for each row. */
async function evaluate(store: Store, filter: MetadataFilter, rows: readonly string[]): Promise<Array<boolean | null>> {
  const { sql, params } = compileFilter(filter, 2);
  const res = await store.driver.appTransaction([], (q) =>
    q.query<{ id: number; hit: boolean | null }>(
      `SELECT id, ${sql} AS hit
         FROM (SELECT (r ->> 0)::int AS id, (r ->> 1)::jsonb AS metadata FROM jsonb_array_elements($1::jsonb) AS r) AS t
        ORDER BY id`,
      [JSON.stringify(rows.map((m, i) => [i, m])), ...params],
    ),
  );
  return res.rows.map((r) => r.hit);
}

const matching = (hits: ReadonlyArray<boolean | null>): number[] => hits.flatMap((h, i) => (h === true ? [i] : []));

// ---------------------------------------------------------------------------
// A reference evaluator, written from docs/filters.md, and random rows and filters for it.

type Json = Scalar | Json[] | { [k: string]: Json };

function reference(f: MetadataFilter, row: ReadonlyMap<string, Json>): boolean {
  switch (f.op) {
    case 'and':
      return f.filters.every((g) => reference(g, row));
    case 'or':
      return f.filters.some((g) => reference(g, row));
  }
  const has = row.has(f.key);
  const v = row.get(f.key);
  switch (f.op) {
    case 'exists':
      return has === f.value;
    case 'eq':
      return has && v === f.value;
    case 'ne':
      return !(has && v === f.value);
    case 'in':
      return has && f.values.some((x) => x === v);
    case 'nin':
      return !(has && f.values.some((x) => x === v));
    default: {
      let c: number;
      if (typeof v === 'number' && typeof f.value === 'number') c = v - f.value;
      // UTF-8 byte order is code point order.
      else if (typeof v === 'string' && typeof f.value === 'string') c = Buffer.compare(Buffer.from(v), Buffer.from(f.value));
      else return false;
      return { gt: c > 0, gte: c >= 0, lt: c < 0, lte: c <= 0 }[f.op];
    }
  }
}

const KEYS = ['a', 'b', 'a.b', "it's", 'k"q', '\\', 'ключ', '__proto__', ' '] as const;
const STRINGS = ['', '1', 'a', 'A', 'b', 'B', 'ab', 'é', 'e\u0301', '2024-01-01', '2024-12-31T10:00:00Z', "'; DROP TABLE x; --", 'x"y', 'back\\slash', '🔑', '\uffff', 'true', 'null'];
const NUMBERS = [0, 1, -1, 1.5, 2, 10, -0.5, 1e21, 1e-7, 0.1];

/** A scalar as both its JS value and a JSON spelling of it (integers also as 1.0 / 1e0). */
const storedScalar: fc.Arbitrary<readonly [Json, string]> = fc.oneof(
  fc.constantFrom(...STRINGS).map((s) => [s, JSON.stringify(s)] as const),
  fc.constantFrom(...NUMBERS).map((n) => [n, JSON.stringify(n)] as const),
  fc.constantFrom(1, 2, 10).chain((n) => fc.constantFrom(`${n}.0`, `${n}e0`, `${n}.000`).map((t) => [n, t] as const)),
  fc.constantFrom(true, false, null).map((b) => [b, JSON.stringify(b)] as const),
);
const storedValue: fc.Arbitrary<readonly [Json, string]> = fc.oneof(
  { weight: 4, arbitrary: storedScalar },
  fc.constantFrom<Json>([1], ['a'], [], {}, { a: 1 }, [null]).map((v) => [v, JSON.stringify(v)] as const),
);
const storedRow = fc
  .uniqueArray(fc.tuple(fc.constantFrom(...KEYS), storedValue), { maxLength: 4, selector: ([k]) => k })
  .map((entries) => ({
    map: new Map(entries.map(([k, [v]]) => [k, v])),
    text: `{${entries.map(([k, [, t]]) => `${JSON.stringify(k)}: ${t}`).join(', ')}}`,
  }));

const filterScalar: fc.Arbitrary<Scalar> = fc.oneof(fc.constantFrom(...STRINGS), fc.constantFrom(...NUMBERS), fc.constantFrom(true, false, null));
const rangeValue: fc.Arbitrary<number | string> = fc.oneof(fc.constantFrom(...STRINGS), fc.constantFrom(...NUMBERS));
const filterKey = fc.constantFrom(...KEYS, 'missing');
const condition: fc.Arbitrary<unknown> = fc.oneof(
  filterScalar,
  fc.record({ $eq: filterScalar }),
  fc.record({ $ne: filterScalar }),
  fc.record({ $in: fc.array(filterScalar, { minLength: 1, maxLength: 4 }) }),
  fc.record({ $nin: fc.array(filterScalar, { minLength: 1, maxLength: 4 }) }),
  fc.record({ $gt: rangeValue }),
  fc.record({ $gte: rangeValue }),
  fc.record({ $lt: rangeValue }),
  fc.record({ $lte: rangeValue }),
  fc.record({ $gte: rangeValue, $lt: rangeValue }),
  fc.record({ $exists: fc.boolean() }),
);
const randomFilter: fc.Arbitrary<unknown> = fc.letrec<{ f: unknown }>((tie) => ({
  f: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'random-filter' },
    fc
      .uniqueArray(fc.tuple(filterKey, condition), { minLength: 1, maxLength: 3, selector: ([k]) => k })
      .map((entries) => Object.fromEntries(entries)),
    fc.record({ $or: fc.array(tie('f'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ $and: fc.array(tie('f'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ $or: fc.array(tie('f'), { minLength: 1, maxLength: 3 }), a: condition }),
  ),
})).f;

for (const target of targets()) {
  describe(`metadata filters (${target.name})`, () => {
    let store: Store;
    before(async () => {
      store = await target.open();
    });
    after(async () => {
      await store?.close();
    });

    it('matches each case exactly, with a true/false (never NULL) result for every row', async () => {
      for (const [filter, ids] of CASES) {
        const hits = await evaluate(store, parseFilter(filter), ROWS);
        for (const h of hits) assert.equal(typeof h, 'boolean', `NULL predicate for ${JSON.stringify(filter)}`);
        assert.deepEqual(matching(hits), ids, JSON.stringify(filter));
      }
    });

    it('agrees with the reference evaluator on random rows and filters', async () => {
      await fc.assert(
        fc.asyncProperty(randomFilter, fc.array(storedRow, { minLength: 1, maxLength: 25 }), async (input, rows) => {
          const filter = parseFilter(input);
          const hits = await evaluate(store, filter, rows.map((r) => r.text));
          assert.deepEqual(hits, rows.map((r) => reference(filter, r.map)));
        }),
        { numRuns: 200 },
      );
    });

    it('runs filters of one shape through one prepared statement, whatever their values', async () => {
      const shapes = [
        [{ n: { $gt: 1 } }, [8, 12, 13]],
        [{ n: { $gt: '0' } }, [2]],
        [{ s: { $gt: 'a' } }, [2, 12]],
        [{ d: { $gt: '2024-03-01' } }, [8]],
      ] as const;
      const texts = new Set<string>();
      await store.driver.appTransaction([], async (q) => {
        for (const [input, ids] of shapes) {
          const { sql, params } = compileFilter(parseFilter(input), 2);
          texts.add(sql);
          const res = await q.query<{ id: number }>(
            `SELECT id FROM (SELECT (r ->> 0)::int AS id, (r ->> 1)::jsonb AS metadata FROM jsonb_array_elements($1::jsonb) AS r) AS t
              WHERE ${sql} ORDER BY id`,
            [JSON.stringify(ROWS.map((m, i) => [i, m])), ...params],
            { prepare: true },
          );
          assert.deepEqual(res.rows.map((r) => r.id), ids, JSON.stringify(input));
        }
      });
      assert.equal(texts.size, 1);
    });

    it('serves $eq, $in and $exists from a GIN index on the column', async () => {
      const plans = await store.driver.ownerTransaction(async (q) => {
        await q.query('CREATE TEMP TABLE filter_gin (id int, metadata jsonb NOT NULL) ON COMMIT DROP');
        await q.query(`INSERT INTO filter_gin SELECT i, jsonb_build_object('k', i % 50, 's', 'v' || i) FROM generate_series(1, 5000) AS i`);
        await q.query('CREATE INDEX filter_gin_idx ON filter_gin USING gin (metadata)');
        await q.query('ANALYZE filter_gin');
        await q.query('SET LOCAL enable_seqscan = off');
        const out: string[] = [];
        for (const f of [{ k: 7 }, { k: { $in: [1, 2, 3] } }, { s: { $exists: true } }]) {
          const { sql, params } = compileFilter(parseFilter(f), 1);
          const res = await q.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT id FROM filter_gin WHERE ${sql}`, params);
          out.push(res.rows.map((r) => r['QUERY PLAN']).join('\n'));
        }
        return out;
      });
      for (const plan of plans) assert.match(plan, /Bitmap Index Scan on filter_gin_idx/, plan);
    });
  });
}

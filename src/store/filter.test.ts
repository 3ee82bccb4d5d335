import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileFilter, FilterError, FILTER_LIMITS, parseFilter, type MetadataFilter, type Scalar } from './filter.ts';

/** Asserts that `input` is refused with exactly `message` (which starts with the path). */
function refuses(input: unknown, path: string, message: string | RegExp): void {
  assert.throws(
    () => parseFilter(input),
    (err: unknown) => {
      assert.ok(err instanceof FilterError, `not a FilterError: ${String(err)}`);
      assert.equal(err.code, 'invalid_filter');
      assert.equal(err.path, path);
      assert.ok(err.message.startsWith(`${path}: `), err.message);
      if (typeof message === 'string') assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

const many = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));
const nested = (levels: number): unknown => (levels === 0 ? { a: 1 } : { $and: [nested(levels - 1)] });

describe('parseFilter accepts', () => {
  it('a scalar as shorthand for $eq, and several keys as an and', () => {
    assert.deepEqual(parseFilter({ topic: 'work' }), { op: 'eq', key: 'topic', value: 'work' });
    assert.deepEqual(parseFilter({ a: 1, b: true, c: null }), {
      op: 'and',
      filters: [
        { op: 'eq', key: 'a', value: 1 },
        { op: 'eq', key: 'b', value: true },
        { op: 'eq', key: 'c', value: null },
      ],
    });
  });

  it('every operator, several on one key anded', () => {
    const f = parseFilter({
      p: { $gte: 1, $lt: '2025' },
      q: { $eq: 'x', $ne: null, $in: [1, 'a', false, null], $nin: ['b'], $gt: -1.5, $lte: 0, $exists: false },
    });
    assert.deepEqual(f, {
      op: 'and',
      filters: [
        { op: 'gte', key: 'p', value: 1 },
        { op: 'lt', key: 'p', value: '2025' },
        { op: 'eq', key: 'q', value: 'x' },
        { op: 'ne', key: 'q', value: null },
        { op: 'in', key: 'q', values: [1, 'a', false, null] },
        { op: 'nin', key: 'q', values: ['b'] },
        { op: 'gt', key: 'q', value: -1.5 },
        { op: 'lte', key: 'q', value: 0 },
        { op: 'exists', key: 'q', value: false },
      ],
    });
  });

  it('$and and $or, nested and beside plain keys', () => {
    assert.deepEqual(parseFilter({ a: 1, $or: [{ b: 2 }, { $and: [{ c: 3 }, { d: { $exists: true } }] }] }), {
      op: 'and',
      filters: [
        { op: 'eq', key: 'a', value: 1 },
        {
          op: 'or',
          filters: [
            { op: 'eq', key: 'b', value: 2 },
            { op: 'and', filters: [{ op: 'eq', key: 'c', value: 3 }, { op: 'exists', key: 'd', value: true }] },
          ],
        },
      ],
    });
  });

  it('keys with dots, quotes, spaces and unicode, and __proto__ as a plain key', () => {
    const input = JSON.parse('{"a.b": 1, "it\'s \\"q\\"": 2, "ключ 🔑": 3, "__proto__": 4}') as unknown;
    const f = parseFilter(input);
    assert.equal(f.op, 'and');
    assert.deepEqual(
      f.op === 'and' ? f.filters.map((c) => ('key' in c ? c.key : '')) : [],
      ['a.b', 'it\'s "q"', 'ключ 🔑', '__proto__'],
    );
  });

  it('everything right at the limits', () => {
    parseFilter({ ['k'.repeat(FILTER_LIMITS.keyChars)]: 'v'.repeat(FILTER_LIMITS.stringChars) });
    // Limits count code points, not UTF-16 units.
    parseFilter({ ['🔑'.repeat(FILTER_LIMITS.keyChars)]: '😀'.repeat(FILTER_LIMITS.stringChars) });
    parseFilter({ k: { $in: many(FILTER_LIMITS.inValues, (i) => i) } });
    parseFilter({ $or: many(FILTER_LIMITS.branches, (i) => ({ k: i })) });
    parseFilter(nested(FILTER_LIMITS.depth));
    parseFilter(Object.fromEntries(many(FILTER_LIMITS.conditions, (i) => [`k${i}`, i])));
    parseFilter({ n: Number.MAX_VALUE, m: -Number.MIN_VALUE, z: -0 });
  });
});

describe('parseFilter refuses, naming the path', () => {
  it('a filter that is not a non-empty object', () => {
    refuses(null, 'filter', 'filter: a filter must be an object, got null');
    refuses(5, 'filter', /got a number/);
    refuses('x', 'filter', /got a string/);
    refuses([], 'filter', /got an empty array/);
    refuses([{ a: 1 }], 'filter', /got an array of 1/);
    refuses(undefined, 'filter', /got undefined/);
    refuses(new Date(), 'filter', /got a non-JSON object/);
    refuses(new Map([['a', 1]]), 'filter', /a non-JSON object/);
    // eslint-disable-next-line no-sparse-arrays -- holes are not JSON, but must not slip through as undefined
    refuses({ $or: [, { a: 1 }] }, 'filter.$or[0]', /got undefined/);
    // eslint-disable-next-line no-sparse-arrays
    refuses({ a: { $in: [1, , 2] } }, 'filter.a.$in[1]', /got undefined/);
    refuses({}, 'filter', 'filter: a filter must not be empty');
  });

  it('unknown operators, on a key or beside keys', () => {
    refuses({ $or: [{ a: 1 }, { price: { $regex: 'x' } }] }, 'filter.$or[1].price', 'filter.$or[1].price: unknown operator $regex');
    refuses({ price: { $gt: 1, $where: 'x' } }, 'filter.price', 'filter.price: unknown operator $where');
    refuses({ a: { $EQ: 1 } }, 'filter.a', 'filter.a: unknown operator $EQ');
    refuses({ $not: { a: 1 } }, 'filter', /^filter: unknown operator \$not \(only \$and and \$or/);
    refuses({ $nor: [{ a: 1 }] }, 'filter', /unknown operator \$nor/);
    refuses({ $in: [1] }, 'filter', /^filter: unknown operator \$in here: comparison operators go inside a key/);
    refuses({ a: 1, $and: [{ $eq: 1 }] }, 'filter.$and[0]', /unknown operator \$eq here/);
    refuses({ $: 1 }, 'filter', /unknown operator "\$"/);
    refuses({ a: { $or: [{ b: 1 }] } }, 'filter.a', /^filter\.a: unknown operator \$or here: \$and and \$or combine whole filters/);
  });

  it('objects and arrays as comparison values', () => {
    refuses({ a: [1] }, 'filter.a', /^filter\.a: an array cannot be compared; use \{"\$in"/);
    refuses({ a: [] }, 'filter.a', /an array cannot be compared/);
    refuses({ a: { b: 1 } }, 'filter.a', /^filter\.a: b is not an operator; an object cannot be compared/);
    refuses({ a: { $eq: { b: 1 } } }, 'filter.a.$eq', 'filter.a.$eq: an object cannot be compared; use a string, number, boolean or null');
    refuses({ a: { $ne: [1] } }, 'filter.a.$ne', /an array of 1 cannot be compared/);
    refuses({ a: { $in: [1, [2]] } }, 'filter.a.$in[1]', /cannot be compared/);
    refuses({ a: { $nin: [{}] } }, 'filter.a.$nin[0]', /an object cannot be compared/);
    refuses({ a: { $gt: true } }, 'filter.a.$gt', 'filter.a.$gt: a range takes a number or a string, got a boolean');
    refuses({ a: { $lte: null } }, 'filter.a.$lte', /a range takes a number or a string, got null/);
    refuses({ a: { $lt: [1] } }, 'filter.a.$lt', /a range takes a number or a string/);
    refuses({ a: { $exists: 1 } }, 'filter.a.$exists', 'filter.a.$exists: takes true or false, got a number');
  });

  it('empty and oversized objects and arrays', () => {
    refuses({ a: {} }, 'filter.a', /^filter\.a: an operator object must not be empty/);
    refuses({ a: { $in: [] } }, 'filter.a.$in', /takes a non-empty array of at most 100 values, got an empty array/);
    refuses({ a: { $in: 1 } }, 'filter.a.$in', /got a number/);
    refuses({ a: { $nin: many(101, (i) => i) } }, 'filter.a.$nin', /got an array of 101/);
    refuses({ $and: [] }, 'filter.$and', /^filter\.\$and: \$and takes a non-empty array of at most 50 filters/);
    refuses({ $or: { a: 1 } }, 'filter.$or', /got an object/);
    refuses({ $or: many(51, (i) => ({ k: i })) }, 'filter.$or', /got an array of 51/);
    refuses({ $and: [5] }, 'filter.$and[0]', 'filter.$and[0]: a filter must be an object, got a number');
    refuses({ $and: [{ a: 1 }, {}] }, 'filter.$and[1]', 'filter.$and[1]: a filter must not be empty');
  });

  it('over-deep and over-large filters', () => {
    const deepPath = `filter${'.$and[0]'.repeat(FILTER_LIMITS.depth)}.$and`;
    refuses(nested(FILTER_LIMITS.depth + 1), deepPath, /filters nest deeper than 8 levels of \$and\/\$or/);
    refuses(Object.fromEntries(many(201, (i) => [`k${i}`, i])), 'filter.k200', /at most 200 conditions/);
    // Counted across branches and operators, not per object.
    const wide = { z: 1, $or: many(50, (i) => ({ [`k${i}`]: { $gt: 0, $lt: 1, $ne: 2, $exists: true } })) };
    refuses(wide, 'filter.$or[49].k49', 'filter.$or[49].k49: a filter may hold at most 200 conditions');
    refuses({ a: 'x'.repeat(1025) }, 'filter.a', 'filter.a: a string may have at most 1024 characters');
    refuses({ a: { $in: ['ok', '😀'.repeat(1025)] } }, 'filter.a.$in[1]', /at most 1024 characters/);
  });

  it('bad keys', () => {
    refuses({ '': 1 }, 'filter[""]', 'filter[""]: a metadata key must have 1..128 characters');
    refuses({ ['k'.repeat(129)]: 1 }, `filter[${JSON.stringify(`${'k'.repeat(40)}…`)}]`, /1\.\.128 characters/);
    refuses({ 'a\nb': 1 }, 'filter["a\\nb"]', /must not contain control characters/);
    refuses({ 'a\u0000': 1 }, 'filter["a\\u0000"]', /control characters/);
    refuses({ 'a\u0085': 1 }, 'filter["a\u0085"]', /control characters/);
    refuses({ 'a\ud800': 1 }, 'filter["a\\ud800"]', /lone surrogate/);
  });

  it('bad scalars', () => {
    refuses({ a: Number.NaN }, 'filter.a', 'filter.a: a number must be finite');
    refuses({ a: { $gt: Number.POSITIVE_INFINITY } }, 'filter.a.$gt', /must be finite/);
    refuses({ a: undefined }, 'filter.a', /expected a string, number, boolean or null, got undefined/);
    refuses({ a: 1n }, 'filter.a', /got bigint/);
    refuses({ a: 'x\u0000y' }, 'filter.a', /NUL/);
    refuses({ a: { $eq: '\udc00x' } }, 'filter.a.$eq', /lone surrogate/);
    refuses({ 'a.b': { $foo: 1 } }, 'filter["a.b"]', 'filter["a.b"]: unknown operator $foo');
  });
});

/** JSON values shaped like filters often enough to reach every branch of the parser. */
const filterish: fc.Arbitrary<unknown> = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.jsonValue({ maxDepth: 2 }),
    fc.dictionary(
      fc.oneof(
        fc.constantFrom('$and', '$or', '$eq', '$ne', '$in', '$nin', '$gt', '$gte', '$lt', '$lte', '$exists', '$regex', '$', 'a', 'b.c', ''),
        fc.string({ unit: 'binary', maxLength: 6 }),
      ),
      fc.oneof(tie('node'), fc.array(tie('node'), { maxLength: 4 })),
      { maxKeys: 4 },
    ),
  ),
})).node;

describe('parseFilter on arbitrary JSON', () => {
  it('returns a filter or throws a FilterError, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), filterish, fc.string({ unit: 'binary' }).map((s) => ({ [s]: s }))), (input) => {
        try {
          const f = parseFilter(input);
          // What parses also compiles.
          compileFilter(f, 1);
        } catch (err) {
          if (!(err instanceof FilterError)) throw err;
          assert.equal(err.code, 'invalid_filter');
          assert.ok(err.message.startsWith(`${err.path}: `));
          assert.ok(err.path.startsWith('filter'));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

// ---------------------------------------------------------------------------

const scalar: fc.Arbitrary<Scalar> = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 8 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
);
const key = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }).filter((k) => !k.startsWith('$') && !/\p{Cc}/u.test(k));
const validFilter: fc.Arbitrary<Record<string, unknown>> = fc.letrec<{ f: Record<string, unknown> }>((tie) => ({
  f: fc.oneof(
    // Shallow enough to stay under the 200-condition limit.
    { maxDepth: 2, depthIdentifier: 'valid-filter', withCrossShrink: true },
    fc.dictionary(
      key,
      fc.oneof(
        scalar,
        fc.record(
          {
            $eq: scalar,
            $ne: scalar,
            $in: fc.array(scalar, { minLength: 1, maxLength: 4 }),
            $nin: fc.array(scalar, { minLength: 1, maxLength: 4 }),
            $gt: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })),
            $lte: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })),
            $exists: fc.boolean(),
          },
          { requiredKeys: [] },
        ).filter((o) => Object.keys(o).length > 0),
      ),
      { minKeys: 1, maxKeys: 2 },
    ),
    fc.record({ $or: fc.array(tie('f'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ $and: fc.array(tie('f'), { minLength: 1, maxLength: 3 }), z: scalar }),
  ),
})).f;

/** The same filter with every key and value replaced by a fixed one of the same role. */
function blank(f: MetadataFilter): MetadataFilter {
  switch (f.op) {
    case 'and':
    case 'or':
      return { op: f.op, filters: f.filters.map(blank) };
    case 'in':
    case 'nin':
      return { op: f.op, key: 'k', values: [0] };
    case 'exists':
      return { op: f.op, key: 'k', value: f.value };
    default:
      return { op: f.op, key: 'k', value: 0 };
  }
}

describe('compileFilter', () => {
  it('compiles to the documented SQL', () => {
    const f = parseFilter({ topic: 'work', priority: { $gte: 3 }, $or: [{ tags: { $in: ['a', 'b'] } }, { archived: { $exists: false } }] });
    const { sql, params } = compileFilter(f, 3);
    assert.equal(
      sql,
      '(metadata @> $3::jsonb' +
        " AND CASE jsonb_typeof(metadata -> $4::text) WHEN 'number' THEN jsonb_typeof($5::jsonb) = 'number' AND (metadata -> $4::text) >= $5::jsonb" +
        " WHEN 'string' THEN jsonb_typeof($5::jsonb) = 'string' AND (metadata ->> $4::text) COLLATE \"C\" >= ($5::jsonb #>> '{}') ELSE false END" +
        ' AND (metadata @> ANY (ARRAY(SELECT jsonb_array_elements($6::jsonb))) OR NOT (metadata ? $7::text)))',
    );
    assert.deepEqual(params, ['{"topic":"work"}', 'priority', '3', '[{"tags":"a"},{"tags":"b"}]', 'archived']);
  });

  it('wraps a single condition in parentheses and honours the column', () => {
    assert.deepEqual(compileFilter(parseFilter({ a: { $ne: 1 } }), 1, 't.meta'), { sql: '(NOT (t.meta @> $1::jsonb))', params: ['{"a":1}'] });
    assert.deepEqual(compileFilter(parseFilter({ a: { $exists: true } }), 1), { sql: '(metadata ? $1::text)', params: ['a'] });
  });

  it('keeps __proto__ and other odd keys as plain JSON keys', () => {
    const { params } = compileFilter(parseFilter(JSON.parse('{"__proto__": {"$in": [1]}, "a\\"b": "x"}') as unknown), 1);
    assert.deepEqual(params, ['[{"__proto__":1}]', '{"a\\"b":"x"}']);
  });

  it('refuses a bad column or first parameter', () => {
    const f = parseFilter({ a: 1 });
    for (const column of ['metadata; DROP TABLE x', 'Metadata', '"metadata"', 'a.b.c', '']) {
      assert.throws(() => compileFilter(f, 1, column), RangeError);
    }
    for (const n of [0, -1, 1.5, Number.NaN]) assert.throws(() => compileFilter(f, n), RangeError);
  });

  it('SQL text depends on the shape only; keys and values travel as numbered parameters', () => {
    fc.assert(
      fc.property(validFilter, fc.integer({ min: 1, max: 50 }), (input, first) => {
        const f = parseFilter(input);
        const { sql, params } = compileFilter(f, first);
        assert.equal(sql, compileFilter(blank(f), first).sql);
        for (const p of params) assert.equal(typeof p, 'string');
        const used = new Set([...sql.matchAll(/\$(\d+)::(?:jsonb|text)/g)].map((m) => Number(m[1])));
        assert.deepEqual([...used].sort((a, b) => a - b), params.map((_, i) => first + i));
        // Nothing but placeholders names a parameter, and no quote opens outside the fixed fragments.
        assert.equal(sql.replace(/\$\d+::(jsonb|text)/g, '').includes('$'), false);
        assert.equal(sql.replace(/'(number|string|\{\})'/g, '').includes("'"), false);
      }),
      { numRuns: 500 },
    );
  });
});

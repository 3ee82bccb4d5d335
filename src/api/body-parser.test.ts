import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from './errors.ts';
import { MAX_BODY_DEPTH, nestedTooDeep, parseJsonBody } from './body-parser.ts';
import { negotiate } from './routes/memory-query.ts';

const refused = (text: string) => {
  try {
    parseJsonBody(text);
  } catch (err) {
    assert.ok(err instanceof ApiError);
    return `${err.statusCode} ${err.code} ${err.message}`;
  }
  return 'accepted';
};

describe('JSON bodies: depth bounded on the text, before any parse', () => {
  it('counts [ and { outside strings only, and names the top-level field', () => {
    assert.equal(nestedTooDeep('[[[]]]', 3), undefined);
    assert.deepEqual(nestedTooDeep('[[[[]]]]', 3), { field: null });
    assert.deepEqual(nestedTooDeep('{"a":1,"metadata":{"k":[[]]}}', 3), { field: 'metadata' });
    // Brackets inside strings, escaped quotes and backslashes do not count.
    assert.equal(nestedTooDeep('{"a":"[[[[{{{{\\"[[[[","b\\\\":"\\\\"}', 2), undefined);
    assert.deepEqual(nestedTooDeep('{"a\\"b":[[[]]]}', 3), { field: 'a"b' });
    assert.deepEqual(nestedTooDeep('{"\\u0066ilter":{"k":[[]]}}', 3), { field: 'filter' });
  });

  it('refuses 10,000 and 100,000 levels with a 400 naming the field, and takes the deepest valid body', () => {
    for (const n of [MAX_BODY_DEPTH + 1, 10_000, 100_000]) {
      assert.equal(refused(`{"metadata":{"k":${'['.repeat(n)}${']'.repeat(n)}}}`), '400 validation_failed metadata: nested deeper than 8 levels');
      assert.equal(refused(`{"filter":{"k":${'{"k":'.repeat(n)}1${'}'.repeat(n)}}}`), '400 invalid_filter filter: nested too deep (filters nest at most 8 levels of $and/$or)');
      assert.equal(refused(`${'['.repeat(n)}${']'.repeat(n)}`), `400 validation_failed the body: nested deeper than ${MAX_BODY_DEPTH} levels`);
    }
    // A filter at its deepest legal shape (8 levels of $or, then an operator and a list) passes.
    let filter = '{"k":{"$in":[1]}}';
    for (let i = 0; i < 8; i++) filter = `{"$or":[${filter}]}`;
    assert.equal(refused(`{"query":"q","filter":${filter}}`), 'accepted');
  });

  it('says empty, malformed (with where), and refuses __proto__ keys however they are written', () => {
    assert.equal(refused(' '), '400 invalid_json the JSON body is empty');
    assert.match(refused('{"a":1,'), /^400 invalid_json the body is not valid JSON/);
    assert.equal(refused('{"metadata":{"__proto__":{"x":1}}}'), '400 validation_failed metadata: the key "__proto__" is not allowed');
    assert.equal(refused('{"metadata":{"a":[{"\\u005f_proto__":1}]}}'), '400 validation_failed metadata: the key "__proto__" is not allowed');
    assert.equal(refused('{"filter":{"__proto__":1}}'), '400 invalid_filter filter: the key "__proto__" is not allowed');
    assert.equal(refused('{"__proto__":1}'), '400 validation_failed __proto__: the key "__proto__" is not allowed');
    assert.deepEqual(parseJsonBody('{"metadata":{"constructor":{"prototype":1}}}'), { metadata: { constructor: { prototype: 1 } } });
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });
});

describe('Accept negotiation of the query answer', () => {
  const table: [string | undefined, 'sse' | 'json' | 406][] = [
    [undefined, 'json'],
    ['', 'json'],
    ['*/*', 'json'],
    ['application/json', 'json'],
    ['application/*', 'json'],
    ['text/event-stream', 'sse'],
    ['text/*', 'sse'],
    ['TEXT/*; q=1', 'sse'],
    ['text/event-stream, application/json', 'sse'],
    ['text/*, application/*', 'sse'],
    ['text/*, application/json', 'json'],
    ['text/event-stream;q=0.9, application/json;q=0.5', 'sse'],
    ['text/event-stream;q=0.5, application/json', 'json'],
    ['text/event-stream;q=0, */*', 'json'],
    ['application/json;q=0, */*', 'sse'],
    ['text/*;q=0, text/event-stream', 'sse'],
    ['text/html, */*;q=0.1', 'json'],
    ['text/html', 406],
    ['*/*;q=0', 406],
    ['text/event-stream;q=0, application/json;q=0', 406],
    ['application/json;q=abc', 406],
    ['image/*;q=1.5', 406],
  ];
  for (const [accept, want] of table) {
    it(`${accept === undefined ? '(none)' : JSON.stringify(accept)} → ${want}`, () => {
      if (want === 406) {
        assert.throws(() => negotiate(accept), (err: unknown) => err instanceof ApiError && err.statusCode === 406 && err.code === 'not_acceptable');
      } else {
        assert.equal(negotiate(accept), want);
      }
    });
  }
});

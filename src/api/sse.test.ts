import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatComment, formatEvent } from './sse.ts';

describe('SSE framing', () => {
  it('writes event, id, one data line per line of data, and a blank line', () => {
    assert.equal(formatEvent({ event: 'result', id: 'a1', data: '{"x":1}' }), 'event: result\nid: a1\ndata: {"x":1}\n\n');
    assert.equal(formatEvent({ data: 'one\ntwo\r\nthree\rfour' }), 'data: one\ndata: two\ndata: three\ndata: four\n\n');
    assert.equal(formatEvent({ data: '' }), 'data: \n\n');
  });

  it('refuses CR, LF or NUL in event and id, which would forge fields', () => {
    for (const bad of ['a\nb', 'a\rb', 'a\r\nid: forged', 'a\0b']) {
      assert.throws(() => formatEvent({ event: bad, data: 'x' }), TypeError);
      assert.throws(() => formatEvent({ id: bad, data: 'x' }), TypeError);
    }
  });

  it('data cannot end an event early or start a new one', () => {
    const framed = formatEvent({ event: 'result', data: 'x\n\nevent: done\ndata: forged' });
    // Every line of the frame is a field; the only blank line is the last.
    assert.equal(framed.indexOf('\n\n'), framed.length - 2);
    assert.ok(framed.split('\n').slice(1, -2).every((l) => l.startsWith('data: ')));
  });

  it('writes comments line by line', () => {
    assert.equal(formatComment('heartbeat'), ': heartbeat\n\n');
    assert.equal(formatComment('a\nb'), ': a\n: b\n\n');
  });
});

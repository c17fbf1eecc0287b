import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSseParser, SseLineTooLong, type SseFrame } from './sse-parser.js';

test('fed a character at a time, the frames are those of the whole text; end() flushes the last', () => {
  const text = 'id: 1\ndata: a\r\n\r\nevent: x\rdata: b\r\rdata: c';
  const frames: SseFrame[] = [];
  const parser = createSseParser({ onFrame: (f) => frames.push(f), maxLine: 100 });
  for (const c of text) parser.push(c);
  parser.end();
  assert.deepEqual(frames, [
    { id: '1', event: 'message', data: 'a' },
    { id: '1', event: 'x', data: 'b' },
    { id: '1', event: 'message', data: 'c' },
  ]);
});

test('a line past the limit, however it is chunked, throws SseLineTooLong', () => {
  const parser = createSseParser({ onFrame: () => undefined, maxLine: 10 });
  parser.push('data: 1234');
  assert.throws(() => parser.push('5'), SseLineTooLong);
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createSseParser, type SseFrame } from './sse.js';

describe('the SSE line parser', () => {
  test('frames split anywhere, any line ending, comments and retry', () => {
    const frames: SseFrame[] = [];
    const retries: number[] = [];
    const parser = createSseParser(
      (frame) => frames.push(frame),
      (ms) => retries.push(ms),
    );
    const text =
      'retry: 1000\n\n: keep-alive\n\nid: 7\nevent: peer.joined\ndata: {"seq":7}\n\n' +
      'id: 8\r\ndata: line one\r\ndata:line two\r\n\r\nid: 9\rdata: cr\r\r\n';
    for (const size of [1, 2, 5, text.length]) {
      frames.length = 0;
      for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
      assert.deepEqual(frames, [
        { id: '7', event: 'peer.joined', data: '{"seq":7}' },
        { id: '8', event: 'message', data: 'line one\nline two' },
        { id: '9', event: 'message', data: 'cr' },
      ]);
    }
    assert.deepEqual(retries, [1000, 1000, 1000, 1000]);
  });
});

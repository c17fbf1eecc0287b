import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../server/errors.js';
import { createSseReader, MAX_SSE_LINE, readPiece } from './sse.js';

const bytes = (text: string) => Buffer.from(text, 'utf8');

test('events split anywhere, even inside a character or a CRLF, come out whole', () => {
  const text =
    'data: {"n":1,"s":"é"}\r\n\r\n: a comment\n\ndata: {"n":2}\n\ndata:{"n":3}\r\rdata: [DONE]\n\n';
  const whole = createSseReader().push(bytes(text));
  assert.deepEqual(whole, [{ n: 1, s: 'é' }, { n: 2 }, { n: 3 }]);
  const encoded = bytes(text);
  for (let cut = 1; cut < encoded.length; cut++) {
    const reader = createSseReader();
    const got = [
      ...reader.push(encoded.subarray(0, cut)),
      ...reader.push(encoded.subarray(cut)),
      ...reader.end(),
    ];
    assert.deepEqual(got, whole, `cut at ${cut}`);
  }
});

test('a last event without its blank line is read at the end; non-JSON data is skipped', () => {
  const reader = createSseReader();
  assert.deepEqual(reader.push(bytes('data: nonsense\n\ndata: {"last":true}')), []);
  assert.deepEqual(reader.end(), [{ last: true }]);
});

test('a line longer than the limit, even sent in pieces, is a broken stream', () => {
  const reader = createSseReader();
  const piece = bytes(`data: "${'x'.repeat(64 * 1024)}`);
  assert.throws(
    () => {
      for (let sent = 0; sent <= MAX_SSE_LINE; sent += piece.length) reader.push(piece);
    },
    (error: unknown) => error instanceof HttpError && error.status === 502,
  );
});

test('pieces: delta text, a whole completion, usage, and an error chunk thrown', () => {
  assert.deepEqual(readPiece({ choices: [{ index: 0, delta: { content: 'Hel' } }] }), {
    text: 'Hel',
    usage: undefined,
  });
  assert.deepEqual(
    readPiece({
      choices: [{ message: { role: 'assistant', content: 'Whole' } }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    }),
    { text: 'Whole', usage: { prompt_tokens: 3, completion_tokens: 2 } },
  );
  assert.deepEqual(
    readPiece({ choices: [], usage: { prompt_tokens: -1, completion_tokens: 'x' } }),
    {
      text: '',
      usage: undefined,
    },
  );
  assert.deepEqual(readPiece({ choices: [{ delta: { content: null } }], usage: null }), {
    text: '',
    usage: undefined,
  });
  assert.deepEqual(readPiece('nonsense'), { text: '', usage: undefined });
  assert.throws(
    () => readPiece({ error: { message: 'model crashed', type: 'server_error' } }),
    (error: unknown) =>
      error instanceof HttpError &&
      error.code === 'upstream_error' &&
      error.message === 'model crashed',
  );
  assert.throws(() => readPiece({ error: 'out of memory' }), /out of memory/);
});

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HttpError } from '../server/errors.js';
import { fromChatCompletion } from './response.js';
import {
  createSseDecoder,
  createStreamTranslator,
  MAX_SSE_LINE,
  parseSseChunks,
  type StreamTranslatorOptions,
} from './stream.js';

type Block =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'tool_use'; id: string; name: string; input: unknown; json: string };

interface Accumulated {
  id: string;
  content: Block[];
  stop_reason: unknown;
  stop_sequence: unknown;
  usage: Record<string, unknown>;
  error?: unknown;
}

type Data = Record<string, unknown>;
const get = (value: unknown, key: string): unknown => (value as Data)[key];

/**
 * Closes a JSON prefix the simple way (close the string, give a dangling key or colon a
 * null value, drop a trailing comma, close the brackets) and parses it: what the SDK's
 * partial JSON parser needs every input_json_delta prefix to allow.
 */
function completesToJson(prefix: string): boolean {
  let inString = false;
  let escape = false;
  let stringStart = -1;
  const closers: string[] = [];
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix[i];
    if (inString) {
      if (escape) escape = false;
      else if (c === '\\') escape = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      stringStart = i;
    } else if (c === '{') closers.push('}');
    else if (c === '[') closers.push(']');
    else if (c === '}' || c === ']') closers.pop();
  }
  if (escape) return false;
  let text = prefix;
  const inObject = closers[closers.length - 1] === '}';
  const before = (at: number) => text.slice(0, at).trimEnd().slice(-1);
  if (inString) {
    text += '"';
    if (inObject && ['{', ','].includes(before(stringStart))) text += ':null';
  } else if (/:\s*$/.test(text)) {
    text += 'null';
  } else if (inObject && /"\s*$/.test(text)) {
    const open = text.lastIndexOf('"', text.trimEnd().length - 2);
    if (['{', ','].includes(before(open))) text += ':null';
  }
  text = text.replace(/,\s*$/, '') + closers.reverse().join('');
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Replays SSE text the way Anthropic's SDK accumulates a message, asserting the grammar. */
function accumulate(text: string): Accumulated {
  assert.ok(text.endsWith('\n\n'), 'frames end with a blank line');
  const frames = text
    .slice(0, -2)
    .split('\n\n')
    .map((frame) => {
      const match = /^event: ([a-z_]+)\ndata: ([^\n]*)$/.exec(frame);
      assert.ok(match, `frame shape: ${frame}`);
      const data = JSON.parse(match[2] ?? '') as Data;
      assert.equal(data.type, match[1]);
      return data;
    });
  const first = frames[0];
  assert.ok(first);
  if (first.type === 'error') {
    assert.equal(frames.length, 1);
    return {
      id: '',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: {},
      error: first.error,
    };
  }
  assert.equal(first.type, 'message_start');
  assert.equal(frames[1]?.type, 'ping');
  const message = first.message as Data;
  assert.deepEqual(message.content, []);
  const result: Accumulated = {
    id: message.id as string,
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: { ...(message.usage as Data) },
  };
  let open: number | null = null;
  let ended = false;
  for (const frame of frames.slice(2)) {
    assert.equal(ended, false, `nothing after the end: ${frame.type as string}`);
    switch (frame.type) {
      case 'content_block_start': {
        assert.equal(open, null, 'blocks do not overlap');
        assert.equal(frame.index, result.content.length, 'indexes count up from 0');
        const block = frame.content_block as Data;
        if (block.type === 'tool_use') {
          assert.match(block.id as string, /^[a-zA-Z0-9_-]+$/);
          assert.deepEqual(block.input, {});
          result.content.push({
            type: 'tool_use',
            id: block.id as string,
            name: block.name as string,
            input: {},
            json: '',
          });
        } else if (block.type === 'text') {
          assert.deepEqual(block, { type: 'text', text: '' });
          result.content.push({ type: 'text', text: '' });
        } else {
          assert.deepEqual(block, { type: 'thinking', thinking: '', signature: '' });
          result.content.push({ type: 'thinking', thinking: '', signature: '' });
        }
        open = frame.index as number;
        break;
      }
      case 'content_block_delta': {
        assert.equal(frame.index, open, 'deltas go to the open block');
        const block: Block | undefined = result.content[open ?? -1];
        const delta = frame.delta as Data;
        if (block?.type === 'text' && delta.type === 'text_delta')
          block.text += delta.text as string;
        else if (block?.type === 'thinking' && delta.type === 'thinking_delta')
          block.thinking += delta.thinking as string;
        else if (block?.type === 'tool_use' && delta.type === 'input_json_delta') {
          assert.notEqual(delta.partial_json, '');
          block.json += delta.partial_json as string;
          assert.ok(completesToJson(block.json), `valid JSON prefix: ${block.json}`);
        } else assert.fail(`delta ${delta.type as string} in a ${block?.type ?? 'missing'} block`);
        break;
      }
      case 'content_block_stop': {
        assert.equal(frame.index, open);
        const block: Block | undefined = result.content[open ?? -1];
        if (block?.type === 'tool_use') {
          block.input = JSON.parse(block.json || '{}');
          assert.equal(typeof block.input, 'object');
          assert.ok(!Array.isArray(block.input) && block.input !== null);
        }
        open = null;
        break;
      }
      case 'message_delta':
        assert.equal(open, null, 'blocks close before message_delta');
        result.stop_reason = get(frame.delta, 'stop_reason');
        result.stop_sequence = get(frame.delta, 'stop_sequence');
        Object.assign(result.usage, frame.usage);
        break;
      case 'message_stop':
        assert.ok(result.stop_reason, 'message_delta came first');
        ended = true;
        break;
      case 'error':
        result.error = frame.error;
        ended = true;
        break;
      default:
        assert.fail(`unexpected event ${frame.type as string}`);
    }
  }
  assert.ok(ended, 'the stream ends with message_stop or error');
  return result;
}

function run(chunks: unknown[], options: Partial<StreamTranslatorOptions> = {}): string {
  const t = createStreamTranslator({
    requestModel: 'claude-x',
    thinking: false,
    messageId: 'msg_s',
    ...options,
  });
  return [...t.start(), ...chunks.flatMap((c) => t.push(c)), ...t.finish()].join('');
}

const delta = (d: Record<string, unknown>, finish: string | null = null) => ({
  choices: [{ index: 0, delta: d, finish_reason: finish }],
});
const toolDelta = (fields: Record<string, unknown>) => delta({ tool_calls: [fields] });

test('every golden stream follows the event grammar the SDK expects', () => {
  const dir = fileURLToPath(new URL('./golden/streams/', import.meta.url));
  const names = readdirSync(dir).filter((f) => f.endsWith('.events.txt'));
  assert.ok(names.length >= 10);
  for (const name of names) {
    const message = accumulate(readFileSync(join(dir, name), 'utf8'));
    if (!message.error) assert.ok(message.content.length > 0, name);
  }
});

test('start is sent once; push and finish start implicitly; nothing after the end', () => {
  const t = createStreamTranslator({ requestModel: 'm', thinking: false, inputTokens: 42 });
  const start = t.start();
  assert.equal(start.length, 2);
  assert.match(start[0] ?? '', /"usage":\{"input_tokens":42,"output_tokens":0\}/);
  assert.match(start[0] ?? '', /"id":"msg_[A-Za-z0-9_-]+"/);
  assert.deepEqual(t.start(), []);
  const finished = t.finish();
  assert.equal(t.done, true);
  assert.deepEqual(t.finish(), []);
  assert.deepEqual(t.push(delta({ content: 'late' })), []);
  assert.deepEqual(t.error('late'), []);
  const message = accumulate([...start, ...finished].join(''));
  assert.deepEqual(message.content, [{ type: 'text', text: '' }]);

  const lazy = createStreamTranslator({ requestModel: 'm', thinking: false });
  const frames = lazy.push(delta({ content: 'x' }));
  assert.match(frames[0] ?? '', /^event: message_start\n/);
  assert.match(frames[1] ?? '', /^event: ping\n/);
});

test('an error event ends the stream, with the request id', () => {
  const t = createStreamTranslator({ requestModel: 'm', thinking: false, requestId: 'req_1' });
  assert.deepEqual(t.error('overloaded', 'overloaded_error'), [
    'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"overloaded"},"request_id":"req_1"}\n\n',
  ]);
  assert.equal(t.done, true);
  assert.deepEqual(t.start(), []);
  assert.deepEqual(t.finish(), []);
});

test('chunks that are not objects, or carry no choices, change nothing', () => {
  const text = run([
    null,
    5,
    'x',
    [],
    { choices: 'no' },
    { choices: [null] },
    delta({ content: 'ok' }, 'stop'),
  ]);
  const message = accumulate(text);
  assert.deepEqual(message.content, [{ type: 'text', text: 'ok' }]);
  assert.equal(message.stop_reason, 'end_turn');
});

test('usage from the last usage chunk is reported in message_delta', () => {
  const text = run([
    delta({ content: 'a' }),
    { choices: [], usage: { prompt_tokens: 7, completion_tokens: 1 } },
    { choices: [], usage: { prompt_tokens: 7, completion_tokens: 2 } },
  ]);
  assert.deepEqual(accumulate(text).usage, { input_tokens: 7, output_tokens: 2 });
});

test('a tool call whose name and id repeat in every delta is still one call', () => {
  const head = { index: 0, id: 'call_r', type: 'function' };
  const text = run([
    toolDelta({ ...head, function: { name: 'read', arguments: '{"pa' } }),
    toolDelta({ ...head, function: { name: 'read', arguments: 'th": "a"}' } }),
  ]);
  const message = accumulate(text);
  assert.deepEqual(
    message.content.map((b) => (b.type === 'tool_use' ? [b.id, b.name, b.input] : b.type)),
    [['call_r', 'read', { path: 'a' }]],
  );
  assert.equal(message.stop_reason, 'tool_use');
});

test('arguments sent as an object (not a string) are accepted', () => {
  const text = run([
    toolDelta({ index: 0, id: 'c', function: { name: 'f', arguments: { a: [1] } } }),
  ]);
  const block = accumulate(text).content[0];
  assert.ok(block?.type === 'tool_use');
  assert.deepEqual(block.input, { a: [1] });
});

test('hostile upstream chunks do not crash the translator', () => {
  let deep: Record<string, unknown> = {};
  const root = deep;
  for (let i = 0; i < 1_000_000; i++) {
    const next: Record<string, unknown> = {};
    deep.a = next;
    deep = next;
  }
  const text = run([
    toolDelta({ index: 0, id: 'c1', function: { name: 'f', arguments: root } }),
    toolDelta({
      index: 1,
      id: 'c2',
      function: { name: 'g', arguments: `{"a":${'['.repeat(100_000)}` },
    }),
    toolDelta({ index: 2.5, function: { arguments: '{}' } }),
    toolDelta({ index: -1, id: 'c3', function: { name: 5, arguments: 7 } }),
  ]);
  const message = accumulate(text);
  assert.ok(message.content.every((b) => b.type === 'tool_use'));
});

test('thinking after text opens a new thinking block when enabled', () => {
  const text = run(
    [delta({ reasoning: 'r1' }), delta({ content: 't1' }), delta({ reasoning_content: 'r2' })],
    { thinking: true },
  );
  assert.deepEqual(
    accumulate(text).content.map((b) => b.type),
    ['thinking', 'text', 'thinking'],
  );
});

/** A small deterministic PRNG (mulberry32) so fuzz failures reproduce. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fragments(text: string, rand: () => number): string[] {
  const pieces: string[] = [];
  for (let at = 0; at < text.length;) {
    const size = 1 + Math.floor(rand() * 12);
    pieces.push(text.slice(at, at + size));
    at += size;
  }
  return pieces;
}

test('fuzz: interleaved parallel tool calls keep each block whole and in order', () => {
  const rand = random(11);
  for (let round = 0; round < 400; round++) {
    const count = 1 + Math.floor(rand() * 4);
    const calls = Array.from({ length: count }, (_, i) => ({
      id: `call_${round}_${i}`,
      name: `tool_${i}`,
      input: {
        i,
        text: 'x'.repeat(Math.floor(rand() * 30)),
        list: [1, { deep: [i, 'q"uote'] }],
        flag: rand() < 0.5,
      },
    }));
    // each call's own fragments stay in order; the calls' fragments are shuffled together
    const queues = calls.map((call, i) => [
      {
        tool_calls: [
          { index: i, id: call.id, type: 'function', function: { name: call.name, arguments: '' } },
        ],
      },
      ...fragments(JSON.stringify(call.input, null, rand() < 0.5 ? 1 : undefined), rand).map(
        (a) => ({
          tool_calls: [{ index: i, function: { arguments: a } }],
        }),
      ),
    ]);
    const chunks: unknown[] = [];
    if (rand() < 0.5) chunks.push(delta({ reasoning_content: 'thinking...' }));
    if (rand() < 0.5) chunks.push(delta({ content: 'Let me call tools.' }));
    for (;;) {
      const waiting = queues.filter((q) => q.length > 0);
      if (waiting.length === 0) break;
      const queue = waiting[Math.floor(rand() * waiting.length)];
      const next = queue?.shift();
      if (next) chunks.push(delta(next));
      if (rand() < 0.05) chunks.push(delta({ content: ' (aside)' }));
    }
    chunks.push(delta({}, 'tool_calls'), {
      choices: [],
      usage: { prompt_tokens: 1, completion_tokens: 2 },
    });

    const thinking = rand() < 0.5;
    const message = accumulate(run(chunks, { thinking }));
    const tools = message.content.filter((b) => b.type === 'tool_use');
    assert.deepEqual(
      tools.map((b) => [b.id, b.name, b.input]).sort(),
      calls.map((c) => [c.id, c.name, c.input]).sort(),
    );
    assert.equal(message.stop_reason, 'tool_use');
    assert.equal(
      message.content.some((b) => b.type === 'thinking'),
      thinking && chunks.some((c) => JSON.stringify(c).includes('reasoning_content')),
    );
  }
});

test('fuzz: a stream and the same answer in one piece agree', () => {
  const rand = random(5);
  for (let round = 0; round < 200; round++) {
    const reasoning = rand() < 0.5 ? 'Because of reasons.' : '';
    const content = rand() < 0.7 ? 'Here is the answer, with "quotes" and\nnew lines.' : '';
    const args = [
      '{"a": 1, "b": [true, null]}',
      "{'single': 'quotes', trailing: 1,}",
      '{"truncated": "yes',
      'not json',
      '',
    ];
    const calls = Array.from({ length: Math.floor(rand() * 3) }, (_, i) => ({
      id: `call_${i}`,
      name: `f${i}`,
      arguments: args[Math.floor(rand() * args.length)] ?? '',
    }));
    const finish = calls.length > 0 ? 'tool_calls' : rand() < 0.5 ? 'stop' : 'length';
    const chunks: unknown[] = [
      ...fragments(reasoning, rand).map((r) => delta({ reasoning_content: r })),
      ...fragments(content, rand).map((c) => delta({ content: c })),
      ...calls.flatMap((call, i) => [
        delta({
          tool_calls: [{ index: i, id: call.id, function: { name: call.name, arguments: '' } }],
        }),
        ...fragments(call.arguments, rand).map((a) =>
          delta({ tool_calls: [{ index: i, function: { arguments: a } }] }),
        ),
      ]),
      delta({}, finish),
      { choices: [], usage: { prompt_tokens: 10, completion_tokens: 20 } },
    ];
    const options = { requestModel: 'claude-x', thinking: true, messageId: 'msg_s' };
    const streamed = accumulate(run(chunks, options));
    const whole = fromChatCompletion(
      {
        choices: [
          {
            message: {
              reasoning_content: reasoning,
              content,
              tool_calls: calls.map((c) => ({
                id: c.id,
                function: { name: c.name, arguments: c.arguments },
              })),
            },
            finish_reason: finish,
          },
        ],
        usage: { prompt_tokens: 10, completion_tokens: 20 },
      },
      options,
    );
    assert.deepEqual(
      streamed.content.map((b) =>
        b.type === 'tool_use' ? { type: b.type, id: b.id, name: b.name, input: b.input } : b,
      ),
      whole.content,
      JSON.stringify(chunks),
    );
    assert.equal(streamed.stop_reason, whole.stop_reason);
    assert.deepEqual(streamed.usage, whole.usage);
  }
});

test('parseSseChunks splits lines, skips comments and keeps the unfinished line', () => {
  const text =
    ': keep-alive\n\n' +
    'data: {"a":1}\n\n' +
    'event: message\r\ndata:{"b":2}\r\n\r\n' +
    'id: 7\rdata: {"c":3}\r\r' +
    'data: not json\n\n' +
    'error: {"message":"boom"}\n\n' +
    'data: [DONE]\n\n' +
    'data: {"partial":';
  const parsed = parseSseChunks(text);
  assert.deepEqual(parsed.chunks, [{ a: 1 }, { b: 2 }, { c: 3 }, { error: { message: 'boom' } }]);
  assert.equal(parsed.done, true);
  assert.equal(parsed.rest, 'data: {"partial":');
  assert.deepEqual(parseSseChunks(`${parsed.rest}true}\n`).chunks, [{ partial: true }]);
});

test('parseSseChunks waits when a read ends between CR and LF', () => {
  const first = parseSseChunks('data: {"a":1}\r');
  assert.deepEqual(first.chunks, []);
  assert.equal(first.rest, 'data: {"a":1}\r');
  const second = parseSseChunks(`${first.rest}\ndata: {"b":2}\r\n`);
  assert.deepEqual(second.chunks, [{ a: 1 }, { b: 2 }]);
  assert.equal(second.rest, '');
});

test('parseSseChunks refuses an endless line', () => {
  assert.throws(
    () => parseSseChunks(`data: ${'x'.repeat(MAX_SSE_LINE)}`),
    (error: unknown) => error instanceof HttpError && error.status === 502,
  );
});

test('the SSE decoder keeps a UTF-8 character split across reads whole', () => {
  const bytes = Buffer.from('data: {"t":"héllo 😀"}\n\ndata: [DONE]\n\n');
  const rand = random(9);
  for (let round = 0; round < 50; round++) {
    const decoder = createSseDecoder();
    const chunks: unknown[] = [];
    for (let at = 0; at < bytes.length;) {
      const size = 1 + Math.floor(rand() * 5);
      chunks.push(...decoder.push(bytes.subarray(at, at + size)));
      at += size;
    }
    chunks.push(...decoder.end());
    assert.deepEqual(chunks, [{ t: 'héllo 😀' }]);
    assert.equal(decoder.done, true);
  }
  const tail = createSseDecoder();
  assert.deepEqual(tail.push('data: {"last":1}'), []);
  assert.deepEqual(tail.end(), [{ last: 1 }]);
  assert.equal(tail.done, false);
});

test('a call announced without arguments keeps its place and its late arguments', () => {
  const head = (index: number, id: string) =>
    toolDelta({ index, id, type: 'function', function: { name: `f${index}`, arguments: '' } });
  const args = (index: number, a: string) => toolDelta({ index, function: { arguments: a } });
  const summary = (text: string) =>
    accumulate(text).content.map((b) => (b.type === 'tool_use' ? [b.id, b.input] : b.type));

  assert.deepEqual(summary(run([head(0, 'a'), head(1, 'b'), args(1, '{"x":1}')])), [
    ['a', {}],
    ['b', { x: 1 }],
  ]);
  assert.deepEqual(
    summary(run([head(0, 'a'), head(1, 'b'), args(1, '{"x":'), args(0, '{"y":2}'), args(1, '1}')])),
    [
      ['a', { y: 2 }],
      ['b', { x: 1 }],
    ],
  );
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../server/errors.js';
import { applyPolicy, schemaCheck, surelyValid } from './policy.js';

const policy = { maxTokens: 1000, maxChoices: 2 };
const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'm',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

function refused(
  body: unknown,
  message: RegExp,
  endpoint: 'chat' | 'completion' | 'embedding' = 'chat',
) {
  assert.throws(
    () => applyPolicy(endpoint, body, policy),
    (error: unknown) => {
      assert.ok(error instanceof HttpError);
      assert.equal(error.status, 400);
      assert.match(error.message, message);
      return true;
    },
  );
}

test('max_tokens is clamped, or set when absent', () => {
  assert.equal(applyPolicy('chat', chat({ max_tokens: 10 }), policy).max_tokens, 10);
  assert.equal(applyPolicy('chat', chat({ max_tokens: 1e12 }), policy).max_tokens, 1000);
  assert.equal(applyPolicy('chat', chat(), policy).max_tokens, 1000);
  const newer = applyPolicy('chat', chat({ max_completion_tokens: 5000 }), policy);
  assert.equal(newer.max_completion_tokens, 1000);
  assert.equal(newer.max_tokens, undefined);
  assert.equal(
    applyPolicy('completion', { model: 'm', prompt: 'x', max_tokens: 99999 }, policy).max_tokens,
    1000,
  );
});

test('n is capped and unknown fields are kept', () => {
  const out = applyPolicy('chat', chat({ n: 50, temperature: 0.2, tools: [] }), policy);
  assert.equal(out.n, 2);
  assert.equal(out.temperature, 0.2);
  assert.deepEqual(out.tools, []);
});

test('bad token counts are refused with a message naming the field', () => {
  refused(chat({ max_tokens: -1 }), /^max_tokens: must be a positive integer$/);
  refused(chat({ max_tokens: 1.5 }), /max_tokens: must be a positive integer/);
  refused(chat({ max_tokens: '100' }), /max_tokens: must be a positive integer/);
  refused(chat({ max_completion_tokens: 0 }), /max_completion_tokens/);
  refused(chat({ n: 2.5 }), /^n: /);
});

test('wrong shapes say what is wrong', () => {
  refused([], /must be a JSON object/);
  refused('text', /must be a JSON object/);
  refused({ messages: [] }, /^model is required$/);
  refused({ model: 5, messages: [] }, /^model: must be a string/);
  refused({ model: 'm' }, /^messages is required$/);
  refused({ model: 'm', messages: [] }, /messages: must hold at least one message/);
  refused({ model: 'm', messages: 'hi' }, /messages: must be an array/);
  refused(
    { model: 'm', messages: [{ role: 'wizard', content: 'x' }] },
    /messages\[0\]\.role: must be one of/,
  );
  refused({ model: 'm', messages: [{ role: 'user', content: 5 }] }, /messages\[0\]\.content/);
  refused(
    { model: 'm', messages: Array.from({ length: 10_001 }, () => ({ role: 'user', content: '' })) },
    /messages: must hold at most 10000 messages/,
  );
  refused(chat({ stream: 'yes' }), /stream: must be true or false/);
  refused({ model: 'm', input: [] }, /input: must not be empty/, 'embedding');
  refused({ model: 'm', prompt: { a: 1 } }, /prompt: must be/, 'completion');
});

test('the fast path accepts only what the schema accepts, unchanged', () => {
  const values: unknown[] = [undefined, null, 0, -1, 1, 1.5, 2 ** 60, '1', true, [], {}, 'x'];
  const messageShapes: unknown[] = [
    [{ role: 'user', content: 'hi' }],
    [{ role: 'user', content: null }],
    [{ role: 'assistant' }],
    [{ role: 'user', content: [{ type: 'text', text: 'x' }] }],
    [{ role: 'nobody', content: 'x' }],
    [{ role: 'user', content: 5 }],
    [null],
    [],
    'x',
  ];
  const bodies: Array<['chat' | 'completion' | 'embedding', Record<string, unknown>]> = [];
  for (const model of ['m', '', 5, 'x'.repeat(257)]) {
    for (const messages of messageShapes) {
      for (const field of [
        'max_tokens',
        'max_completion_tokens',
        'n',
        'stream',
        'stream_options',
      ]) {
        for (const value of values) {
          const body: Record<string, unknown> = { model, messages };
          if (value !== undefined) body[field] = value;
          bodies.push(['chat', body]);
        }
      }
    }
  }
  for (const prompt of [
    'x',
    ['a', 'b'],
    [1, 2],
    [[1], [2]],
    [],
    [1, 'a'],
    [['a']],
    { a: 1 },
    5,
    null,
  ]) {
    bodies.push(['completion', { model: 'm', prompt }]);
    bodies.push(['embedding', { model: 'm', input: prompt }]);
  }
  let fast = 0;
  for (const [endpoint, body] of bodies) {
    if (!surelyValid(endpoint, body)) continue;
    fast += 1;
    const schema = schemaCheck(endpoint, body);
    assert.equal(
      schema.success,
      true,
      `fast path accepted what the schema refuses: ${JSON.stringify(body)}`,
    );
    assert.deepEqual(schema.data, body);
  }
  assert.ok(fast > 50, `the fast path took ${fast} of ${bodies.length} bodies`);
});

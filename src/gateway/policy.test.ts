import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../server/errors.js';
import { applyPolicy } from './policy.js';

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

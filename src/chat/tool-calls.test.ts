import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../server/errors.js';
import {
  createToolCallReader,
  MAX_ARGUMENTS,
  MAX_CALLS,
  MAX_ROUND_ARGUMENTS,
  parseArguments,
} from './tool-calls.js';

function delta(toolCalls: unknown[], finish: string | null = null) {
  return { choices: [{ index: 0, delta: { tool_calls: toolCalls }, finish_reason: finish }] };
}

test('streamed tool calls are merged by index: id and name as given, arguments appended', () => {
  const reader = createToolCallReader();
  reader.push({ choices: [{ index: 0, delta: { role: 'assistant', content: 'Let me see.' } }] });
  reader.push(
    delta([{ index: 0, id: 'call_a', type: 'function', function: { name: 'calc__add' } }]),
  );
  reader.push(delta([{ index: 0, function: { arguments: '{"a":2,' } }]));
  reader.push(
    delta([
      { index: 0, function: { arguments: '"b":3}' } },
      { index: 1, id: 'call_b', function: { name: 'files__read', arguments: '{}' } },
    ]),
  );
  reader.push(delta([], 'tool_calls'));
  reader.push({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 2 } });
  assert.deepEqual(reader.calls(1), [
    { id: 'call_a', name: 'calc__add', arguments: '{"a":2,"b":3}' },
    { id: 'call_b', name: 'files__read', arguments: '{}' },
  ]);
});

test('a whole completion’s message.tool_calls are read too, object arguments as JSON', () => {
  const reader = createToolCallReader();
  reader.push({
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'x', type: 'function', function: { name: 'a', arguments: '{"n":1}' } },
            { type: 'function', function: { name: 'b', arguments: { n: 2 } } },
          ],
        },
        finish_reason: 'tool_calls',
      },
    ],
  });
  assert.deepEqual(reader.calls(3), [
    { id: 'x', name: 'a', arguments: '{"n":1}' },
    { id: 'call_3_1', name: 'b', arguments: '{"n":2}' },
  ]);
});

test('missing, duplicate or odd ids are replaced; junk and far indexes are ignored', () => {
  const reader = createToolCallReader();
  reader.push(delta([{ index: 2, id: 'same', function: { name: 'a' } }]));
  reader.push(delta([{ index: 0, id: 'same', function: { name: 'b' } }]));
  reader.push(delta([{ index: 1, id: 'has space', function: { name: 'c' } }]));
  reader.push(delta([{ index: MAX_CALLS, id: 'far', function: { name: 'd' } }]));
  reader.push(delta([{ index: -1, function: { name: 'e' } }, 'junk', null]));
  reader.push(delta([{ index: 3 }]));
  reader.push({ choices: [{ delta: { tool_calls: 'not a list' } }] });
  reader.push('not a chunk');
  assert.deepEqual(reader.calls(2), [
    { id: 'same', name: 'b', arguments: '' },
    { id: 'call_2_1', name: 'c', arguments: '' },
    { id: 'call_2_2', name: 'a', arguments: '' },
  ]);
});

test('arguments past the limit end the answer with a 502', () => {
  const reader = createToolCallReader();
  reader.push(delta([{ index: 0, function: { name: 'a', arguments: 'x'.repeat(MAX_ARGUMENTS) } }]));
  assert.throws(
    () => reader.push(delta([{ index: 0, function: { arguments: 'x' } }])),
    (error) => error instanceof HttpError && error.code === 'tool_call_too_large',
  );
});

test('all the arguments of one round together are capped too (they are sent back each round)', () => {
  const reader = createToolCallReader();
  const big = 'x'.repeat(MAX_ARGUMENTS);
  for (let index = 0; index < MAX_ROUND_ARGUMENTS / MAX_ARGUMENTS; index += 1) {
    reader.push(delta([{ index, function: { name: 'a', arguments: big } }]));
  }
  assert.throws(
    () => reader.push(delta([{ index: 5, function: { name: 'a', arguments: 'x' } }])),
    (error) => error instanceof HttpError && /in one round/.test(error.message),
  );
});

test('parseArguments: objects pass, empty is {}, anything else is an error for the model', () => {
  assert.deepEqual(parseArguments('{"a":1,"b":[2]}'), { ok: true, value: { a: 1, b: [2] } });
  assert.deepEqual(parseArguments('  '), { ok: true, value: {} });
  assert.deepEqual(parseArguments('{"a":'), { ok: false, error: 'arguments were not valid JSON' });
  assert.deepEqual(parseArguments('[1,2]'), {
    ok: false,
    error: 'arguments must be a JSON object',
  });
  assert.deepEqual(parseArguments('null'), {
    ok: false,
    error: 'arguments must be a JSON object',
  });
});

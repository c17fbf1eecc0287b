import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../server/errors.js';
import { parseMessagesRequest } from './request.js';
import {
  createToolIds,
  findStopSequence,
  fromChatCompletion,
  newMessageId,
  responseOptions,
  stopReasonFor,
} from './response.js';

const options = { requestModel: 'claude-x', thinking: false, messageId: 'msg_t' };
const completion = (message: Record<string, unknown>, finish: unknown = 'stop', extra = {}) => ({
  choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: finish }],
  ...extra,
});

test('a plain completion becomes a message with the requested model name', () => {
  const message = fromChatCompletion(
    completion({ content: 'hi' }, 'stop', { usage: { prompt_tokens: 3, completion_tokens: 1 } }),
    options,
  );
  assert.deepEqual(message, {
    id: 'msg_t',
    type: 'message',
    role: 'assistant',
    model: 'claude-x',
    content: [{ type: 'text', text: 'hi' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 3, output_tokens: 1 },
  });
});

test('what is not a chat completion is a 502 naming the problem', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['text', /not a chat completion/],
    [null, /not a chat completion/],
    [{}, /no choices/],
    [{ choices: [] }, /no choices/],
    [{ choices: [5] }, /no choices/],
    [{ error: { message: 'context too long' } }, /reported an error: context too long/],
    [{ error: 'boom' }, /reported an error: boom/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => fromChatCompletion(input, options),
      (error: unknown) =>
        error instanceof HttpError && error.status === 502 && message.test(error.message),
    );
  }
});

test('missing parts of a completion get safe defaults', () => {
  const message = fromChatCompletion({ choices: [{}] }, options);
  assert.deepEqual(message.content, [{ type: 'text', text: '' }]);
  assert.equal(message.stop_reason, 'end_turn');
  assert.deepEqual(message.usage, { input_tokens: 0, output_tokens: 0 });
  const weird = fromChatCompletion(
    completion({ content: 42, tool_calls: 'no' }, 7, { usage: { prompt_tokens: 'x' } }),
    options,
  );
  assert.deepEqual(weird.content, [{ type: 'text', text: '' }]);
  assert.equal(weird.usage.input_tokens, 0);
});

test('finish reasons map to stop reasons', () => {
  const table: Array<[unknown, boolean, string | null, string]> = [
    ['stop', false, null, 'end_turn'],
    ['stop', true, null, 'tool_use'],
    ['tool_calls', true, null, 'tool_use'],
    ['tool_calls', false, null, 'end_turn'],
    ['function_call', true, null, 'tool_use'],
    ['length', false, null, 'max_tokens'],
    ['length', true, null, 'max_tokens'],
    ['content_filter', false, null, 'refusal'],
    ['stop', false, 'END', 'stop_sequence'],
    [null, false, null, 'end_turn'],
    ['eos', false, null, 'end_turn'],
  ];
  for (const [finish, tools, sequence, expected] of table) {
    assert.equal(stopReasonFor(finish, tools, sequence), expected, `${String(finish)} ${tools}`);
  }
});

test('a stop sequence is reported only when the upstream names one the request sent', () => {
  const stops = ['END', '###'];
  assert.equal(findStopSequence({}, { stop_reason: 'END' }, stops), 'END');
  assert.equal(findStopSequence({}, { stop_reason: 'OTHER' }, stops), null);
  assert.equal(findStopSequence({}, { stop_reason: 151645 }, stops), null);
  assert.equal(findStopSequence({}, { stop_reason: 'END' }, undefined), null);
  assert.equal(findStopSequence({ __verbose: { stopping_word: '###' } }, {}, stops), '###');
  assert.equal(findStopSequence({ stopping_word: '###' }, {}, stops), '###');
  assert.equal(findStopSequence({}, { stopping_word: 'END' }, stops), 'END');
  const message = fromChatCompletion(
    completion({ content: 'a' }, 'stop', { __verbose: { stopping_word: '###' } }),
    { ...options, stopSequences: stops },
  );
  assert.equal(message.stop_reason, 'stop_sequence');
  assert.equal(message.stop_sequence, '###');
});

test('thinking is passed only when the request enabled it', () => {
  const input = completion({ reasoning_content: 'because', content: 'yes' });
  assert.deepEqual(fromChatCompletion(input, { ...options, thinking: true }).content, [
    { type: 'thinking', thinking: 'because', signature: '' },
    { type: 'text', text: 'yes' },
  ]);
  assert.deepEqual(fromChatCompletion(input, options).content, [{ type: 'text', text: 'yes' }]);
});

test('tool calls become tool_use blocks with usable ids and parsed input', () => {
  const message = fromChatCompletion(
    completion(
      {
        content: '',
        tool_calls: [
          { id: 'call_1', function: { name: 'a', arguments: '{"x":1}' } },
          { id: 'call_1', function: { name: 'b', arguments: '{"y":2}' } },
          { id: 'bad id!', function: { name: 'c', arguments: {} } },
          { function: { name: 'd' } },
          { id: 'call_2' },
          'junk',
        ],
      },
      'tool_calls',
    ),
    options,
  );
  assert.deepEqual(message.content, [
    { type: 'tool_use', id: 'call_1', name: 'a', input: { x: 1 } },
    { type: 'tool_use', id: 'toolu_t_0', name: 'b', input: { y: 2 } },
    { type: 'tool_use', id: 'toolu_t_1', name: 'c', input: {} },
    { type: 'tool_use', id: 'toolu_t_2', name: 'd', input: {} },
    { type: 'tool_use', id: 'call_2', name: '', input: {} },
  ]);
  assert.equal(message.stop_reason, 'tool_use');
});

test('a legacy function_call is a tool call too', () => {
  const message = fromChatCompletion(
    completion(
      { content: null, function_call: { name: 'f', arguments: '{"a":1}' } },
      'function_call',
    ),
    options,
  );
  assert.deepEqual(message.content, [
    { type: 'tool_use', id: 'toolu_t_0', name: 'f', input: { a: 1 } },
  ]);
});

test('deeply nested tool arguments from a model do not crash the translation', () => {
  const args = `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
  const message = fromChatCompletion(
    completion({ tool_calls: [{ id: 'c', function: { name: 'f', arguments: args } }] }),
    options,
  );
  const block = message.content[0];
  assert.equal(block?.type, 'tool_use');
  assert.ok(JSON.stringify(message).length > 0);
});

test('tool ids are unique within a message and follow the id pattern', () => {
  const next = createToolIds('msg_a/b+c');
  assert.equal(next('toolu_a+b_0'), 'toolu_abc_0');
  assert.equal(next('toolu_abc_0'), 'toolu_abc_1');
  assert.equal(next(undefined), 'toolu_abc_2');
  assert.match(newMessageId(), /^msg_[0-9a-f]{32}$/);
  assert.notEqual(newMessageId(), newMessageId());
});

test('responseOptions reads what the translators need from the request', () => {
  const req = parseMessagesRequest({
    model: 'claude-x',
    max_tokens: 5,
    messages: [{ role: 'user', content: 'x' }],
    stop_sequences: ['END'],
    thinking: { type: 'adaptive' },
  });
  assert.deepEqual(responseOptions(req), {
    requestModel: 'claude-x',
    thinking: true,
    stopSequences: ['END'],
  });
  const plain = parseMessagesRequest({ model: 'm', max_tokens: 5, messages: req.messages });
  assert.deepEqual(responseOptions(plain), { requestModel: 'm', thinking: false });
});

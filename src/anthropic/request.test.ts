import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../server/errors.js';
import { MAX_JSON_DEPTH } from './json-repair.js';
import {
  MAX_CONTENT_BLOCKS,
  parseCountTokensRequest,
  parseMessagesRequest,
  toChatCompletions,
} from './request.js';

const base = (extra: Record<string, unknown> = {}) => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 100,
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});
const user = (content: unknown) => base({ messages: [{ role: 'user', content }] });

function refused(body: unknown, message: string | RegExp) {
  assert.throws(
    () => parseMessagesRequest(body),
    (error: unknown) => {
      assert.ok(error instanceof HttpError, String(error));
      assert.equal(error.status, 400);
      assert.equal(error.type, 'invalid_request_error');
      if (typeof message === 'string') assert.equal(error.message, message);
      else assert.match(error.message, message);
      return true;
    },
  );
}

test('a minimal request parses; unknown fields are dropped, metadata checked but not forwarded', () => {
  const req = parseMessagesRequest(
    base({ metadata: { user_id: 'u1' }, service_tier: 'auto', container: 'x', foo: [1] }),
  );
  assert.deepEqual(req, { ...base(), metadata: { user_id: 'u1' } });
  assert.equal('metadata' in toChatCompletions(req, 'local'), false);
  refused(base({ metadata: [[[[1]]]] }), /^metadata: must be an object/);
  refused(base({ metadata: { user_id: 5 } }), /^metadata.user_id/);
});

test('max_tokens is required and must be a positive integer', () => {
  refused({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, 'max_tokens: required');
  for (const bad of [0, -1, 1.5, '100', null, 1e300, true]) {
    refused(base({ max_tokens: bad }), 'max_tokens: must be a positive integer');
  }
  assert.equal(parseCountTokensRequest({ model: 'm', messages: base().messages }).model, 'm');
});

test('wrong types everywhere name the field and the problem', () => {
  const cases: Array<[unknown, string | RegExp]> = [
    [[], 'the request body must be a JSON object'],
    ['text', 'the request body must be a JSON object'],
    [null, 'the request body must be a JSON object'],
    [base({ model: 5 }), 'model: must be a string naming a model'],
    [base({ model: '' }), 'model: must not be empty'],
    [base({ messages: {} }), 'messages: must be an array of messages'],
    [base({ messages: [] }), 'messages: must hold at least one message'],
    [base({ messages: ['hi'] }), 'messages.0: Invalid input: expected object, received string'],
    [
      base({ messages: [{ role: 'system', content: 'x' }] }),
      'messages.0.role: must be "user" or "assistant"',
    ],
    [base({ messages: [{ role: 'user' }] }), 'messages.0.content: required'],
    [user(5), 'messages.0.content: must be a string or an array of content blocks'],
    [user([5]), 'messages.0.content.0: must be a content block (an object with a type)'],
    [user([{ text: 'no type' }]), /^messages\.0\.content\.0\.type: expected one of text, image/],
    [
      user([{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }, { type: 'video' }]),
      'messages.0.content.2.type: expected one of text, image, tool_use, tool_result, thinking, redacted_thinking',
    ],
    [
      user([{ type: 'text', text: 5 }]),
      'messages.0.content.0.text: must be a string (the block text)',
    ],
    [
      user([{ type: 'document', source: { type: 'text', data: 'x' } }]),
      /^messages\.0\.content\.0\.type: document blocks .* not supported/,
    ],
    [
      user([{ type: 'image', source: { type: 'file', file_id: 'f' } }]),
      'messages.0.content.0.source.type: expected one of base64, url',
    ],
    [
      user([{ type: 'image', source: { type: 'base64', media_type: 'image/bmp', data: 'AA==' } }]),
      'messages.0.content.0.source.media_type: expected one of image/jpeg, image/png, image/gif, image/webp',
    ],
    [
      user([
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'not base64!' } },
      ]),
      'messages.0.content.0.source.data: must be base64',
    ],
    [
      user([{ type: 'image', source: { type: 'url', url: 'file:///etc/passwd' } }]),
      'messages.0.content.0.source.url: must be an http or https URL',
    ],
    [
      user([{ type: 'image', source: { type: 'url', url: 'javascript:alert(1)' } }]),
      'messages.0.content.0.source.url: must be an http or https URL',
    ],
    [user([{ type: 'tool_result' }]), 'messages.0.content.0.tool_use_id: required'],
    [
      user([{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'document' }] }]),
      'messages.0.content.0.content.0.type: expected one of text, image',
    ],
    [
      user([{ type: 'tool_result', tool_use_id: 't', content: 5 }]),
      'messages.0.content.0.content: must be a string or an array of text and image blocks',
    ],
    [
      user([{ type: 'tool_result', tool_use_id: 't', is_error: 'yes' }]),
      'messages.0.content.0.is_error: must be true or false',
    ],
    [
      user([{ type: 'tool_use', id: 't', name: 'n', input: {} }]),
      'messages.0.content.0.type: tool_use blocks belong in assistant messages',
    ],
    [
      base({
        messages: [{ role: 'assistant', content: [{ type: 'tool_result', tool_use_id: 't' }] }],
      }),
      'messages.0.content.0.type: tool_result blocks belong in user messages',
    ],
    [
      base({
        messages: [
          { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'n', input: [] }] },
        ],
      }),
      'messages.0.content.0.input: must be a JSON object',
    ],
    [base({ system: 5 }), 'system: must be a string or an array of text blocks'],
    [base({ system: [{ type: 'image' }] }), /^system\.0\.type: /],
    [base({ stop_sequences: 'END' }), 'stop_sequences: must be an array of strings'],
    [base({ stop_sequences: [''] }), 'stop_sequences.0: must not be empty'],
    [
      base({ stop_sequences: Array.from({ length: 17 }, (_, i) => `s${i}`) }),
      'stop_sequences: must hold at most 16 sequences',
    ],
    [base({ temperature: 1.5 }), 'temperature: must be a number from 0 to 1'],
    [base({ temperature: '0.5' }), 'temperature: must be a number from 0 to 1'],
    [base({ top_p: -0.1 }), 'top_p: must be a number from 0 to 1'],
    [base({ top_k: -1 }), 'top_k: must be a non-negative integer'],
    [base({ top_k: 2.5 }), 'top_k: must be a non-negative integer'],
    [base({ stream: 'yes' }), 'stream: must be true or false'],
    [base({ tools: {} }), 'tools: must be an array of tools'],
    [
      base({ tools: [{ name: 'a b', input_schema: {} }] }),
      'tools.0.name: must match ^[a-zA-Z0-9_-]{1,128}$',
    ],
    [
      base({ tools: [{ name: 'x'.repeat(129), input_schema: {} }] }),
      'tools.0.name: must match ^[a-zA-Z0-9_-]{1,128}$',
    ],
    [base({ tools: [{ name: 'a' }] }), 'tools.0.input_schema: must be a JSON object'],
    [
      base({ tools: [{ name: 'a', input_schema: {}, description: 5 }] }),
      'tools.0.description: must be a string',
    ],
    [
      base({ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }),
      /^tools\.0\.type: "web_search_20250305" is a server tool/,
    ],
    [base({ tool_choice: 'auto' }), 'tool_choice: must be an object'],
    [
      base({ tool_choice: { type: 'maybe' } }),
      'tool_choice.type: expected one of auto, any, tool, none',
    ],
    [base({ tool_choice: { type: 'tool' } }), 'tool_choice.name: required'],
    [
      base({ tool_choice: { type: 'auto', disable_parallel_tool_use: 1 } }),
      'tool_choice.disable_parallel_tool_use: must be true or false',
    ],
    [base({ thinking: { type: 'enabled' } }), 'thinking.budget_tokens: required'],
    [
      base({ thinking: { type: 'enabled', budget_tokens: -5 } }),
      'thinking.budget_tokens: must be a positive integer',
    ],
    [
      base({ thinking: { type: 'on' } }),
      'thinking.type: expected one of enabled, adaptive, disabled',
    ],
  ];
  for (const [body, message] of cases) refused(body, message);
});

test('the content block count is capped across the whole request', () => {
  const blocks = (n: number) => Array.from({ length: n }, () => ({ type: 'text', text: 'x' }));
  const exactly = parseMessagesRequest(user(blocks(MAX_CONTENT_BLOCKS)));
  assert.equal((exactly.messages[0]?.content as unknown[]).length, MAX_CONTENT_BLOCKS);
  const message = `messages: the request holds more than ${MAX_CONTENT_BLOCKS} content blocks in total`;
  refused(user(blocks(MAX_CONTENT_BLOCKS + 1)), message);
  // spread over messages, system blocks and tool results
  refused(
    base({
      system: blocks(1),
      messages: [
        { role: 'user', content: blocks(5000) },
        { role: 'assistant', content: 'ok' },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 't', content: blocks(4998) }],
        },
      ],
    }),
    message,
  );
  refused(
    base({ messages: Array.from({ length: 10_001 }, () => ({ role: 'user', content: 'x' })) }),
    'messages: must hold at most 10000 messages',
  );
  refused(user(Array.from({ length: 1_000_000 }, () => 5)), message);
});

test('deeply nested tool input and schemas are refused without a crash', () => {
  const nest = (depth: number): Record<string, unknown> => {
    let value: Record<string, unknown> = {};
    for (let i = 1; i < depth; i++) value = { a: value };
    return value;
  };
  const assistant = (input: unknown) =>
    base({
      messages: [
        { role: 'user', content: 'x' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'n', input }] },
      ],
    });
  assert.ok(parseMessagesRequest(assistant(nest(MAX_JSON_DEPTH))));
  const tooDeep = `messages.1.content.0.input: must not nest deeper than ${MAX_JSON_DEPTH} levels`;
  refused(assistant(nest(MAX_JSON_DEPTH + 1)), tooDeep);
  refused(assistant(nest(200_000)), tooDeep);
  refused(
    base({ tools: [{ name: 't', input_schema: nest(100_000) }] }),
    `tools.0.input_schema: must not nest deeper than ${MAX_JSON_DEPTH} levels`,
  );
});

test('hostile strings stay linear: a huge whitespace run in base64 data', () => {
  const data = `${' '.repeat(2_000_000)}!`;
  refused(
    user([{ type: 'image', source: { type: 'base64', media_type: 'image/png', data } }]),
    'messages.0.content.0.source.data: must be base64',
  );
});

test('tool_result blocks become tool messages before the rest of the turn', () => {
  const req = parseMessagesRequest(
    base({
      messages: [
        { role: 'user', content: 'go' },
        {
          role: 'assistant',
          content: [
            { type: 'tool_use', id: 'a', name: 'f', input: { x: 1 } },
            { type: 'tool_use', id: 'b', name: 'g', input: {} },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'before' },
            { type: 'tool_result', tool_use_id: 'a', content: 'A' },
            { type: 'tool_result', tool_use_id: 'b', content: 'failed', is_error: true },
            { type: 'text', text: 'after' },
          ],
        },
      ],
    }),
  );
  assert.deepEqual(toChatCompletions(req, 'local').messages, [
    { role: 'user', content: 'go' },
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'a', type: 'function', function: { name: 'f', arguments: '{"x":1}' } },
        { id: 'b', type: 'function', function: { name: 'g', arguments: '{}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'a', content: 'A' },
    { role: 'tool', tool_call_id: 'b', content: 'Error: failed' },
    { role: 'user', content: 'before\n\nafter' },
  ]);
});

test('is_error marks the tool message once', () => {
  const turn = (content: unknown) =>
    toChatCompletions(
      parseMessagesRequest(
        user([{ type: 'tool_result', tool_use_id: 't', is_error: true, content }]),
      ),
      'local',
    ).messages;
  assert.deepEqual(turn('boom'), [{ role: 'tool', tool_call_id: 't', content: 'Error: boom' }]);
  assert.deepEqual(turn('error: boom'), [
    { role: 'tool', tool_call_id: 't', content: 'error: boom' },
  ]);
  assert.deepEqual(turn('Errors happen'), [
    { role: 'tool', tool_call_id: 't', content: 'Error: Errors happen' },
  ]);
  assert.deepEqual(turn(undefined), [{ role: 'tool', tool_call_id: 't', content: 'Error:' }]);
});

test('consecutive turns of one role are merged; empty assistant turns dropped', () => {
  const req = parseMessagesRequest(
    base({
      messages: [
        { role: 'user', content: 'a' },
        {
          role: 'user',
          content: [{ type: 'image', source: { type: 'url', url: 'https://x.test/i.png' } }],
        },
        { role: 'assistant', content: [{ type: 'redacted_thinking', data: 'z' }] },
        { role: 'assistant', content: 'one' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'n', input: {} }] },
      ],
    }),
  );
  assert.deepEqual(toChatCompletions(req, 'local').messages, [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'a' },
        { type: 'image_url', image_url: { url: 'https://x.test/i.png' } },
      ],
    },
    {
      role: 'assistant',
      content: 'one',
      tool_calls: [{ id: 't', type: 'function', function: { name: 'n', arguments: '{}' } }],
    },
  ]);
});

test('base64 data loses its line breaks in the data URL', () => {
  const req = parseMessagesRequest(
    user([
      { type: 'image', source: { type: 'base64', media_type: 'image/gif', data: 'R0lG\nODlh\n' } },
    ]),
  );
  assert.deepEqual(toChatCompletions(req, 'local').messages, [
    {
      role: 'user',
      content: [{ type: 'image_url', image_url: { url: 'data:image/gif;base64,R0lGODlh' } }],
    },
  ]);
});

test('tool_choice without tools is not forwarded; empty system is left out', () => {
  const body = toChatCompletions(
    parseMessagesRequest(base({ tool_choice: { type: 'any' }, system: [], tools: [] })),
    'local',
  );
  assert.deepEqual(body, {
    model: 'local',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 100,
  });
});

test('thinking maps to chat_template_kwargs; adaptive counts as enabled', () => {
  const kwargs = (thinking: unknown) =>
    toChatCompletions(parseMessagesRequest(base({ thinking })), 'local').chat_template_kwargs;
  assert.deepEqual(kwargs({ type: 'adaptive' }), { enable_thinking: true });
  assert.deepEqual(kwargs({ type: 'enabled', budget_tokens: 1024 }), { enable_thinking: true });
  assert.deepEqual(kwargs({ type: 'disabled' }), { enable_thinking: false });
  assert.equal(kwargs(undefined), undefined);
});

test('a count_tokens body translates without max_tokens', () => {
  const body = toChatCompletions(
    parseCountTokensRequest({
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
    }),
    'local',
  );
  assert.deepEqual(body, { model: 'local', messages: [{ role: 'user', content: 'x' }] });
});

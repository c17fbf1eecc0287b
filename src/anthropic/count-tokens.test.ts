import assert from 'node:assert/strict';
import { test } from 'node:test';
import { estimateTokens, TOKEN_ESTIMATE } from './count-tokens.js';
import { parseCountTokensRequest } from './request.js';

const estimate = (body: Record<string, unknown>) =>
  estimateTokens(parseCountTokensRequest({ model: 'm', ...body }));
const { perRequest, perMessage, perTool, perImage } = TOKEN_ESTIMATE;

test('text counts as ceil(bytes / 4) plus per-message overhead', () => {
  assert.equal(
    estimate({ messages: [{ role: 'user', content: 'abcd' }] }),
    1 + perMessage + perRequest,
  );
  assert.equal(
    estimate({ messages: [{ role: 'user', content: 'abcde' }] }),
    2 + perMessage + perRequest,
  );
  assert.equal(
    estimate({
      system: 'abcd',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'éé' }] }],
    }),
    2 + 2 * perMessage + perRequest,
  );
});

test('images, tools, tool use and results are counted; thinking is not', () => {
  const tools = [{ name: 'get', description: 'd', input_schema: { type: 'object' } }];
  const schemaBytes = 'get'.length + 'd'.length + JSON.stringify({ type: 'object' }).length;
  const body = {
    tools,
    messages: [
      {
        role: 'user',
        content: [{ type: 'image', source: { type: 'url', url: 'https://x.test/a.png' } }],
      },
      {
        role: 'assistant',
        content: [
          { type: 'thinking', thinking: 'x'.repeat(4000), signature: '' },
          { type: 'tool_use', id: 't', name: 'get', input: { a: 1 } },
        ],
      },
      {
        role: 'user',
        content: [
          {
            type: 'tool_result',
            tool_use_id: 't',
            content: [
              { type: 'text', text: 'ok' },
              { type: 'image', source: { type: 'url', url: 'https://x.test/b.png' } },
            ],
          },
        ],
      },
    ],
  };
  const bytes = schemaBytes + 'get{"a":1}'.length + 'ok'.length;
  assert.equal(
    estimate(body),
    Math.ceil(bytes / 4) + 2 * perImage + perTool + 4 * perMessage + perRequest,
  );
});

test('a larger prompt never estimates fewer tokens', () => {
  let previous = 0;
  for (let n = 0; n < 50; n++) {
    const current = estimate({ messages: [{ role: 'user', content: 'word '.repeat(n * 10) }] });
    assert.ok(current >= previous);
    previous = current;
  }
});

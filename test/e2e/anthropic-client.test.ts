import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { request } from 'undici';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { runCli, startPalisade, type TestPalisade } from '../support/palisade.js';

const toolCall = (index: number, id: string, name: string, args: string) => ({
  index,
  id,
  type: 'function',
  function: { name, arguments: args },
});

const chunk = (delta: Record<string, unknown>, finish: string | null = null, usage?: unknown) => ({
  id: 'chatcmpl-s',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'local-tools',
  choices: [{ index: 0, delta, finish_reason: finish }],
  ...(usage ? { usage } : {}),
});

const SCRIPTS = {
  'local-tools': {
    json: {
      id: 'chatcmpl-t',
      object: 'chat.completion',
      created: 1,
      model: 'local-tools',
      choices: [
        {
          index: 0,
          finish_reason: 'tool_calls',
          message: {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: 'call_1',
                type: 'function',
                function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
              },
              {
                id: 'call_2',
                type: 'function',
                function: { name: 'get_time', arguments: '{"tz":"CET"}' },
              },
            ],
          },
        },
      ],
      usage: { prompt_tokens: 20, completion_tokens: 12, total_tokens: 32 },
    },
    chunks: [
      chunk({ role: 'assistant', content: 'Let me check. ' }),
      chunk({ tool_calls: [toolCall(0, 'call_1', 'get_weather', '')] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
      chunk({ tool_calls: [toolCall(1, 'call_2', 'get_time', '{"tz":"CET"}')] }),
      chunk({}, 'tool_calls'),
      {
        ...chunk({}),
        choices: [],
        usage: { prompt_tokens: 20, completion_tokens: 12, total_tokens: 32 },
      },
    ],
  },
  'local-stop': {
    json: {
      id: 'chatcmpl-x',
      object: 'chat.completion',
      created: 1,
      model: 'local-stop',
      choices: [
        {
          index: 0,
          finish_reason: 'stop',
          stop_reason: 'END',
          message: { role: 'assistant', content: 'one two' },
        },
      ],
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
    },
  },
  'local-think': {
    json: {
      id: 'chatcmpl-r',
      object: 'chat.completion',
      created: 1,
      model: 'local-think',
      choices: [
        {
          index: 0,
          finish_reason: 'stop',
          message: {
            role: 'assistant',
            content: 'Four.',
            reasoning_content: 'Two plus two is four.',
          },
        },
      ],
      usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
    },
    chunks: [
      chunk({ role: 'assistant', reasoning_content: 'Two plus ' }),
      chunk({ reasoning_content: 'two is four.' }),
      chunk({ content: 'Four.' }),
      chunk({}, 'stop'),
    ],
  },
  'local-busy': {
    status: 503,
    json: { error: { message: 'model is loading', type: 'unavailable' } },
  },
  'local-broken': {
    status: 500,
    json: { error: { message: 'kernel panic', type: 'server_error' } },
  },
  'local-long': {
    json: {
      id: 'chatcmpl-l',
      object: 'chat.completion',
      created: 1,
      model: 'local-long',
      choices: [
        { index: 0, finish_reason: 'length', message: { role: 'assistant', content: 'cut sh' } },
      ],
      usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
    },
  },
};

describe('the official Anthropic SDK through Palisade', () => {
  let upstream: MockUpstream;
  let palisade: TestPalisade;
  let client: Anthropic;
  let key: string;

  const posts = () =>
    upstream.requests.filter((r) => r.method === 'POST' && r.path === '/v1/chat/completions');
  const lastChat = () => posts().at(-1)?.body as Record<string, unknown>;

  before(async () => {
    upstream = await startMockUpstream({
      models: [
        'mock-small',
        'local-tools',
        'local-stop',
        'local-long',
        'local-think',
        'local-busy',
        'local-broken',
      ],
      scripts: SCRIPTS,
      tokenizer: true,
    });
    palisade = await startPalisade({
      env: {
        PALISADE_UPSTREAMS: `mock=${upstream.url}`,
        PALISADE_ANTHROPIC_MODELS: 'claude-tools*=local-tools,claude-*=mock-small',
        PALISADE_MAX_TOKENS: '1000',
        PALISADE_BODY_LIMIT: '2mb',
      },
    });
    key = await palisade.createKey({ name: 'agent' });
    client = new Anthropic({ apiKey: key, baseURL: palisade.url, maxRetries: 0 });
  });

  after(async () => {
    await palisade.close();
    await upstream.close();
  });

  test('plain text with a system prompt, and max_tokens clamped by the gateway policy', async () => {
    const message = await client.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 16_000,
      system: 'You are terse.',
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    assert.equal(message.type, 'message');
    assert.equal(message.role, 'assistant');
    assert.equal(message.model, 'claude-sonnet-4-5');
    assert.equal(message.stop_reason, 'end_turn');
    assert.match((message.content[0] as { text: string }).text, /Hello from mock-small/);
    assert.ok(message.usage.output_tokens > 0);
    const sent = lastChat();
    assert.equal(sent.model, 'mock-small', 'claude-* mapped to the local model');
    assert.equal(sent.max_tokens, 1000, 'clamped to PALISADE_MAX_TOKENS');
    assert.deepEqual((sent.messages as unknown[])[0], {
      role: 'system',
      content: 'You are terse.',
    });
  });

  test('multi-turn conversations keep their order', async () => {
    await client.messages.create({
      model: 'claude-3-5-haiku',
      max_tokens: 20,
      messages: [
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'two' },
        { role: 'user', content: 'three' },
      ],
    });
    const roles = (lastChat().messages as Array<{ role: string }>).map((m) => m.role);
    assert.deepEqual(roles, ['user', 'assistant', 'user']);
  });

  test('streaming, assembled by the SDK stream helpers', async () => {
    const stream = client.messages.stream({
      model: 'claude-sonnet-4-5',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'Stream it' }],
    });
    let deltas = '';
    stream.on('text', (text) => (deltas += text));
    const final = await stream.finalMessage();
    assert.equal(deltas, 'Hello from mock-small');
    assert.equal((final.content[0] as { text: string }).text, 'Hello from mock-small');
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(lastChat().stream, true);
  });

  test('a tool-use round trip: parallel tool calls streamed as input_json_delta, then tool_result', async () => {
    const tools = [
      {
        name: 'get_weather',
        description: 'Weather',
        input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } },
      },
      {
        name: 'get_time',
        description: 'Time',
        input_schema: { type: 'object' as const, properties: { tz: { type: 'string' } } },
      },
    ];
    const stream = client.messages.stream({
      model: 'claude-tools-1',
      max_tokens: 100,
      tools,
      tool_choice: { type: 'auto' },
      messages: [{ role: 'user', content: 'Weather and time in Paris?' }],
    });
    const jsonDeltas: string[] = [];
    stream.on('inputJson', (partial) => jsonDeltas.push(partial));
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const uses = final.content.filter((b) => b.type === 'tool_use') as Array<{
      id: string;
      name: string;
      input: unknown;
    }>;
    assert.deepEqual(
      uses.map((u) => [u.name, u.input]),
      [
        ['get_weather', { city: 'Paris' }],
        ['get_time', { tz: 'CET' }],
      ],
    );
    assert.ok(jsonDeltas.length >= 2, 'arguments arrived as input_json_delta events');
    const sentTools = lastChat().tools as Array<{ type: string; function: { name: string } }>;
    assert.deepEqual(
      sentTools.map((t) => t.function.name),
      ['get_weather', 'get_time'],
    );
    assert.equal(lastChat().tool_choice, 'auto');

    const reply = await client.messages.create({
      model: 'claude-tools-1',
      max_tokens: 100,
      tools,
      messages: [
        { role: 'user', content: 'Weather and time in Paris?' },
        { role: 'assistant', content: final.content },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: uses[0]!.id, content: '18C and sunny' },
            {
              type: 'tool_result',
              tool_use_id: uses[1]!.id,
              content: [{ type: 'text', text: 'no clock' }],
              is_error: true,
            },
          ],
        },
      ],
    });
    assert.equal(reply.stop_reason, 'tool_use', 'the scripted model calls tools again');
    const sent = lastChat().messages as Array<Record<string, unknown>>;
    const toolMessages = sent.filter((m) => m.role === 'tool');
    assert.deepEqual(
      toolMessages.map((m) => m.tool_call_id),
      [uses[0]!.id, uses[1]!.id],
    );
    assert.match(String(toolMessages[1]?.content), /no clock/);
    const assistant = sent.find((m) => m.role === 'assistant') as { tool_calls: unknown[] };
    assert.equal(assistant.tool_calls.length, 2);
  });

  test('non-streaming parallel tool calls become tool_use blocks', async () => {
    const message = await client.messages.create({
      model: 'claude-tools-2',
      max_tokens: 100,
      tools: [{ name: 'get_weather', input_schema: { type: 'object' } }],
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.deepEqual(
      message.content.map((b) => b.type),
      ['tool_use', 'tool_use'],
    );
  });

  test('stop sequences: sent upstream, and reported when the upstream names the one it hit', async () => {
    const message = await client.messages.create({
      model: 'local-stop',
      max_tokens: 20,
      stop_sequences: ['END'],
      messages: [{ role: 'user', content: 'count' }],
    });
    assert.deepEqual(lastChat().stop, ['END']);
    assert.equal(message.stop_reason, 'stop_sequence');
    assert.equal(message.stop_sequence, 'END');
    const long = await client.messages.create({
      model: 'local-long',
      max_tokens: 3,
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(long.stop_reason, 'max_tokens');
  });

  test('thinking: reasoning_content becomes thinking blocks only when the request enabled it', async () => {
    const plain = await client.messages.create({
      model: 'local-think',
      max_tokens: 100,
      messages: [{ role: 'user', content: '2+2?' }],
    });
    assert.deepEqual(
      plain.content.map((b) => b.type),
      ['text'],
    );
    const thinking = await client.messages.create({
      model: 'local-think',
      max_tokens: 2000,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: '2+2?' }],
    });
    assert.deepEqual(
      thinking.content.map((b) => b.type),
      ['thinking', 'text'],
    );
    assert.equal((thinking.content[0] as { thinking: string }).thinking, 'Two plus two is four.');
    const stream = client.messages.stream({
      model: 'local-think',
      max_tokens: 2000,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: '2+2?' }],
    });
    const final = await stream.finalMessage();
    assert.deepEqual(
      final.content.map((b) => b.type),
      ['thinking', 'text'],
    );
  });

  test('palisade anthropic map takes effect in the running server', async () => {
    const mapped = await runCli([
      'anthropic',
      'map',
      'claude-cli-*',
      'local-stop',
      '--home',
      palisade.home,
    ]);
    assert.equal(mapped.code, 0, mapped.stderr);
    await new Promise((r) => setTimeout(r, 50));
    await client.messages.create({
      model: 'claude-cli-1',
      max_tokens: 5,
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(lastChat().model, 'local-stop');
    const listed = await runCli(['anthropic', 'list', '--json', '--home', palisade.home]);
    const rows = JSON.parse(listed.stdout) as Array<{ pattern: string; source: string }>;
    assert.ok(rows.some((r) => r.pattern === 'claude-cli-*' && r.source === 'stored'));
    for (const [pattern, model] of [
      ['bad name', 'x'],
      ['a,b', 'x'],
      ['a=b', 'x'],
      ['claude-*', 'm,n'],
    ]) {
      const bad = await runCli(['anthropic', 'map', pattern!, model!, '--home', palisade.home]);
      assert.equal(bad.code, 2, `${pattern} -> ${model}`);
    }
    assert.equal(
      (await runCli(['anthropic', 'unmap', 'claude-cli-*', '--home', palisade.home])).code,
      0,
    );
  });

  test('image input becomes an image_url data URL', async () => {
    const png = Buffer.from('89504e470d0a1a0a', 'hex').toString('base64');
    await client.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 10,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
            { type: 'text', text: 'What is this?' },
          ],
        },
      ],
    });
    const content = (lastChat().messages as Array<{ content: unknown }>)[0]?.content as Array<
      Record<string, unknown>
    >;
    assert.deepEqual(content[0], {
      type: 'image_url',
      image_url: { url: `data:image/png;base64,${png}` },
    });
  });

  test('count_tokens uses the upstream tokenizer when it has one', async () => {
    const counted = await client.messages.countTokens({
      model: 'claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'How many tokens is this?' }],
    });
    assert.ok(counted.input_tokens > 0);
    assert.ok(upstream.requests.some((r) => r.path === '/tokenize'));
  });

  test('GET /v1/models answers in Anthropic format when anthropic-version is sent', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.ok(ids.includes('mock-small'));
    assert.equal(page.data[0]?.type, 'model');
  });

  test('every error type arrives in Anthropic shape with the matching SDK error class', async () => {
    const wrong = new Anthropic({
      apiKey: 'pk_' + 'W'.repeat(43),
      baseURL: palisade.url,
      maxRetries: 0,
    });
    const cases: Array<[() => Promise<unknown>, new (...args: never[]) => Error, string]> = [
      [
        () =>
          wrong.messages.create({
            model: 'claude-x',
            max_tokens: 5,
            messages: [{ role: 'user', content: 'x' }],
          }),
        Anthropic.AuthenticationError,
        'authentication_error',
      ],
      [
        () =>
          client.messages.create({
            model: 'gpt-unknown',
            max_tokens: 5,
            messages: [{ role: 'user', content: 'x' }],
          }),
        Anthropic.NotFoundError,
        'not_found_error',
      ],
      [
        () =>
          client.messages.create({
            model: 'claude-x',
            messages: [{ role: 'user', content: 'x' }],
          } as never),
        Anthropic.BadRequestError,
        'invalid_request_error',
      ],
    ];
    for (const [call, kind, type] of cases) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof kind, `${type}: got ${String(error)}`);
        const body = (
          error as unknown as {
            error: { type: string; error: { type: string; message: string }; request_id: string };
          }
        ).error;
        assert.equal(body.type, 'error');
        assert.equal(body.error.type, type);
        assert.match(body.request_id, /^req_/);
        assert.equal(
          (error as { requestID?: string }).requestID,
          body.request_id,
          'request-id header',
        );
        return true;
      });
    }
    await assert.rejects(
      client.messages.create({
        model: 'local-busy',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (error: unknown) => {
        assert.ok(error instanceof Anthropic.InternalServerError);
        assert.equal(
          (error as unknown as { error: { error: { type: string; message: string } } }).error.error
            .type,
          'overloaded_error',
        );
        return true;
      },
    );
    await assert.rejects(
      client.messages.create({
        model: 'local-broken',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      }),
      (error: unknown) => {
        const body = (error as unknown as { error: { error: { type: string; message: string } } })
          .error;
        assert.equal(body.error.type, 'api_error');
        assert.equal(body.error.message, 'kernel panic');
        return true;
      },
    );
    const bearer = new Anthropic({
      authToken: key,
      apiKey: null,
      baseURL: palisade.url,
      maxRetries: 0,
    });
    const viaBearer = await bearer.messages.create({
      model: 'claude-x',
      max_tokens: 5,
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(
      viaBearer.type,
      'message',
      'ANTHROPIC_AUTH_TOKEN (Authorization: Bearer) works too',
    );
    const limited = await palisade.createKey({ name: 'limited', models: ['other-*'] });
    const limitedClient = new Anthropic({ apiKey: limited, baseURL: palisade.url, maxRetries: 0 });
    await assert.rejects(
      limitedClient.messages.countTokens({
        model: 'claude-x',
        messages: [{ role: 'user', content: 'x' }],
      }),
      Anthropic.PermissionDeniedError,
      'count_tokens honours the key model list too',
    );
    await assert.rejects(
      limitedClient.messages.create({
        model: 'claude-x',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      }),
      Anthropic.PermissionDeniedError,
    );
    const slow = await palisade.createKey({ name: 'slow', rpm: 1 });
    const slowClient = new Anthropic({ apiKey: slow, baseURL: palisade.url, maxRetries: 0 });
    await slowClient.messages.create({
      model: 'claude-x',
      max_tokens: 5,
      messages: [{ role: 'user', content: 'x' }],
    });
    await assert.rejects(
      slowClient.messages.create({
        model: 'claude-x',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      }),
      Anthropic.RateLimitError,
    );
  });

  async function raw(body: string) {
    const response = await request(`${palisade.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': key,
        'anthropic-version': '2023-06-01',
      },
      body,
    });
    return {
      status: response.statusCode,
      json: (await response.body.json()) as {
        type: string;
        error: { type: string; message: string };
      },
    };
  }

  test('hostile count_tokens bodies get Anthropic errors too', async () => {
    const cases: Array<[string, number, RegExp]> = [
      ['{bad', 400, /JSON/],
      [JSON.stringify({ model: 'claude-x' }), 400, /messages/],
      [JSON.stringify({ model: 42, messages: [{ role: 'user', content: 'x' }] }), 400, /model/],
      [
        JSON.stringify({
          model: 'claude-x',
          messages: [{ role: 'user', content: [{ type: 'video' }] }],
        }),
        400,
        /type/,
      ],
      [
        JSON.stringify({ model: 'nothing-maps-here', messages: [{ role: 'user', content: 'x' }] }),
        404,
        /no mapping/,
      ],
    ];
    for (const [body, status, message] of cases) {
      const response = await request(`${palisade.url}/v1/messages/count_tokens`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-api-key': key,
          'anthropic-version': '2023-06-01',
        },
        body,
      });
      const json = (await response.body.json()) as {
        type: string;
        error: { message: string };
        request_id: string;
      };
      assert.equal(response.statusCode, status, body.slice(0, 60));
      assert.equal(json.type, 'error');
      assert.match(json.error.message, message);
      assert.match(json.request_id, /^req_/);
    }
  });

  test('hostile bodies get the right Anthropic error and no crash', async () => {
    const base = { model: 'claude-x', max_tokens: 10 };
    const cases: Array<[string, number, string, RegExp]> = [
      [
        JSON.stringify({ model: 'claude-x', messages: [{ role: 'user', content: 'x' }] }),
        400,
        'invalid_request_error',
        /max_tokens/,
      ],
      [
        JSON.stringify({
          ...base,
          messages: [{ role: 'user', content: [{ type: 'video', url: 'x' }] }],
        }),
        400,
        'invalid_request_error',
        /type/,
      ],
      [
        JSON.stringify({
          ...base,
          messages: [
            {
              role: 'user',
              content: Array.from({ length: 10_001 }, () => ({ type: 'text', text: 'a' })),
            },
          ],
        }),
        400,
        'invalid_request_error',
        /10000|10,000/,
      ],
      [
        `{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"x"}],"metadata":${'['.repeat(50_000)}${']'.repeat(50_000)}}`,
        400,
        'invalid_request_error',
        /./,
      ],
      ['{not json', 400, 'invalid_request_error', /JSON/],
      [
        JSON.stringify({
          ...base,
          messages: [{ role: 'user', content: 'x'.repeat(3 * 1024 * 1024) }],
        }),
        413,
        'request_too_large',
        /PALISADE_BODY_LIMIT/,
      ],
    ];
    for (const [body, status, type, message] of cases) {
      const response = await raw(body);
      assert.equal(response.status, status, body.slice(0, 80));
      assert.equal(response.json.type, 'error');
      assert.equal(response.json.error.type, type);
      assert.match(response.json.error.message, message);
    }
    assert.equal((await request(`${palisade.url}/healthz`)).statusCode, 200, 'still serving');
  });
});

describe('Anthropic streams when the upstream fails', () => {
  test('a stream that goes quiet ends with an Anthropic error event', async () => {
    const upstream = await startMockUpstream({ models: ['stall-stream'] });
    const palisade = await startPalisade({
      env: {
        PALISADE_UPSTREAMS: `mock=${upstream.url}`,
        PALISADE_STREAM_IDLE_TIMEOUT: '300ms',
        PALISADE_ANTHROPIC_MODELS: 'claude-*=stall-stream',
      },
    });
    try {
      const response = await request(`${palisade.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({
          model: 'claude-x',
          max_tokens: 10,
          stream: true,
          messages: [{ role: 'user', content: 'x' }],
        }),
      });
      assert.equal(response.statusCode, 200);
      const text = await response.body.text();
      assert.match(text, /^event: message_start\n/);
      assert.match(
        text,
        /event: error\ndata: \{"type":"error","error":\{"type":"overloaded_error"/,
      );
      assert.match(text, /sent nothing for 300 ms/);
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { logRecords, startPalisade, type TestPalisade } from '../support/palisade.js';

describe('the official openai client through Palisade', () => {
  let upstream: MockUpstream;
  let other: MockUpstream;
  let palisade: TestPalisade;
  let client: OpenAI;
  let key: string;

  before(async () => {
    upstream = await startMockUpstream({ models: ['mock-small', 'mock-large'] });
    other = await startMockUpstream({ models: ['other-model'] });
    palisade = await startPalisade({
      env: { PALISADE_UPSTREAMS: `mock=${upstream.url},other=${other.url}` },
    });
    key = await palisade.createKey({ name: 'client' });
    client = new OpenAI({ apiKey: key, baseURL: `${palisade.url}/v1`, maxRetries: 0 });
  });

  after(async () => {
    await palisade.close();
    await upstream.close();
    await other.close();
  });

  test('lists the upstream models', async () => {
    const models = [];
    for await (const model of client.models.list()) models.push(model.id);
    assert.deepEqual(models.sort(), ['mock-large', 'mock-small', 'other-model']);
  });

  test('non-streaming chat', async () => {
    const completion = await client.chat.completions.create({
      model: 'mock-small',
      messages: [{ role: 'user', content: 'Say hello' }],
      max_tokens: 20,
    });
    assert.equal(completion.object, 'chat.completion');
    assert.match(completion.choices[0]?.message.content ?? '', /mock-small/);
    assert.ok(completion.usage && completion.usage.total_tokens > 0);
    const seen = upstream.requests.at(-1);
    assert.equal(seen?.path, '/v1/chat/completions');
    assert.equal((seen?.body as { max_tokens: number }).max_tokens, 20);
    assert.equal(
      seen?.headers.authorization,
      undefined,
      'the client key never reaches the upstream',
    );
  });

  test('streaming chat arrives chunk by chunk and ends', async () => {
    const stream = await client.chat.completions.create({
      model: 'mock-large',
      messages: [{ role: 'user', content: 'Stream please' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let chunks = 0;
    let usage = 0;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage.total_tokens;
    }
    assert.ok(chunks >= 3, `got ${chunks} chunks`);
    assert.ok(text.length > 0);
    assert.ok(usage > 0, 'usage chunk passed through');
  });

  test('legacy completions, JSON and streaming', async () => {
    const completion = await client.completions.create({
      model: 'mock-small',
      prompt: 'Once',
      max_tokens: 5,
    });
    assert.equal(completion.object, 'text_completion');
    const stream = await client.completions.create({
      model: 'mock-small',
      prompt: 'Once',
      stream: true,
    });
    let parts = 0;
    for await (const part of stream) if (part.choices[0]?.text !== undefined) parts += 1;
    assert.ok(parts > 0);
  });

  test('embeddings, one per input', async () => {
    const result = await client.embeddings.create({ model: 'mock-small', input: ['a', 'b', 'c'] });
    assert.equal(result.data.length, 3);
    assert.ok(Array.isArray(result.data[0]?.embedding));
  });

  test('requests are routed by model', async () => {
    const before = other.requests.length;
    await client.chat.completions.create({
      model: 'other-model',
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(other.requests.length, before + 1);
    assert.equal((other.requests.at(-1)?.body as { model: string }).model, 'other-model');
  });

  test('a model nobody serves is a 404 in OpenAI shape', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.NotFoundError);
        assert.match(error.message, /not served by any upstream/);
        assert.equal((error.error as { code?: string }).code, 'model_not_found');
        return true;
      },
    );
  });

  test('a wrong key is a 401 AuthenticationError', async () => {
    const wrong = new OpenAI({
      apiKey: 'pk_' + 'A'.repeat(43),
      baseURL: `${palisade.url}/v1`,
      maxRetries: 0,
    });
    await assert.rejects(wrong.models.list(), OpenAI.AuthenticationError);
  });

  test('/metrics counts requests and the tokens upstreams reported', async () => {
    const response = await fetch(`${palisade.url}/metrics`);
    const text = await response.text();
    const completion = /palisade_tokens_total\{kind="completion"\} (\d+)/.exec(text);
    assert.ok(completion && Number(completion[1]) > 0, 'completion tokens counted');
    assert.match(
      text,
      /palisade_http_requests_total\{route="\/v1\/chat\/completions",status="200"\} \d+/,
    );
    assert.match(text, /palisade_http_request_duration_seconds_bucket/);
  });

  test('every request is one access line with its request id, and no key in any log line', async () => {
    const response = await fetch(`${palisade.url}/v1/models`, {
      headers: { authorization: `Bearer ${key}` },
    });
    const requestId = response.headers.get('x-request-id');
    assert.match(requestId ?? '', /^req_[0-9a-f]{24}$/);
    const lines = logRecords(palisade.logs).filter((r) => r.request_id === requestId);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.status, 200);
    const all = palisade.logs.join('');
    assert.ok(!all.includes(key), 'the API key is never logged');
    assert.ok(!/authorization/i.test(all), 'no Authorization header is logged');
    assert.ok(!all.includes('Say hello'), 'no request body is logged');
  });
});

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from './mock-upstream.js';

let upstream: MockUpstream;

before(async () => {
  upstream = await startMockUpstream({ apiKey: 'sk-mock' });
});

after(async () => {
  await upstream.close();
});

interface ChatChunk {
  choices: Array<{ delta: { role?: string; content?: string }; finish_reason: string | null }>;
  usage?: { completion_tokens: number } | null;
}

const auth = { authorization: 'Bearer sk-mock', 'content-type': 'application/json' };

function post(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${upstream.url}${path}`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify(body),
    signal: signal ?? null,
  });
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('lists models and records the request', async () => {
  const res = await fetch(`${upstream.url}/v1/models`, { headers: auth });
  assert.equal(res.status, 200);
  const body = (await res.json()) as {
    object: string;
    data: Array<{ id: string; object: string }>;
  };
  assert.equal(body.object, 'list');
  assert.deepEqual(
    body.data.map((m) => m.id),
    ['mock-small', 'mock-large'],
  );
  assert.equal(body.data[0]?.object, 'model');
  const last = upstream.requests.at(-1);
  assert.equal(last?.method, 'GET');
  assert.equal(last?.path, '/v1/models');
});

test('refuses a wrong key with a 401 OpenAI error', async () => {
  const res = await fetch(`${upstream.url}/v1/models`, { headers: { authorization: 'Bearer no' } });
  assert.equal(res.status, 401);
  const body = (await res.json()) as { error: { code: string } };
  assert.equal(body.error.code, 'invalid_api_key');
});

test('answers a JSON chat completion with n choices', async () => {
  const res = await post('/v1/chat/completions', {
    model: 'mock-small',
    n: 2,
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as {
    object: string;
    choices: Array<{ index: number; message: { content: string } }>;
    usage: { total_tokens: number };
  };
  assert.equal(body.object, 'chat.completion');
  assert.equal(body.choices.length, 2);
  assert.equal(body.choices[1]?.message.content, 'Hello from mock-small');
  assert.ok(body.usage.total_tokens > 0);
  assert.deepEqual(upstream.requests.at(-1)?.body, {
    model: 'mock-small',
    n: 2,
    messages: [{ role: 'user', content: 'hi' }],
  });
});

test('streams a chat completion as SSE ending with [DONE]', async () => {
  const res = await post('/v1/chat/completions', {
    model: 'mock-large',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const events = (await res.text()).split('\n\n').filter((e) => e !== '');
  assert.equal(events.at(-1), 'data: [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as ChatChunk);
  assert.equal(chunks[0]?.choices[0]?.delta.role, 'assistant');
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  assert.equal(text, 'Hello from mock-large');
  assert.equal(chunks.at(-2)?.choices[0]?.finish_reason, 'stop');
  assert.equal(chunks.at(-1)?.usage?.completion_tokens, 5);
});

test('streams a text completion', async () => {
  const res = await post('/v1/completions', { model: 'mock-small', prompt: 'x', stream: true });
  const text = await res.text();
  assert.ok(text.includes('"object":"text_completion"'));
  assert.ok(text.endsWith('data: [DONE]\n\n'));
});

test('embeds one vector per input, as floats or base64', async () => {
  const res = await post('/v1/embeddings', { model: 'mock-small', input: ['a', 'b', 'c'] });
  const body = (await res.json()) as { data: Array<{ index: number; embedding: number[] }> };
  assert.deepEqual(
    body.data.map((d) => d.index),
    [0, 1, 2],
  );
  assert.equal(body.data[0]?.embedding.length, 8);
  const b64 = await post('/v1/embeddings', {
    model: 'mock-small',
    input: 'a',
    encoding_format: 'base64',
  });
  const encoded = (await b64.json()) as { data: Array<{ embedding: string }> };
  const bytes = Buffer.from(encoded.data[0]?.embedding ?? '', 'base64');
  assert.equal(bytes.length, 8 * 4);
  assert.ok(Math.abs(bytes.readFloatLE(0) - (body.data[0]?.embedding[0] ?? NaN)) < 1e-6);
});

test('behaviour models: errors, not-json and unknown paths', async () => {
  const bad = await post('/v1/chat/completions', { model: 'error-400', messages: [] });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'bad');
  const boom = await post('/v1/chat/completions', { model: 'error-500', messages: [] });
  assert.equal(boom.status, 500);
  assert.equal(await boom.text(), 'upstream exploded');
  const html = await post('/v1/chat/completions', { model: 'not-json', messages: [] });
  assert.match(html.headers.get('content-type') ?? '', /text\/html/);
  assert.equal(await html.text(), '<html>oops</html>');
  const missing = await fetch(`${upstream.url}/v2/nope`, { headers: auth });
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'unknown_url');
});

test('counts an endless stream the client abandons', async () => {
  const before = upstream.abortedStreams;
  const controller = new AbortController();
  const res = await post(
    '/v1/chat/completions',
    { model: 'endless-stream', stream: true, messages: [] },
    controller.signal,
  );
  assert.ok(res.body);
  const reader = res.body.getReader();
  let received = 0;
  while (received < 3) {
    const { value } = await reader.read();
    received += (new TextDecoder().decode(value).match(/data: /g) ?? []).length;
  }
  assert.equal(upstream.openStreams, 1);
  controller.abort();
  await waitFor(() => upstream.abortedStreams === before + 1, 'the abort to be counted');
  await waitFor(() => upstream.openStreams === 0, 'the stream to close');
});

test('the openai client reads chat streams and default base64 embeddings', async () => {
  const client = new OpenAI({ apiKey: 'sk-mock', baseURL: `${upstream.url}/v1`, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: 'mock-small',
    stream: true,
    messages: [{ role: 'user', content: 'hi' }],
  });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
  assert.equal(text, 'Hello from mock-small');
  const embedded = await client.embeddings.create({ model: 'mock-small', input: 'a' });
  assert.equal(embedded.data[0]?.embedding.length, 8);
});

test('a stalled stream sends only the role chunk and stays open', async () => {
  const slow = await startMockUpstream({ chunkDelayMs: 5, streamChunks: 3 });
  try {
    const res = await fetch(`${slow.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stall-stream', stream: true, messages: [] }),
    });
    assert.ok(res.body);
    const first = await res.body.getReader().read();
    assert.match(new TextDecoder().decode(first.value), /"role":"assistant"/);
    await sleep(50);
    assert.equal(slow.openStreams, 1);
  } finally {
    await slow.close();
  }
  assert.equal(slow.openStreams, 0);
  assert.equal(slow.abortedStreams, 1);
});

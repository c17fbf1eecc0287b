import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { Conversation } from '../../src/chat/index.js';
import { tinyGguf, writeTinyGguf } from '../fixtures/gguf.js';
import { FAST_SCRYPT_ENV, newSignedInUser, sendMessage } from '../support/web.js';
import {
  logRecords,
  runCli,
  startPalisade,
  tempHome,
  type TestPalisade,
} from '../support/palisade.js';

/** Embedded inference on this machine's CPU: one thread, no GPU, nothing compiled or fetched. */
const LOCAL_ENV = { PALISADE_LOCAL_GPU: 'false', PALISADE_LOCAL_THREADS: '1' };

async function metric(palisade: TestPalisade, line: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${palisade.url}/metrics`)).text();
  for (const row of text.split('\n')) {
    if (line.test(row)) return Number(row.split(' ').at(-1));
  }
  return undefined;
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('a generated GGUF model served in-process as the upstream "local"', () => {
  let palisade: TestPalisade;
  let client: OpenAI;
  const dir = tempHome('palisade-models-');
  const modelPath = join(dir, 'tiny.gguf');

  before(async () => {
    writeTinyGguf(modelPath);
    palisade = await startPalisade({
      env: {
        ...LOCAL_ENV,
        ...FAST_SCRYPT_ENV,
        PALISADE_MODELS: modelPath,
        PALISADE_MAX_TOKENS: '16',
      },
    });
    client = new OpenAI({ apiKey: 'unused', baseURL: `${palisade.url}/v1`, maxRetries: 0 });
  });
  after(() => palisade.close());

  test('lists the model and reports the upstream healthy', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => [m.id, m.owned_by]),
      [['tiny', 'local']],
    );
    const health = (await (await fetch(`${palisade.url}/healthz`)).json()) as {
      upstreams: Array<{ name: string; healthy: boolean; models: number }>;
    };
    assert.deepEqual(health.upstreams, [{ name: 'local', healthy: true, models: 1 }]);
  });

  test('non-streaming chat generates tokens up to max_tokens, with usage', async () => {
    const completion = await client.chat.completions.create({
      model: 'tiny',
      messages: [
        { role: 'system', content: 'You are tiny.' },
        { role: 'user', content: 'Say something' },
      ],
      max_tokens: 12,
    });
    const choice = completion.choices[0];
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, 'tiny');
    assert.equal(choice?.finish_reason, 'length');
    assert.ok((choice?.message.content ?? '').length > 0, 'some text');
    assert.match(choice?.message.content ?? '', /^[\x20-\x7e]*$/, 'printable text');
    assert.equal(completion.usage?.completion_tokens, 12);
    // The chat template wraps the two messages: more prompt tokens than their bytes alone.
    assert.ok((completion.usage?.prompt_tokens ?? 0) > 'You are tiny.Say something'.length);
  });

  test('streaming chat sends the text piece by piece, then usage and [DONE]', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Stream please' }],
      max_tokens: 10,
      stream: true,
      stream_options: { include_usage: true },
    });
    const pieces: string[] = [];
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta.content;
      if (delta) pieces.push(delta);
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(pieces.length >= 2, `several pieces (got ${pieces.length})`);
    assert.equal(finish, 'length');
    assert.equal(usage?.completion_tokens, 10);
  });

  test('greedy decoding is repeatable, and a stop sequence cuts the text before it', async () => {
    const ask = (stop?: string[]) =>
      client.completions.create({
        model: 'tiny',
        prompt: 'Once upon a time',
        max_tokens: 16,
        temperature: 0,
        ...(stop ? { stop } : {}),
      });
    const first = await ask();
    const again = await ask();
    const text = first.choices[0]?.text ?? '';
    assert.equal(again.choices[0]?.text, text, 'the same text twice at temperature 0');
    assert.ok(text.length >= 8, `enough text to cut (${JSON.stringify(text)})`);
    const stop = text.slice(4, 6);
    const cut = await ask([stop]);
    assert.equal(cut.choices[0]?.text, text.slice(0, text.indexOf(stop)));
    assert.equal(cut.choices[0]?.finish_reason, 'stop');
  });

  test('embeddings: one vector of the model width per input', async () => {
    const result = await client.embeddings.create({ model: 'tiny', input: ['one', 'two words'] });
    assert.equal(result.data.length, 2);
    assert.equal(result.data[0]?.embedding.length, 64);
    assert.ok(result.data[0]?.embedding.every((x) => Number.isFinite(x)));
    assert.ok((result.usage?.prompt_tokens ?? 0) > 0);
  });

  test('Anthropic clients reach it through /v1/messages as well', async () => {
    const anthropic = new Anthropic({ apiKey: 'unused', baseURL: palisade.url, maxRetries: 0 });
    const message = await anthropic.messages.create({
      model: 'tiny',
      max_tokens: 8,
      messages: [{ role: 'user', content: 'Hello' }],
    });
    assert.equal(message.stop_reason, 'max_tokens');
    assert.equal(message.usage.output_tokens, 8);
  });

  test('the gateway policy applies: an oversized max_tokens is clamped, bad input is a 400 with request_id', async () => {
    const bad = await fetch(`${palisade.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], n: 2 }),
    });
    assert.equal(bad.status, 400);
    const body = (await bad.json()) as { error: { message: string }; request_id?: string };
    assert.match(body.error.message, /one choice/);
    assert.equal(body.request_id, bad.headers.get('x-request-id'));

    const greedy = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 100_000,
    });
    assert.equal(greedy.usage?.completion_tokens, 16, 'clamped to PALISADE_MAX_TOKENS');

    const image = await fetch(`${palisade.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny',
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
      }),
    });
    assert.equal(image.status, 400);
    assert.match(
      ((await image.json()) as { error: { message: string } }).error.message,
      /text only/,
    );
  });

  test('the web chat answers with the local model, streamed', async () => {
    const alice = await newSignedInUser(palisade, 'alice');
    const created = await alice.post('/api/conversations', {});
    assert.equal(created.status, 201, created.text);
    const conversation = created.body as Conversation;
    // A personal key saved for an upstream named "local" does not replace the gateway's token.
    const key = await alice.put('/api/settings/upstream-keys/local', { key: 'sk-personal-0001' });
    assert.equal(key.status, 200, key.text);
    const events = await sendMessage(alice, conversation.id, { content: 'Hi', model: 'tiny' });
    const text = events.flatMap((e) => (e.type === 'delta' ? [e.text] : [])).join('');
    assert.ok(text.length > 0, 'streamed text');
    assert.equal(events.at(-1)?.type, 'done');
  });

  test('the loopback port takes only the gateway: no token, no answer', async () => {
    const local = palisade.server.local;
    assert.ok(local);
    const direct = await fetch(`${local.url}/v1/models`);
    assert.equal(direct.status, 401);
    const wrong = await fetch(`${local.url}/v1/models`, {
      headers: { authorization: `Bearer ${'x'.repeat(local.apiKey.length)}` },
    });
    assert.equal(wrong.status, 401);
  });

  test('API keys and the request log apply unchanged', async () => {
    const key = await palisade.createKey({ name: 'local-user' });
    const anonymous = await fetch(`${palisade.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(anonymous.status, 401);
    const keyed = new OpenAI({ apiKey: key, baseURL: `${palisade.url}/v1`, maxRetries: 0 });
    await keyed.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'audited' }],
      max_tokens: 3,
    });
    await waitFor(
      async () =>
        logRecords(palisade.logs).some(
          (r) => r.msg === 'request' && r.upstream === 'local' && typeof r.key_id === 'string',
        ),
      'the request log line naming the key and the upstream',
    );
  });
});

describe('the embedded model under load and over time', () => {
  let palisade: TestPalisade;
  let client: OpenAI;
  const dir = tempHome('palisade-models-');

  before(async () => {
    // A long context so that a generation runs long enough to be cut or queued behind.
    writeTinyGguf(join(dir, 'long.gguf'), { contextLength: 4096 });
    palisade = await startPalisade({
      env: {
        ...LOCAL_ENV,
        PALISADE_MODELS: join(dir, 'long.gguf'),
        PALISADE_LOCAL_CONTEXT: '4096',
        PALISADE_LOCAL_PARALLEL: '1',
        PALISADE_LOCAL_QUEUE: '1',
        PALISADE_LOCAL_IDLE_UNLOAD: '1s',
      },
    });
    client = new OpenAI({ apiKey: 'unused', baseURL: `${palisade.url}/v1`, maxRetries: 0 });
  });
  after(() => palisade.close());

  const longStream = (signal: AbortSignal) =>
    client.chat.completions.create(
      {
        model: 'long',
        messages: [{ role: 'user', content: 'Go on for a long time' }],
        max_tokens: 4000,
        stream: true,
      },
      { signal },
    );

  test('a client that disconnects stops the generation', async () => {
    const controller = new AbortController();
    const stream = await longStream(controller.signal);
    let chunks = 0;
    try {
      for await (const chunk of stream) {
        void chunk;
        chunks += 1;
        if (chunks === 5) controller.abort();
      }
    } catch (error) {
      assert.ok(controller.signal.aborted, `only the abort ends the stream: ${String(error)}`);
    }
    const cancelled = /^palisade_local_requests_total\{.*status="cancelled".*\} /;
    await waitFor(
      async () => (await metric(palisade, cancelled)) === 1,
      'the cancelled generation',
    );
    const generated = await metric(palisade, /^palisade_local_generated_tokens_total\{/);
    assert.ok(generated !== undefined && generated < 4000, `stopped early (${generated} tokens)`);
    assert.equal(await metric(palisade, /^palisade_local_running /), 0);
  });

  test('requests beyond the parallelism wait in the queue; beyond the queue they get 503', async () => {
    const controller = new AbortController();
    const running = await longStream(controller.signal);
    const iterator = running[Symbol.asyncIterator]();
    await iterator.next(); // generating now
    const waiting = client.chat.completions.create({
      model: 'long',
      messages: [{ role: 'user', content: 'after you' }],
      max_tokens: 4,
    });
    await waitFor(
      async () => (await metric(palisade, /^palisade_local_queued /)) === 1,
      'a queued request',
    );
    const refused = await fetch(`${palisade.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'long',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 4,
      }),
    });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1', 'the hint is passed on');
    const body = (await refused.json()) as {
      error: { code: string; message: string };
      request_id: string;
    };
    assert.equal(body.error.code, 'local_queue_full');
    assert.match(body.error.message, /PALISADE_LOCAL_QUEUE/);
    assert.ok(body.request_id);
    controller.abort();
    await iterator.return?.().catch(() => undefined);
    const answer = await waiting;
    assert.equal(
      answer.usage?.completion_tokens,
      4,
      'the queued request ran once the slot was free',
    );
  });

  test('an idle model is unloaded, and loaded again by the next request', async () => {
    await client.chat.completions.create({
      model: 'long',
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 2,
    });
    await waitFor(
      async () => (await metric(palisade, /^palisade_local_loaded_models /)) === 0,
      'the idle unload',
    );
    const again = await client.chat.completions.create({
      model: 'long',
      messages: [{ role: 'user', content: 'y' }],
      max_tokens: 2,
    });
    assert.equal(again.usage?.completion_tokens, 2);
    const unloaded = logRecords(palisade.logs).filter((r) => r.msg === 'local model unloaded');
    assert.ok(unloaded.length >= 1);
  });
});

describe('model files that are not valid GGUF', () => {
  test('serve --model with a corrupted file exits 2 before anything is loaded', async () => {
    const dir = tempHome('palisade-models-');
    const bytes = tinyGguf();
    writeFileSync(join(dir, 'cut.gguf'), bytes.subarray(0, bytes.length - 1000));
    const result = await runCli(['serve', '--model', join(dir, 'cut.gguf'), '--home', tempHome()], {
      env: { ...LOCAL_ENV, PALISADE_PORT: '0' },
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--model .*cut\.gguf is refused: .*past the end of the file/);
  });

  test('a corrupted file in the models folder is left out with a warning; the valid ones are served', async () => {
    const home = tempHome();
    const models = join(home, 'models');
    mkdirSync(models, { recursive: true, mode: 0o700 });
    writeTinyGguf(join(models, 'good.gguf'));
    writeFileSync(join(models, 'html.gguf'), '<!doctype html><title>Not Found</title>'.repeat(10));
    const garbled = tinyGguf();
    garbled.writeUInt32LE(7, 4);
    writeFileSync(join(models, 'garbled.gguf'), garbled);
    copyFileSync(join(models, 'good.gguf'), join(models, 'not-a-model.txt'));
    // A symlink out of the folder is refused like `models list` refuses it (--model is for that).
    const elsewhere = join(tempHome('palisade-elsewhere-'), 'outside.gguf');
    writeTinyGguf(elsewhere);
    symlinkSync(elsewhere, join(models, 'outside.gguf'));
    const palisade = await startPalisade({ home, env: LOCAL_ENV });
    try {
      const client = new OpenAI({ apiKey: 'unused', baseURL: `${palisade.url}/v1`, maxRetries: 0 });
      const listed = (await client.models.list()).data.map((m) => m.id);
      assert.deepEqual(listed, ['good']);
      const warnings = logRecords(palisade.logs).filter(
        (r) => r.msg === 'model file in the models folder refused',
      );
      assert.deepEqual(warnings.map((w) => String(w.file).split('/').at(-1)).sort(), [
        'garbled.gguf',
        'html.gguf',
        'outside.gguf',
      ]);
      assert.match(
        String(warnings.find((w) => String(w.file).endsWith('html.gguf'))?.err),
        /not a GGUF model/,
      );
      const answer = await client.chat.completions.create({
        model: 'good',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 2,
      });
      assert.equal(answer.usage?.completion_tokens, 2);
    } finally {
      await palisade.close();
    }
  });

  test('a file that passes the header check but crashes llama.cpp is refused, and the server lives on', async () => {
    const home = tempHome();
    const models = join(home, 'models');
    mkdirSync(models, { recursive: true, mode: 0o700 });
    writeTinyGguf(join(models, 'good.gguf'));
    // No key-value heads: structurally fine, but llama.cpp aborts its process on it.
    const crashing = tinyGguf();
    const key = Buffer.from('llama.attention.head_count_kv');
    crashing.writeUInt32LE(0, crashing.indexOf(key) + key.length + 4);
    writeFileSync(join(models, 'crashing.gguf'), crashing);
    const palisade = await startPalisade({ home, env: LOCAL_ENV });
    try {
      const ask = (model: string) =>
        fetch(`${palisade.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model,
            messages: [{ role: 'user', content: 'x' }],
            max_tokens: 2,
          }),
        });
      const refused = await ask('crashing');
      assert.equal(refused.status, 500);
      const body = (await refused.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'model_invalid');
      assert.match(
        body.error.message,
        /cannot be served: llama\.cpp crashed \(SIGABRT\) loading it in a test process: .*GGML_ASSERT/,
      );
      assert.ok(!body.error.message.includes(home), 'no path in the answer');
      const again = await ask('crashing');
      assert.equal(again.status, 500, 'the verdict is kept');
      const served = await ask('good');
      assert.equal(served.status, 200, 'the server and the other model are fine');
    } finally {
      await palisade.close();
    }
  });
});

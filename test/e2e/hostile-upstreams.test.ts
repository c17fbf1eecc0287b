import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { addUpstream } from '../../src/gateway/index.js';
import { loadMasterKey } from '../../src/crypto/index.js';
import { openStore } from '../../src/store/index.js';
import { head, rawRequest } from '../support/http.js';
import { startMockUpstream } from '../support/mock-upstream.js';
import { runCli, startPalisade, tempHome } from '../support/palisade.js';

const badUsage = { prompt_tokens: -5, completion_tokens: -1, total_tokens: -6 };
const chunk = (delta: Record<string, unknown>, usage?: unknown) => ({
  id: 'c',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'liar',
  choices: [{ index: 0, delta, finish_reason: usage ? 'stop' : null }],
  ...(usage ? { usage } : {}),
});

async function post(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const response = await request(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.statusCode, text: await response.body.text() };
}

describe('hostile upstreams and odd requests', () => {
  test('nonsense usage numbers from an upstream are ignored, never a crash or a 500', async () => {
    const upstream = await startMockUpstream({
      models: ['liar'],
      scripts: {
        liar: {
          json: {
            id: 'x',
            object: 'chat.completion',
            created: 1,
            model: 'liar',
            choices: [
              { index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'hi' } },
            ],
            usage: badUsage,
          },
          chunks: [chunk({ role: 'assistant', content: 'hi' }), chunk({}, badUsage)],
        },
      },
    });
    const palisade = await startPalisade({
      env: {
        PALISADE_UPSTREAMS: `mock=${upstream.url}`,
        PALISADE_ANTHROPIC_MODELS: 'claude-*=liar',
      },
    });
    try {
      const messages = [{ role: 'user', content: 'x' }];
      assert.equal(
        (await post(palisade.url, '/v1/chat/completions', { model: 'liar', messages })).status,
        200,
      );
      const stream = await post(palisade.url, '/v1/chat/completions', {
        model: 'liar',
        messages,
        stream: true,
      });
      assert.match(stream.text, /\[DONE\]/);
      const anthropic = { model: 'claude-x', max_tokens: 5, messages };
      assert.equal((await post(palisade.url, '/v1/messages', anthropic)).status, 200);
      const anthropicStream = await post(palisade.url, '/v1/messages', {
        ...anthropic,
        stream: true,
      });
      assert.match(anthropicStream.text, /event: message_stop/);
      assert.equal((await request(`${palisade.url}/healthz`)).statusCode, 200, 'still serving');
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test("an upstream echoing Palisade's upstream key does not pass it to the client", async () => {
    const secret = 'sk-upstream-echo-0123456789';
    const upstream = await startMockUpstream({
      models: ['echo'],
      apiKey: secret,
      scripts: {
        echo: { status: 400, json: { error: { message: `you sent Bearer ${secret}`, type: 'x' } } },
      },
    });
    const home = tempHome();
    const store = await openStore(home);
    await addUpstream(store, loadMasterKey(home), {
      name: 'echoer',
      url: upstream.url,
      apiKey: secret,
    });
    await store.close();
    const palisade = await startPalisade({ home });
    try {
      const answer = await post(palisade.url, '/v1/chat/completions', {
        model: 'echo',
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.equal(answer.status, 400);
      assert.ok(!answer.text.includes(secret), answer.text);
      assert.match(answer.text, /you sent Bearer \[redacted\]/);
      assert.ok(!palisade.logs.join('').includes(secret));
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('undecodable URLs and unknown Anthropic routes answer in the face-specific error shape', async () => {
    const palisade = await startPalisade();
    try {
      const bad = await rawRequest(palisade.url, head('GET', '/v1/%ZZ', { host: '127.0.0.1' }));
      assert.equal(bad.status, 400);
      const badBody = bad.json() as { error: { code: string }; request_id: string };
      assert.equal(badBody.error.code, 'bad_request');
      assert.equal(bad.headers['x-request-id'], badBody.request_id);
      const badAnthropic = await rawRequest(
        palisade.url,
        head('GET', '/v1/messages/%ZZ', { host: '127.0.0.1' }),
      );
      assert.equal((badAnthropic.json() as { type: string }).type, 'error');
      const missing = await request(`${palisade.url}/v1/messages/batches`);
      const missingBody = (await missing.body.json()) as { type: string; error: { type: string } };
      assert.equal(missing.statusCode, 404);
      assert.deepEqual([missingBody.type, missingBody.error.type], ['error', 'not_found_error']);
    } finally {
      await palisade.close();
    }
  });

  test('the CLI refuses key and upstream options that would silently widen or leak', async () => {
    const home = tempHome();
    const noModels = await runCli(['keys', 'create', 'k', '--models', ',,', '--home', home]);
    assert.equal(noModels.code, 2);
    assert.match(noModels.stderr, /--models needs at least one/);
    const forever = await runCli([
      'keys',
      'create',
      'k',
      '--expires',
      '99999999999d',
      '--home',
      home,
    ]);
    assert.equal(forever.code, 2);
    assert.match(forever.stderr, /--expires/);
    const query = await runCli([
      'upstreams',
      'add',
      'q',
      'http://127.0.0.1:9/?token=hunter3',
      '--home',
      home,
    ]);
    assert.equal(query.code, 1);
    assert.match(query.stderr, /query string/);
    assert.ok(!query.stderr.includes('hunter3'));
    const listed = await runCli(['keys', 'list', '--json', '--home', home]);
    assert.deepEqual(JSON.parse(listed.stdout), [], 'nothing was stored');
  });
});

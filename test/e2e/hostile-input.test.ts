import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { listApiKeys, revokeApiKey } from '../../src/auth/index.js';
import { openStore } from '../../src/store/index.js';
import { verifyAudit } from '../../src/audit/index.js';
import { head, rawRequest, sendRequest } from '../support/http.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';

const BODY_LIMIT = 64 * 1024;

describe('hostile input against /v1', () => {
  let upstream: MockUpstream;
  let palisade: TestPalisade;
  let key: string;
  let keysBefore: string;

  before(async () => {
    upstream = await startMockUpstream({ models: ['mock-small', 'endless-stream', 'allowed-one'] });
    palisade = await startPalisade({
      env: {
        PALISADE_UPSTREAMS: `mock=${upstream.url}`,
        PALISADE_BODY_LIMIT: String(BODY_LIMIT),
        PALISADE_MAX_TOKENS: '512',
        PALISADE_MAX_HEADER_SIZE: '8kb',
        PALISADE_CORS_ORIGINS: 'https://app.example.com',
        PALISADE_ALLOWED_HOSTS: 'llm.example.com',
      },
    });
    key = await palisade.createKey({ name: 'main' });
    keysBefore = JSON.stringify(await listApiKeys(palisade.server.store));
  });

  after(async () => {
    await palisade.close();
    await upstream.close();
  });

  async function call(
    path: string,
    options: {
      method?: 'GET' | 'POST' | 'OPTIONS';
      body?: unknown;
      headers?: Record<string, string>;
      auth?: string | null;
    } = {},
  ) {
    const response = await sendRequest(`${palisade.url}${path}`, {
      ...(options.method ? { method: options.method } : {}),
      ...(options.body === undefined ? {} : { body: options.body }),
      headers: { 'content-type': 'application/json', ...options.headers },
      token: options.auth === undefined ? key : options.auth,
    });
    return { ...response, json: () => response.json<ErrorBody>() };
  }

  interface ErrorBody {
    error: { message: string; type: string; code: string };
    request_id: string;
  }

  function assertError(
    response: { status: number; headers: Record<string, unknown>; json: () => ErrorBody },
    status: number,
    code: string,
    message?: RegExp,
  ) {
    assert.equal(response.status, status);
    const body = response.json();
    assert.equal(body.error.code, code);
    assert.equal(typeof body.error.message, 'string');
    assert.equal(typeof body.error.type, 'string');
    assert.match(body.request_id, /^req_[0-9a-f]{24}$/);
    assert.equal(response.headers['x-request-id'], body.request_id);
    if (message) assert.match(body.error.message, message);
  }

  const chat = (extra: Record<string, unknown> = {}) => ({
    model: 'mock-small',
    messages: [{ role: 'user', content: 'hi' }],
    ...extra,
  });

  test('Content-Length over the limit is refused with 413 before the body is read', async () => {
    const response = await rawRequest(
      palisade.url,
      head('POST', '/v1/chat/completions', {
        host: '127.0.0.1',
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'content-length': 100 * 1024 * 1024,
      }),
    );
    assert.equal(response.status, 413);
    const body = response.json() as {
      error: { code: string; message: string };
      request_id: string;
    };
    assert.equal(body.error.code, 'body_too_large');
    assert.match(body.error.message, /PALISADE_BODY_LIMIT/);
    assert.match(body.request_id, /^req_/);
  });

  test('a chunked body is counted while read and cut at the limit with 413', async () => {
    let sent = 0;
    async function* endless() {
      yield '{"model":"mock-small","messages":[{"role":"user","content":"';
      for (let i = 0; i < 1000; i++) {
        const chunk = 'x'.repeat(4096);
        sent += chunk.length;
        yield `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
        await new Promise((r) => setImmediate(r));
      }
    }
    async function* framed() {
      const first = '{"model":"mock-small","messages":[{"role":"user","content":"';
      yield `${first.length.toString(16)}\r\n${first}\r\n`;
      for await (const part of endless()) if (!part.startsWith('{')) yield part;
    }
    const response = await rawRequest(
      palisade.url,
      head('POST', '/v1/chat/completions', {
        host: '127.0.0.1',
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'transfer-encoding': 'chunked',
      }),
      framed(),
    );
    assert.equal(response.status, 413);
    assert.ok(
      sent < 4 * 1024 * 1024,
      `the server stopped reading early (client sent ${sent} bytes)`,
    );
  });

  test('malformed JSON, wrong content type and an empty body are 400/415', async () => {
    assertError(
      await call('/v1/chat/completions', { body: '{"model": "mock-small", ' }),
      400,
      'invalid_json',
    );
    assertError(await call('/v1/chat/completions', { body: 'null' }), 400, 'invalid_request');
    assertError(await call('/v1/chat/completions', { body: '[1,2]' }), 400, 'invalid_request');
    assertError(
      await call('/v1/chat/completions', {
        body: 'model=x',
        headers: { 'content-type': 'text/plain' },
      }),
      415,
      'unsupported_media_type',
    );
    assertError(await call('/v1/chat/completions', { body: '' }), 400, 'invalid_json');
  });

  test('wrong types and shapes are 400 with the field named', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ messages: [{ role: 'user', content: 'x' }] }, /^model is required$/],
      [chat({ model: 42 }), /^model: must be a string/],
      [chat({ messages: 'hello' }), /^messages: must be an array/],
      [
        chat({ messages: [{ role: 'root', content: 'x' }] }),
        /^messages\[0\]\.role: must be one of/,
      ],
      [chat({ max_tokens: -1 }), /^max_tokens: must be a positive integer$/],
      [chat({ max_tokens: 2.5 }), /^max_tokens: must be a positive integer$/],
      [chat({ max_tokens: '100' }), /^max_tokens: must be a positive integer$/],
      [chat({ max_completion_tokens: -3 }), /^max_completion_tokens: must be a positive integer$/],
      [chat({ n: 0 }), /^n: /],
      [chat({ stream: 'true' }), /^stream: must be true or false$/],
    ];
    for (const [body, message] of cases) {
      assertError(await call('/v1/chat/completions', { body }), 400, 'invalid_request', message);
    }
    assertError(
      await call('/v1/embeddings', { body: { model: 'mock-small', input: {} } }),
      400,
      'invalid_request',
      /^input: /,
    );
  });

  test('deeply nested JSON and prototype pollution are 400, not a crash', async () => {
    const deep = `{"model":"mock-small","messages":[{"role":"user","content":"x"}],"extra":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
    const response = await call('/v1/chat/completions', { body: deep });
    assert.equal(response.status, 400, response.text);
    assertError(
      await call('/v1/chat/completions', {
        body: '{"__proto__":{"admin":true},"model":"mock-small","messages":[]}',
      }),
      400,
      'invalid_json',
    );
    const health = await call('/healthz');
    assert.equal(health.status, 200, 'still serving');
  });

  test('huge max_tokens is clamped to PALISADE_MAX_TOKENS, absent is set to it', async () => {
    assert.equal(
      (await call('/v1/chat/completions', { body: chat({ max_tokens: 10 ** 12 }) })).status,
      200,
    );
    assert.equal(
      (upstream.requests.filter((r) => r.method === 'POST').at(-1)?.body as { max_tokens: number })
        .max_tokens,
      512,
    );
    assert.equal((await call('/v1/chat/completions', { body: chat({ n: 1000 }) })).status, 200);
    const last = upstream.requests.filter((r) => r.method === 'POST').at(-1)?.body as {
      max_tokens: number;
      n: number;
    };
    assert.equal(last.max_tokens, 512);
    assert.equal(last.n, 4);
  });

  test('missing, unknown, revoked and expired keys are 401 saying which', async () => {
    const missing = await call('/v1/models', { auth: null });
    assertError(missing, 401, 'missing_api_key', /palisade keys create/);
    assert.match(String(missing.headers['www-authenticate']), /^Bearer realm="palisade"/);
    assertError(await call('/v1/models', { auth: 'pk_' + 'Z'.repeat(43) }), 401, 'invalid_api_key');
    assertError(await call('/v1/models', { auth: 'not-even-a-key' }), 401, 'invalid_api_key');

    const revoked = await palisade.createKey({ name: 'to-revoke' });
    assert.equal((await call('/v1/models', { auth: revoked })).status, 200);
    // Revoked from another connection, as `palisade keys revoke` does while the server runs.
    const cli = await openStore(palisade.home);
    await revokeApiKey(cli, 'to-revoke');
    await cli.close();
    assertError(await call('/v1/models', { auth: revoked }), 401, 'key_revoked', /revoked/);
    const expired = await palisade.createKey({ name: 'expired', expiresInMs: -1 });
    assertError(await call('/v1/models', { auth: expired }), 401, 'key_expired', /expired at/);
    keysBefore = JSON.stringify(await listApiKeys(palisade.server.store));
  });

  test('a key limited to some models gets 403 for others, and /v1/models shows only its models', async () => {
    const limited = await palisade.createKey({ name: 'limited', models: ['allowed-*'] });
    assertError(
      await call('/v1/chat/completions', { auth: limited, body: chat() }),
      403,
      'model_not_allowed',
      /may not use model "mock-small"/,
    );
    assert.equal(
      (await call('/v1/chat/completions', { auth: limited, body: chat({ model: 'allowed-one' }) }))
        .status,
      200,
    );
    const models = JSON.parse((await call('/v1/models', { auth: limited })).text) as {
      data: Array<{ id: string }>;
    };
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['allowed-one'],
    );
    keysBefore = JSON.stringify(await listApiKeys(palisade.server.store));
  });

  test('a Host that is not ours is refused (DNS rebinding)', async () => {
    for (const host of ['attacker.example', 'localhost.attacker.example', 'llm.example.com.evil']) {
      const response = await rawRequest(
        palisade.url,
        head('GET', '/v1/models', { host, authorization: `Bearer ${key}` }),
      );
      assert.equal(response.status, 403, host);
      assert.equal((response.json() as { error: { code: string } }).error.code, 'host_not_allowed');
    }
    const allowed = await rawRequest(
      palisade.url,
      head('GET', '/healthz', { host: 'llm.example.com:8642' }),
    );
    assert.equal(allowed.status, 200);
  });

  test('a foreign browser Origin is refused; a listed one gets CORS headers', async () => {
    assertError(
      await call('/v1/chat/completions', {
        body: chat(),
        headers: { origin: 'https://evil.example' },
      }),
      403,
      'origin_not_allowed',
      /PALISADE_CORS_ORIGINS/,
    );
    assertError(
      await call('/v1/models', { headers: { origin: 'null' } }),
      403,
      'origin_not_allowed',
    );
    const allowed = await call('/v1/models', { headers: { origin: 'https://app.example.com' } });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com');
    const preflight = await call('/v1/chat/completions', {
      method: 'OPTIONS',
      auth: null,
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' },
    });
    assert.equal(preflight.status, 204);
    assert.match(String(preflight.headers['access-control-allow-headers']), /authorization/);
    const foreignPreflight = await call('/v1/chat/completions', {
      method: 'OPTIONS',
      auth: null,
      headers: { origin: 'https://evil.example' },
    });
    assert.equal(foreignPreflight.status, 403);
  });

  test('oversized headers are refused with 431 in the usual error shape', async () => {
    const response = await rawRequest(
      palisade.url,
      head('GET', '/v1/models', {
        host: '127.0.0.1',
        authorization: `Bearer ${key}`,
        'x-junk': 'a'.repeat(20_000),
      }),
    );
    assert.equal(response.status, 431);
    const body = response.json() as { error: { code: string }; request_id: string };
    assert.equal(body.error.code, 'headers_too_large');
    assert.equal(response.headers['x-request-id'], body.request_id);
  });

  test('malformed HTTP is a JSON 400', async () => {
    const response = await rawRequest(palisade.url, 'GARBAGE\r\n\r\n');
    assert.equal(response.status, 400);
    assert.match((response.json() as { request_id: string }).request_id, /^req_/);
  });

  test('too many requests for a key get 429 with Retry-After', async () => {
    const slow = await palisade.createKey({ name: 'slow', rpm: 3 });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push(await call('/v1/models', { auth: slow }));
    assert.deepEqual(
      statuses.map((s) => s.status),
      [200, 200, 200, 429, 429],
    );
    assertError(statuses[3] as never, 429, 'rate_limited', /retry in \d+s/);
    assert.ok(Number(statuses[3]?.headers['retry-after']) >= 1);
    keysBefore = JSON.stringify(await listApiKeys(palisade.server.store));
  });

  test('guessing keys from one address runs into the per-IP limit', async () => {
    const statuses = new Set<number>();
    for (let i = 0; i < 80; i++) {
      statuses.add(
        (await call('/v1/models', { auth: `pk_${String(i).padStart(43, 'q')}` })).status,
      );
      if (statuses.has(429)) break;
    }
    assert.ok(statuses.has(401));
    assert.ok(statuses.has(429), 'unauthenticated traffic is rate limited per IP');
  });

  test('a key holding its stream cap gets 429 for one more stream', async () => {
    const capped = await palisade.createKey({ name: 'capped', maxStreams: 1 });
    const controller = new AbortController();
    const first = await request(`${palisade.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${capped}`, 'content-type': 'application/json' },
      body: JSON.stringify(chat({ model: 'endless-stream', stream: true })),
      signal: controller.signal,
    });
    assert.equal(first.statusCode, 200);
    const second = await call('/v1/chat/completions', {
      auth: capped,
      body: chat({ model: 'endless-stream', stream: true }),
    });
    assertError(second, 429, 'rate_limited', /streams open/);
    controller.abort();
    await first.body.text().catch(() => undefined);
    keysBefore = JSON.stringify(await listApiKeys(palisade.server.store));
  });

  test('unknown routes are JSON 404s', async () => {
    assertError(await call('/v1/nothing'), 404, 'not_found');
    assertError(await call('/../../etc/passwd'), 404, 'not_found');
    assertError(await call('/v1/%2e%2e/%2e%2e/etc/passwd'), 404, 'not_found');
  });

  test('after all that, stored keys are unchanged and the audit chain verifies', async () => {
    palisade.server.store.sqlite.pragma('wal_checkpoint(PASSIVE)');
    const keysAfter = JSON.stringify(await listApiKeys(palisade.server.store)).replace(
      /"lastUsedAt":"[^"]+"/g,
      '',
    );
    assert.equal(keysAfter, keysBefore.replace(/"lastUsedAt":"[^"]+"/g, ''));
    const audit = verifyAudit(palisade.server.store, palisade.home);
    assert.equal(audit.ok, true);
    assert.ok(audit.entries > 0, 'auth failures were audited');
  });
});

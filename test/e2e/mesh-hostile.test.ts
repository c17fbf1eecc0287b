import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { head, rawRequest, sendRequest, type JsonResponse } from '../support/http.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import { meshSnapshot } from '../support/mesh-snapshot.js';

const MB = 1024 * 1024;
const KB64 = 64 * 1024;

interface ErrorBody {
  error: { message: string; type: string; code: string };
  request_id: string;
}

type Response = JsonResponse;

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A client for one Palisade's /mesh, sending what it is told (hostile or not). */
function meshClient(palisade: () => TestPalisade) {
  return async function call(
    path: string,
    options: {
      method?: Method;
      /** An object is sent as JSON; a string or buffer as it is. */
      body?: unknown;
      headers?: Record<string, string>;
      /** The token to present; null sends no Authorization header. */
      auth?: string | null;
    } = {},
  ): Promise<Response> {
    const server = palisade();
    const { auth, ...rest } = options;
    return sendRequest(`${server.url}${path}`, {
      ...rest,
      token: auth === undefined ? server.server.mesh?.token : auth,
    });
  };
}

function assertError(
  response: Pick<Response, 'status' | 'headers' | 'json' | 'text'>,
  status: number,
  code: string,
  message?: RegExp,
): ErrorBody {
  assert.equal(response.status, status, response.text);
  assert.match(String(response.headers['content-type']), /^application\/json/);
  const body = response.json<ErrorBody>();
  assert.deepEqual(Object.keys(body).sort(), ['error', 'request_id']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'type']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.type, 'string');
  assert.equal(typeof body.error.message, 'string');
  assert.match(body.request_id, /^req_[0-9a-f]{24}$/);
  assert.equal(response.headers['x-request-id'], body.request_id);
  if (message) assert.match(body.error.message, message);
  return body;
}

interface SseFrame {
  id?: string;
  event?: string;
  data?: string;
  /** performance.now() when the frame's last byte arrived. */
  at: number;
}

/** Reads an SSE stream frame by frame, noting when each arrived. */
async function openSse(url: string, headers: Record<string, string>) {
  const response = await request(url, { headers });
  const frames: SseFrame[] = [];
  const waiters: Array<() => void> = [];
  let buffer = '';
  let ended = false;
  response.body.setEncoding('utf8');
  response.body.on('data', (chunk: string) => {
    const at = performance.now();
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const frame: SseFrame = { at };
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const field = line.slice(0, colon) as 'id' | 'event' | 'data';
        if (['id', 'event', 'data'].includes(field)) frame[field] = line.slice(colon + 1).trim();
      }
      frames.push(frame);
    }
    for (const wake of waiters.splice(0)) wake();
  });
  const finish = () => {
    ended = true;
    for (const wake of waiters.splice(0)) wake();
  };
  response.body.on('end', finish);
  response.body.on('error', finish);
  response.body.on('close', finish);

  let read = 0;
  return {
    status: response.statusCode,
    headers: response.headers,
    frames,
    /** The next frame (from where the last call stopped) that `match` accepts. */
    async next(match: (frame: SseFrame) => boolean, timeoutMs = 5_000): Promise<SseFrame> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        while (read < frames.length) {
          const frame = frames[read++] as SseFrame;
          if (match(frame)) return frame;
        }
        if (ended) throw new Error('the SSE stream ended');
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`no matching SSE frame within ${timeoutMs} ms`);
        await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), sleep(left)]);
      }
    },
    close: () => response.body.destroy(),
  };
}

describe('hostile input against /mesh', () => {
  let palisade: TestPalisade;
  const call = meshClient(() => palisade);
  let a: string;
  let b: string;
  let c: string;

  /** Runs a request that must be refused, and checks that the refusal changed nothing. */
  async function refused(
    status: number,
    code: string,
    send: () => Promise<Response>,
    message?: RegExp,
  ): Promise<ErrorBody> {
    const before = meshSnapshot(palisade);
    const body = assertError(await send(), status, code, message);
    assert.equal(meshSnapshot(palisade), before, `stored data unchanged after ${code}`);
    return body;
  }

  async function register(body: Record<string, unknown>): Promise<string> {
    const response = await call('/mesh/peers', { body });
    assert.equal(response.status, 201, response.text);
    return response.json<{ peer: { id: string } }>().peer.id;
  }

  before(async () => {
    // The per-peer limit has its own server below; here hundreds of hostile requests share
    // the anonymous bucket, so this server's limit is set out of their way.
    palisade = await startPalisade({ env: { PALISADE_MESH_RATE_LIMIT: '1000000' } });
    a = await register({ cwd: '/src/app', git_root: '/src', name: 'alice', agent: 'codex' });
    b = await register({ cwd: '/src/app', git_root: '/src', name: 'bob', agent: 'claude-code' });
    c = await register({ cwd: '/elsewhere', name: 'carol' });
    const sent = await call('/mesh/messages', { body: { from: a, to: b, text: 'first' } });
    assert.equal(sent.status, 201, sent.text);
    const state = await call('/mesh/state', {
      method: 'PUT',
      body: { peer_id: a, project: '/src', key: 'build', value: 'green' },
    });
    assert.equal(state.status, 200, state.text);
  });

  after(() => palisade.close());

  test('the token is 32 random bytes in hex, in mesh.token with mode 0600', () => {
    const token = palisade.server.mesh?.token ?? '';
    assert.match(token, /^[0-9a-f]{64}$/);
    const file = join(palisade.home, 'mesh.token');
    assert.equal(readFileSync(file, 'utf8').trim(), token);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  test('no token is 401 with WWW-Authenticate; a wrong one is 401; /mesh/health is open', async () => {
    for (const [method, path] of [
      ['GET', '/mesh/status'],
      ['GET', '/mesh/peers'],
      ['GET', `/mesh/peers/${a}/inbox`],
      ['GET', '/mesh/events'],
      ['GET', '/mesh/events/stream'],
      ['GET', '/mesh/claims'],
      ['DELETE', `/mesh/peers/${a}`],
    ] as const) {
      const body = await refused(401, 'missing_mesh_token', () =>
        call(path, { method, auth: null }),
      );
      assert.match(body.error.message, /mesh\.token/);
    }
    const missing = await call('/mesh/peers', { body: { cwd: '/x' }, auth: null });
    assertError(missing, 401, 'missing_mesh_token');
    assert.equal(missing.headers['www-authenticate'], 'Bearer realm="palisade-mesh"');

    const token = palisade.server.mesh?.token ?? '';
    const wrong = [
      'not-the-token',
      `${token.slice(0, -1)}${token.endsWith('0') ? '1' : '0'}`,
      `${token}0`,
      token.toUpperCase(),
      '',
    ];
    for (const presented of wrong) {
      const response = await refused(401, 'invalid_mesh_token', () =>
        call('/mesh/peers', { body: { cwd: '/x' }, auth: presented }),
      );
      assert.ok(!JSON.stringify(response).includes(token), 'the token is never echoed');
    }
    for (const authorization of [`Basic ${token}`, token, `Token ${token}`]) {
      const response = await call('/mesh/status', { auth: null, headers: { authorization } });
      assertError(response, 401, 'invalid_mesh_token');
      assert.equal(response.headers['www-authenticate'], 'Bearer realm="palisade-mesh"');
    }

    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      const response = await call('/mesh/status', {
        auth: null,
        headers: { authorization: `${scheme} ${token}` },
      });
      assert.equal(response.status, 200, `${scheme}: the scheme is case-insensitive`);
    }

    // Unknown paths under /mesh are behind the same door.
    assertError(await call('/mesh/nope', { auth: null }), 401, 'missing_mesh_token');
    assertError(await call('/mesh', { auth: null }), 401, 'missing_mesh_token');
    assertError(await call('/mesh/nope'), 404, 'not_found');

    const health = await call('/mesh/health', { auth: null });
    assert.equal(health.status, 200);
    assert.equal(health.json().status, 'ok');
    assert.equal((await call('/mesh/health?probe=1', { auth: null })).status, 200);
    assert.equal((await call('/mesh/status')).status, 200, 'the right token is served');
  });

  test('any Origin header is refused with 403, whatever the origin', async () => {
    for (const origin of [palisade.url, 'null', 'https://evil.example', 'http://localhost']) {
      await refused(403, 'mesh_no_browsers', () =>
        call('/mesh/peers', { body: { cwd: '/x' }, headers: { origin } }),
      );
      await refused(403, 'mesh_no_browsers', () => call('/mesh/status', { headers: { origin } }));
      await refused(403, 'mesh_no_browsers', () =>
        call('/mesh/health', { auth: null, headers: { origin } }),
      );
    }
  });

  test('peer ids that are not UUIDv4 are 400 in the path, the body and the query', async () => {
    const notV4 = [
      'not-a-uuid',
      '123',
      'a8098c1a-f86e-11da-bd1a-00112444be1e', // version 1
      '00000000-0000-0000-0000-000000000000',
      `${a}x`,
      `${a.slice(0, -1)}g`,
      '..%2F..%2Fetc%2Fpasswd',
      `${a}%00`,
      `%20${a}`,
      `${a}%0d%0aX-Injected:%201`,
    ];
    for (const id of notV4) {
      const msg = /peer id/;
      await refused(400, 'invalid_request', () => call(`/mesh/peers/${id}`), msg);
      await refused(400, 'invalid_request', () =>
        call(`/mesh/peers/${id}/heartbeat`, { method: 'POST' }),
      );
      await refused(400, 'invalid_request', () =>
        call(`/mesh/peers/${id}`, { method: 'PATCH', body: { summary: 'x' } }),
      );
      await refused(400, 'invalid_request', () => call(`/mesh/peers/${id}`, { method: 'DELETE' }));
      await refused(400, 'invalid_request', () => call(`/mesh/peers/${id}/inbox`));
      await refused(400, 'invalid_request', () =>
        call(`/mesh/peers/${id}/inbox/read`, { body: {} }),
      );
      await refused(400, 'invalid_request', () => call(`/mesh/events?peer_id=${id}`), /peer_id/);
      await refused(400, 'invalid_request', () => call(`/mesh/events/stream?peer_id=${id}`));
      await refused(400, 'invalid_request', () => call(`/mesh/peers?scope=repo&peer_id=${id}`));
      await refused(400, 'invalid_request', () =>
        call(`/mesh/state?peer_id=${id}&project=p&key=k`, { method: 'DELETE' }),
      );
    }
    // (`%2e%2e` in a path is `..` to any URL parser, so the client never sends it; in a body it is.)
    for (const id of [...notV4.map(decodeURIComponent), '..', '', ' ']) {
      await refused(
        400,
        'invalid_request',
        () => call('/mesh/messages', { body: { from: id, to: b, text: 'x' } }),
        /^from: /,
      );
      await refused(
        400,
        'invalid_request',
        () => call('/mesh/messages', { body: { from: a, to: id, text: 'x' } }),
        /^to: /,
      );
      await refused(
        400,
        'invalid_request',
        () =>
          call('/mesh/state', {
            method: 'PUT',
            body: { peer_id: id, project: 'p', key: 'k', value: 'v' },
          }),
        /^peer_id: /,
      );
      await refused(400, 'invalid_request', () =>
        call('/mesh/claims', { body: { peer_id: id, path: '/x' } }),
      );
      await refused(400, 'invalid_request', () =>
        call('/mesh/claims/release', { body: { peer_id: id, path: '/x' } }),
      );
    }
    for (const id of [42, null, ['a'], { id: a }]) {
      await refused(
        400,
        'invalid_request',
        () => call('/mesh/messages', { body: { from: id, to: b, text: 'x' } }),
        /from/,
      );
    }
  });

  test('a valid but unknown UUID is 404', async () => {
    const unknown = randomUUID();
    await refused(404, 'peer_not_found', () => call(`/mesh/peers/${unknown}`));
    await refused(404, 'peer_not_found', () =>
      call(`/mesh/peers/${unknown}/heartbeat`, { method: 'POST' }),
    );
    await refused(404, 'peer_not_found', () =>
      call(`/mesh/peers/${unknown}`, { method: 'PATCH', body: { summary: 'x' } }),
    );
    await refused(404, 'peer_not_found', () =>
      call(`/mesh/peers/${unknown}`, { method: 'DELETE' }),
    );
    await refused(404, 'peer_not_found', () => call(`/mesh/peers/${unknown}/inbox`));
    await refused(404, 'peer_not_found', () =>
      call('/mesh/messages', { body: { from: unknown, to: b, text: 'x' } }),
    );
    await refused(404, 'recipient_not_found', () =>
      call('/mesh/messages', { body: { from: a, to: unknown, text: 'x' } }),
    );
    await refused(404, 'peer_not_found', () =>
      call('/mesh/messages', { body: { from: unknown, text: 'x' } }),
    );
    await refused(404, 'peer_not_found', () => call(`/mesh/events?peer_id=${unknown}`));
    await refused(404, 'peer_not_found', () => call(`/mesh/events/stream?peer_id=${unknown}`));
    await refused(404, 'peer_not_found', () => call(`/mesh/peers?scope=repo&peer_id=${unknown}`));
    await refused(404, 'peer_not_found', () =>
      call('/mesh/claims', { body: { peer_id: unknown, path: '/x' } }),
    );
    await refused(404, 'peer_not_found', () =>
      call('/mesh/state', {
        method: 'PUT',
        body: { peer_id: unknown, project: 'p', key: 'k', value: 'v' },
      }),
    );
  });

  test('a peer id in capitals is the same peer', async () => {
    const upper = a.toUpperCase();
    const got = await call(`/mesh/peers/${upper}`);
    assert.equal(got.status, 200, got.text);
    assert.equal(got.json<{ peer: { id: string } }>().peer.id, a);
    const sent = await call('/mesh/messages', { body: { from: upper, to: c, text: 'caps' } });
    assert.equal(sent.status, 201, sent.text);
    assert.equal(sent.json<{ message: { from: { id: string } } }>().message.from.id, a);
  });

  test('message text over 64 KB (UTF-8 bytes) is 413; exactly 64 KB is delivered whole', async () => {
    const cases: Array<[string, string]> = [
      ['ASCII', 'x'.repeat(KB64)],
      ['two-byte', 'é'.repeat(KB64 / 2)],
      ['four-byte', '😀'.repeat(KB64 / 4)],
      ['mixed', `${'€'.repeat(21_845)}x`], // 3 * 21845 + 1 = 65536
    ];
    for (const [label, text] of cases) {
      assert.equal(Buffer.byteLength(text), KB64, label);
      const sent = await call('/mesh/messages', { body: { from: a, to: b, text } });
      assert.equal(sent.status, 201, `${label}: ${sent.text.slice(0, 300)}`);
      const id = sent.json<{ message: { id: number } }>().message.id;
      const inbox = await call(`/mesh/peers/${b}/inbox`);
      const got = inbox.json<{ messages: Array<{ id: number; text: string }> }>().messages;
      assert.equal(got.find((m) => m.id === id)?.text, text, `${label} arrives intact`);

      for (const over of [`${text}x`, `${[...text].slice(0, -1).join('')}€`]) {
        if (Buffer.byteLength(over) <= KB64) continue;
        await refused(
          413,
          'payload_too_large',
          () => call('/mesh/messages', { body: { from: a, to: b, text: over } }),
          new RegExp(`text is ${Buffer.byteLength(over)} bytes`),
        );
        await refused(413, 'payload_too_large', () =>
          call('/mesh/messages', { body: { from: a, text: over } }),
        );
      }
    }
    // Fewer than 64 K characters, more than 64 KB: bytes are what count.
    const chars = 'é'.repeat(KB64 / 2 + 1);
    assert.ok(chars.length < KB64);
    await refused(413, 'payload_too_large', () =>
      call('/mesh/messages', { body: { from: a, to: b, text: chars } }),
    );
    await refused(413, 'payload_too_large', () =>
      call('/mesh/state', {
        method: 'PUT',
        body: { peer_id: a, project: '/src', key: 'big', value: 'x'.repeat(KB64 + 1) },
      }),
    );
    const state = await call('/mesh/state', {
      method: 'PUT',
      body: { peer_id: a, project: '/src', key: 'big', value: '😀'.repeat(KB64 / 4) },
    });
    assert.equal(state.status, 200, state.text);
  });

  test('a summary over 500 characters is 400; 500 is accepted, emoji counted as one', async () => {
    for (const summary of ['s'.repeat(500), '😀'.repeat(500), `${'é'.repeat(499)}👍`]) {
      const response = await call(`/mesh/peers/${c}`, { method: 'PATCH', body: { summary } });
      assert.equal(response.status, 200, response.text);
      assert.equal(response.json<{ peer: { summary: string } }>().peer.summary, summary);
    }
    for (const summary of ['s'.repeat(501), '😀'.repeat(501), `${'é'.repeat(500)}👍`]) {
      await refused(
        400,
        'invalid_request',
        () => call(`/mesh/peers/${c}`, { method: 'PATCH', body: { summary } }),
        /^summary: must be at most 500 characters/,
      );
      await refused(
        400,
        'invalid_request',
        () => call('/mesh/peers', { body: { cwd: '/x', summary } }),
        /^summary: /,
      );
    }
  });

  test('a body over 1 MB is 413, with Content-Length declared or sent chunked', async () => {
    const framed = (size: number) => {
      const prefix = JSON.stringify({ from: a, to: b, text: 'padded' });
      return prefix + ' '.repeat(size - Buffer.byteLength(prefix));
    };
    // Exactly 1 MB of JSON (whitespace is JSON) is read; one byte more is not.
    const exact = await call('/mesh/messages', { body: framed(MB) });
    assert.equal(exact.status, 201, exact.text);
    await refused(413, 'body_too_large', () => call('/mesh/messages', { body: framed(MB + 1) }));

    // Declared too large: refused before the body is sent at all.
    for (const [method, path] of [
      ['POST', '/mesh/messages'],
      ['POST', '/mesh/peers'],
      ['PUT', '/mesh/state'],
      ['POST', `/mesh/peers/${a}/heartbeat`],
      ['DELETE', `/mesh/peers/${a}`],
      ['PATCH', `/mesh/peers/${a}`],
    ] as const) {
      await refused(413, 'body_too_large', async () => {
        const response = await rawRequest(
          palisade.url,
          head(method, path, {
            host: '127.0.0.1',
            authorization: `Bearer ${palisade.server.mesh?.token}`,
            'content-type': 'application/json',
            'content-length': MB + 1,
          }),
          '',
          5_000,
        );
        return { ...response, text: response.body, json: <T>() => response.json() as T };
      });
    }

    // Chunked: counted while read and cut at the limit.
    let sent = 0;
    async function* chunks() {
      const first = `{"from":"${a}","to":"${b}","text":"`;
      yield `${first.length.toString(16)}\r\n${first}\r\n`;
      for (let i = 0; i < 1000; i++) {
        const chunk = 'x'.repeat(4096);
        sent += chunk.length;
        yield `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
        await new Promise((resolve) => setImmediate(resolve));
      }
      yield '3\r\n"}\n\r\n0\r\n\r\n';
    }
    await refused(413, 'body_too_large', async () => {
      const response = await rawRequest(
        palisade.url,
        head('POST', '/mesh/messages', {
          host: '127.0.0.1',
          authorization: `Bearer ${palisade.server.mesh?.token}`,
          'content-type': 'application/json',
          'transfer-encoding': 'chunked',
        }),
        chunks(),
      );
      return { ...response, text: response.body, json: <T>() => response.json() as T };
    });
    assert.ok(sent < 4 * MB, `the server stopped reading early (client sent ${sent} bytes)`);
  });

  test('malformed JSON is 400 invalid_json; JSON that is not an object is 400', async () => {
    for (const body of ['{"cwd": ', '{cwd: "/x"}', "{'cwd': '/x'}", '{"cwd":"/x",}', '\u0000']) {
      await refused(400, 'invalid_json', () => call('/mesh/peers', { body }));
    }
    await refused(400, 'invalid_json', () =>
      call('/mesh/peers', { body: '{"cwd":"/x","__proto__":{"admin":true}}' }),
    );
    await refused(400, 'invalid_json', () =>
      call('/mesh/peers', { body: '', headers: { 'content-type': 'application/json' } }),
    );
    for (const body of ['null', '[]', '"/x"', '42', 'true']) {
      await refused(
        400,
        'invalid_request',
        () => call('/mesh/peers', { body }),
        /must be a JSON object/,
      );
    }
  });

  test('wrong types are 400 and name the field', async () => {
    const cases: Array<[Method, string, unknown, RegExp]> = [
      ['POST', '/mesh/peers', { cwd: 5 }, /^cwd: must be a string/],
      ['POST', '/mesh/peers', {}, /^cwd is required/],
      ['POST', '/mesh/peers', { cwd: 'relative/dir' }, /^cwd: must be an absolute path/],
      ['POST', '/mesh/peers', { cwd: '/x', pid: '12' }, /^pid: /],
      ['POST', '/mesh/peers', { cwd: '/x', pid: 1.5 }, /^pid: /],
      ['POST', '/mesh/peers', { cwd: '/x', name: 'a\nb' }, /^name: must not hold control/],
      ['POST', '/mesh/peers', { cwd: '/x', name: 'n'.repeat(65) }, /^name: /],
      ['POST', '/mesh/peers', { cwd: '/x', git_root: 7 }, /^git_root: /],
      ['POST', '/mesh/peers', { cwd: '/x', status: 'asleep' }, /^status: must be one of/],
      ['POST', '/mesh/messages', { from: 'x', to: 'y', text: 5 }, /^from: /],
      ['POST', '/mesh/messages', { from: a, to: b, text: 5 }, /^text: must be a string/],
      ['POST', '/mesh/messages', { from: a, to: b, text: '' }, /^text: must not be empty/],
      ['POST', '/mesh/messages', { from: a, to: b }, /^text is required/],
      ['POST', '/mesh/messages', { from: a, text: 'x', scope: 'galaxy' }, /^scope: /],
      ['POST', '/mesh/messages', { from: a, to: b, text: 'x', scope: 'repo' }, /scope is for/],
      ['PATCH', `/mesh/peers/${a}`, { status: 'sleeping' }, /^status: /],
      ['PATCH', `/mesh/peers/${a}`, { summary: 7 }, /^summary: must be a string/],
      ['PATCH', `/mesh/peers/${a}`, [], /must be a JSON object/],
      ['PATCH', `/mesh/peers/${a}`, { cwd: 'relative/dir' }, /^cwd: must be an absolute path/],
      ['PATCH', `/mesh/peers/${a}`, { git_root: '/x\u0000y' }, /^git_root: must not hold control/],
      ['POST', '/mesh/claims', { peer_id: a, path: '/x', ttl_ms: '600000' }, /^ttl_ms: /],
      ['POST', '/mesh/claims', { peer_id: a, path: '/x', ttl_ms: 10 }, /^ttl_ms: /],
      ['POST', '/mesh/claims', { peer_id: a, path: ['/x'] }, /^path: /],
      ['POST', `/mesh/peers/${b}/inbox/read`, { ids: ['1'] }, /^ids\.0: /],
      ['POST', `/mesh/peers/${b}/inbox/read`, { ids: 1 }, /^ids: /],
      ['PUT', '/mesh/state', { peer_id: a, project: '/src', key: 'k', value: 1 }, /^value: /],
      ['PUT', '/mesh/state', { peer_id: a, project: '', key: 'k', value: 'v' }, /^project: /],
    ];
    for (const [method, path, body, message] of cases) {
      await refused(400, 'invalid_request', () => call(path, { method, body }), message);
    }
    const queries: Array<[string, RegExp]> = [
      [`/mesh/peers/${b}/inbox?limit=abc`, /^limit: /],
      [`/mesh/peers/${b}/inbox?limit=0`, /^limit: /],
      [`/mesh/peers/${b}/inbox?unread=maybe`, /^unread: /],
      [`/mesh/peers/${b}/inbox?after=-1`, /^after: /],
      [`/mesh/peers/${b}/inbox?after=abc`, /^after: /],
      ['/mesh/peers?include_left=yes', /^include_left: /],
      ['/mesh/events?wait=-1', /^wait: /],
      ['/mesh/events?wait=600000', /^wait: /],
      ['/mesh/events?since=1.5', /^since: /],
      ['/mesh/peers?scope=galaxy', /^scope: /],
      ['/mesh/peers?scope=repo', /needs peer_id/],
      ['/mesh/state', /^project is required/],
    ];
    for (const [path, message] of queries) {
      await refused(400, 'invalid_request', () => call(path), message);
    }
  });

  test('unknown fields are 400', async () => {
    const cases: Array<[Method, string, Record<string, unknown>]> = [
      ['POST', '/mesh/peers', { cwd: '/x', admin: true }],
      ['POST', '/mesh/peers', { cwd: '/x', id: randomUUID() }],
      ['PATCH', `/mesh/peers/${a}`, { presence: 'online' }],
      ['POST', '/mesh/messages', { from: a, to: b, text: 'x', priority: 'high' }],
      ['PUT', '/mesh/state', { peer_id: a, project: '/src', key: 'k', value: 'v', ttl: 5 }],
      ['POST', '/mesh/claims', { peer_id: a, path: '/x', holder: b }],
      ['POST', '/mesh/claims/release', { peer_id: a, path: '/x', force: true }],
      ['POST', `/mesh/peers/${b}/inbox/read`, { all: true }],
    ];
    for (const [method, path, body] of cases) {
      const extra = Object.keys(body).at(-1) ?? '';
      await refused(
        400,
        'invalid_request',
        () => call(path, { method, body }),
        new RegExp(`^unknown field ${extra} in the request body`),
      );
    }
  });

  test('a body that is not application/json is 415', async () => {
    const body = JSON.stringify({ cwd: '/x' });
    for (const type of [
      'text/plain',
      'text/plain; charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
    ]) {
      await refused(415, 'unsupported_media_type', () =>
        call('/mesh/peers', { body, headers: { 'content-type': type } }),
      );
      await refused(415, 'unsupported_media_type', () =>
        call('/mesh/messages', {
          body: JSON.stringify({ from: a, to: b, text: 'x' }),
          headers: { 'content-type': type },
        }),
      );
    }
  });

  test('claim paths are normalized: /a/b/../c and /a/c are the same claim', async () => {
    const claimed = await call('/mesh/claims', { body: { peer_id: a, path: '/a/b/../c' } });
    assert.equal(claimed.status, 201, claimed.text);
    assert.equal(claimed.json<{ claim: { path: string } }>().claim.path, '/a/c');
    for (const path of [
      '/a/c',
      '/a/./c',
      '/a//c',
      '/a/b/../../a/c',
      '/../a/c',
      '/a/c/.',
      '/a/c/',
    ]) {
      await refused(
        409,
        'file_claimed',
        () => call('/mesh/claims', { body: { peer_id: b, path } }),
        /\/a\/c is claimed by alice/,
      );
      await refused(409, 'file_claimed', () =>
        call('/mesh/claims/release', { body: { peer_id: b, path } }),
      );
    }
    for (const path of ['a/../../etc/passwd', '../etc/passwd', '', '/a/c\u0000', '~/x']) {
      await refused(400, 'invalid_request', () =>
        call('/mesh/claims', { body: { peer_id: b, path } }),
      );
    }
    const list = await call('/mesh/claims');
    assert.deepEqual(
      list
        .json<{ claims: Array<{ path: string; peer_id: string }> }>()
        .claims.map((x) => [x.path, x.peer_id]),
      [['/a/c', a]],
    );
    const released = await call('/mesh/claims/release', {
      body: { peer_id: a, path: '/a/x/../c' },
    });
    assert.equal(released.status, 200, released.text);
    assert.deepEqual((await call('/mesh/claims')).json(), { claims: [] });
  });

  test('an SSE event arrives within 100 ms of the send that caused it', async () => {
    const token = palisade.server.mesh?.token ?? '';
    const stream = await openSse(`${palisade.url}/mesh/events/stream?peer_id=${b}`, {
      authorization: `Bearer ${token}`,
    });
    try {
      assert.equal(stream.status, 200);
      assert.match(String(stream.headers['content-type']), /^text\/event-stream/);
      assert.match(String(stream.headers['x-request-id']), /^req_/);
      // The first bytes mean the stream is subscribed.
      await stream.next(() => true);

      const elsewhere = await call('/mesh/messages', { body: { from: a, to: c, text: 'not b' } });
      assert.equal(elsewhere.status, 201);
      const otherId = elsewhere.json<{ message: { id: number } }>().message.id;

      const start = performance.now();
      const sending = call('/mesh/messages', { body: { from: a, to: b, text: 'ping' } });
      const frame = await stream.next((f) => f.event === 'message');
      const elapsed = frame.at - start;
      const sent = await sending;
      assert.equal(sent.status, 201, sent.text);
      assert.ok(elapsed < 100, `the SSE frame took ${elapsed.toFixed(1)} ms`);

      const event = JSON.parse(frame.data ?? '{}') as {
        seq: number;
        type: string;
        data: { message_id: number };
        message: { text: string; from: { id: string } };
      };
      assert.equal(frame.id, String(event.seq));
      assert.equal(event.type, 'message.sent');
      assert.equal(event.message.text, 'ping');
      assert.equal(event.message.from.id, a);
      assert.ok(
        !stream.frames.some((f) => f.data?.includes(`"message_id":${otherId},`)),
        'a message between others is not on b’s stream',
      );

      // Other events are pushed too, under their own names.
      await call(`/mesh/peers/${c}`, { method: 'PATCH', body: { summary: 'on the SSE' } });
      const summary = await stream.next((f) => f.event === 'peer.summary');
      assert.match(summary.data ?? '', /on the SSE/);
    } finally {
      stream.close();
    }
  });

  test('an SSE client reconnecting with Last-Event-ID gets what it missed', async () => {
    const status = await call('/mesh/status');
    const last = status.json<{ last_event_seq: number }>().last_event_seq;
    await call('/mesh/messages', { body: { from: a, to: b, text: 'while away' } });
    const stream = await openSse(`${palisade.url}/mesh/events/stream?peer_id=${b}`, {
      authorization: `Bearer ${palisade.server.mesh?.token}`,
      'last-event-id': String(last),
    });
    try {
      const frame = await stream.next((f) => f.event === 'message');
      assert.match(frame.data ?? '', /while away/);
    } finally {
      stream.close();
    }
  });

  test('a reconnecting SSE client gets every event it missed, more than one page of them', async () => {
    const broker = palisade.server.mesh?.broker;
    assert.ok(broker);
    const last = broker.lastEventSeq();
    for (let i = 0; i < 1500; i++) broker.stateSet(c, '/replay', `k${i % 10}`, String(i));
    const target = broker.lastEventSeq();
    const stream = await openSse(`${palisade.url}/mesh/events/stream?peer_id=${b}`, {
      authorization: `Bearer ${palisade.server.mesh?.token}`,
      'last-event-id': String(last),
    });
    try {
      const seqs: number[] = [];
      await stream.next((frame) => {
        if (frame.id !== undefined) seqs.push(Number(frame.id));
        return Number(frame.id) === target;
      }, 10_000);
      assert.deepEqual(
        seqs,
        Array.from({ length: 1500 }, (_, i) => last + 1 + i),
      );
    } finally {
      stream.close();
    }
  });

  test('a long poll returns as soon as an event arrives, and at the wait when none does', async () => {
    const since = (await call('/mesh/status')).json<{ last_event_seq: number }>().last_event_seq;

    const empty = performance.now();
    const quiet = await call(`/mesh/events?peer_id=${b}&since=${since}&wait=300`);
    assert.equal(quiet.status, 200, quiet.text);
    assert.ok(performance.now() - empty >= 250, 'it waited');
    assert.deepEqual(quiet.json(), { events: [], next: since });

    const start = performance.now();
    const polling = call(`/mesh/events?peer_id=${b}&since=${since}&wait=30000`);
    await sleep(100);
    const sent = await call('/mesh/messages', { body: { from: a, to: b, text: 'polled' } });
    assert.equal(sent.status, 201);
    const polled = await polling;
    const elapsed = performance.now() - start;
    assert.equal(polled.status, 200, polled.text);
    const body = polled.json<{
      events: Array<{ seq: number; type: string; message?: { text: string } }>;
      next: number;
    }>();
    assert.deepEqual(
      body.events.map((e) => [e.type, e.message?.text]),
      [['message.sent', 'polled']],
    );
    assert.equal(body.next, body.events[0]?.seq);
    assert.ok(elapsed < 10_000, `returned on the event, not at the 30 s wait (${elapsed} ms)`);
  });

  test('after all of it, what was stored is as it was set', async () => {
    const peers = (await call('/mesh/peers')).json<{
      peers: Array<{ name: string; presence: string }>;
    }>().peers;
    assert.deepEqual(
      peers.map((p) => [p.name, p.presence]),
      [
        ['alice', 'online'],
        ['bob', 'online'],
        ['carol', 'online'],
      ],
    );
    const entry = (await call('/mesh/state?project=%2Fsrc&key=build')).json<{
      entry: { value: string; set_by: { id: string } };
    }>().entry;
    assert.equal(entry.value, 'green');
    assert.equal(entry.set_by.id, a);
    const inbox = (await call(`/mesh/peers/${b}/inbox?unread=false&limit=1`)).json<{
      messages: Array<{ text: string }>;
    }>().messages;
    assert.deepEqual(
      inbox.map((m) => m.text),
      ['first'],
    );
  });
});

describe('the mesh token is new on every start', () => {
  test('a token from a previous start is 401 after a restart on the same home', async () => {
    const first = await startPalisade();
    const oldToken = first.server.mesh?.token ?? '';
    const call = meshClient(() => current);
    let current = first;
    const registered = await call('/mesh/peers', { body: { cwd: '/src/app', name: 'survivor' } });
    assert.equal(registered.status, 201, registered.text);
    await first.close();

    const second = await startPalisade({ home: first.home });
    current = second;
    try {
      const newToken = second.server.mesh?.token ?? '';
      assert.notEqual(newToken, oldToken);
      assert.equal(readFileSync(join(second.home, 'mesh.token'), 'utf8').trim(), newToken);
      assert.equal(statSync(join(second.home, 'mesh.token')).mode & 0o777, 0o600);
      const before = meshSnapshot(second);
      assertError(await call('/mesh/peers', { auth: oldToken }), 401, 'invalid_mesh_token');
      assertError(
        await call('/mesh/peers', { body: { cwd: '/x' }, auth: oldToken }),
        401,
        'invalid_mesh_token',
      );
      assert.equal(meshSnapshot(second), before);
      const peers = await call('/mesh/peers');
      assert.equal(peers.status, 200);
      assert.deepEqual(
        peers.json<{ peers: Array<{ name: string }> }>().peers.map((p) => p.name),
        ['survivor'],
        'the data outlives the token',
      );
    } finally {
      await second.close();
    }
  });
});

describe('the per-peer limit (PALISADE_MESH_RATE_LIMIT at its default of 100)', () => {
  let palisade: TestPalisade;
  const call = meshClient(() => palisade);

  before(async () => {
    palisade = await startPalisade();
    assert.equal(
      (await meshClient(() => palisade)('/mesh/status')).json<{
        limits: { rate_limit_per_10s: number };
      }>().limits.rate_limit_per_10s,
      100,
    );
  });

  after(() => palisade.close());

  test('the 101st request from one peer within 10 s is 429 with Retry-After; others are unaffected', async () => {
    const register = async (name: string) => {
      const response = await call('/mesh/peers', { body: { cwd: '/src/app', name } });
      assert.equal(response.status, 201, response.text);
      return response.json<{ peer: { id: string } }>().peer.id;
    };
    const busy = await register('busy');
    const other = await register('other');

    for (let i = 1; i <= 100; i++) {
      const path = i % 2 ? `/mesh/peers/${busy}/heartbeat` : `/mesh/peers/${busy}/inbox`;
      const response = await call(path, { method: i % 2 ? 'POST' : 'GET' });
      assert.equal(response.status, 200, `request ${i}: ${response.text}`);
    }
    const before = meshSnapshot(palisade);
    const limited = await call(`/mesh/peers/${busy}/heartbeat`, { method: 'POST' });
    assertError(limited, 429, 'rate_limited', /PALISADE_MESH_RATE_LIMIT/);
    const retryAfter = String(limited.headers['retry-after']);
    assert.match(retryAfter, /^\d+$/, 'whole seconds');
    assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 10, retryAfter);
    // Any request acting for that peer is counted against it, wherever its id is.
    assertError(
      await call('/mesh/messages', { body: { from: busy, to: other, text: 'x' } }),
      429,
      'rate_limited',
    );
    assertError(await call(`/mesh/events?peer_id=${busy}`), 429, 'rate_limited');
    assertError(
      await call(`/mesh/peers/${busy.toUpperCase()}/heartbeat`, { method: 'POST' }),
      429,
      'rate_limited',
    );
    assert.equal(meshSnapshot(palisade), before, 'refused requests change nothing');

    const unaffected = await call(`/mesh/peers/${other}/heartbeat`, { method: 'POST' });
    assert.equal(unaffected.status, 200, unaffected.text);
    const toBusy = await call('/mesh/messages', { body: { from: other, to: busy, text: 'hi' } });
    assert.equal(toBusy.status, 201, 'another peer may still write to it');
    assert.equal((await call('/mesh/health', { auth: null })).status, 200);
  });
});

describe('shutting down with mesh streams open', () => {
  test(
    'open SSE streams and long polls are ended at once, not held for the grace period',
    { timeout: 30_000 },
    async () => {
      // A grace period longer than the test's own timeout: close() must not wait it out.
      const palisade = await startPalisade({ env: { PALISADE_SHUTDOWN_GRACE: '10m' } });
      const auth = { authorization: `Bearer ${palisade.server.mesh?.token ?? ''}` };
      const stream = await openSse(`${palisade.url}/mesh/events/stream?since=0`, auth);
      assert.equal(stream.status, 200);
      const poll = request(`${palisade.url}/mesh/events?wait=60000&since=999999`, {
        headers: auth,
      }).then(async (response) => ({
        status: response.statusCode,
        body: await response.body.text(),
      }));
      await sleep(100);
      await palisade.close();
      await assert.rejects(
        stream.next(() => false, 5_000),
        /the SSE stream ended/,
      );
      const answered = await poll;
      assert.equal(answered.status, 200);
      assert.deepEqual(JSON.parse(answered.body).events, []);
    },
  );
});

describe('made-up peer ids get no bucket of their own', () => {
  test('requests naming unregistered ids share one bucket; registered peers keep theirs', async () => {
    const palisade = await startPalisade();
    const call = meshClient(() => palisade);
    try {
      const registered = await call('/mesh/peers', { body: { cwd: '/src/app', name: 'real' } });
      assert.equal(registered.status, 201, registered.text); // the shared bucket's 1st
      const real = registered.json<{ peer: { id: string } }>().peer.id;
      for (let i = 2; i <= 100; i++) {
        const response = await call(`/mesh/status?peer_id=${randomUUID()}`);
        assert.equal(response.status, 200, `request ${i}: ${response.text}`);
      }
      assertError(await call(`/mesh/status?peer_id=${randomUUID()}`), 429, 'rate_limited');
      assertError(await call('/mesh/peers', { body: { cwd: '/x' } }), 429, 'rate_limited');
      const own = await call(`/mesh/status?peer_id=${real}`);
      assert.equal(own.status, 200, 'a registered peer is counted on its own');
    } finally {
      await palisade.close();
    }
  });
});

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { LookupFunction } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { guardedLookup } from '../../src/gateway/index.js';
import { startMockUpstream } from '../support/mock-upstream.js';
import { runCli, startPalisade, tempHome } from '../support/palisade.js';

async function post(url: string, body: unknown, signal?: AbortSignal) {
  const response = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  return response;
}

/** A port with nothing listening: connections to it are refused. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address ? address.port : 1;
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

describe('upstream routing, errors and streaming', () => {
  test('a connection failure before sending moves on to the next upstream serving the model', async () => {
    const live = await startMockUpstream({ models: ['shared'] });
    const port = await deadPort();
    const palisade = await startPalisade({
      env: { PALISADE_UPSTREAMS: `dead=http://127.0.0.1:${port},live=${live.url}` },
    });
    try {
      // Make the dead upstream look like it serves the model and comes first.
      const dead = palisade.server.registry.list().find((u) => u.name === 'dead');
      assert.ok(dead);
      dead.modelIds = new Set(['shared']);
      dead.healthy = true;
      const response = await post(`${palisade.url}/v1/chat/completions`, chat('shared'));
      assert.equal(response.statusCode, 200);
      await response.body.text();
      assert.equal(live.requests.filter((r) => r.method === 'POST').length, 1);
      assert.equal(dead.healthy, false, 'the failed upstream is marked unhealthy');
    } finally {
      await palisade.close();
      await live.close();
    }
  });

  test('no upstream reachable is a 502 that says so', async () => {
    const port = await deadPort();
    const palisade = await startPalisade({
      env: { PALISADE_UPSTREAMS: `dead=http://127.0.0.1:${port}` },
    });
    try {
      const response = await post(`${palisade.url}/v1/chat/completions`, chat('anything'));
      assert.equal(response.statusCode, 502);
      const body = (await response.body.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'upstream_unreachable');
      assert.match(body.error.message, /is the model server running/);
    } finally {
      await palisade.close();
    }
  });

  test('upstream 4xx and 5xx come back as OpenAI-shaped errors', async () => {
    const upstream = await startMockUpstream({ models: ['error-400', 'error-500', 'not-json'] });
    const palisade = await startPalisade({ env: { PALISADE_UPSTREAMS: `mock=${upstream.url}` } });
    try {
      const bad = await post(`${palisade.url}/v1/chat/completions`, chat('error-400'));
      assert.equal(bad.statusCode, 400);
      const badBody = (await bad.body.json()) as {
        error: { message: string; code: string };
        request_id: string;
      };
      assert.equal(badBody.error.message, 'bad thing');
      assert.equal(badBody.error.code, 'bad');
      assert.match(badBody.request_id, /^req_/);

      const boom = await post(`${palisade.url}/v1/chat/completions`, chat('error-500'));
      assert.equal(boom.statusCode, 500);
      const boomBody = (await boom.body.json()) as { error: { message: string } };
      assert.match(boomBody.error.message, /upstream mock answered 500: upstream exploded/);
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('an upstream that sends no headers in time is a 504', async () => {
    const upstream = await startMockUpstream({ models: ['slow-headers'] });
    const palisade = await startPalisade({
      env: { PALISADE_UPSTREAMS: `mock=${upstream.url}`, PALISADE_UPSTREAM_TIMEOUT: '300ms' },
    });
    try {
      const response = await post(`${palisade.url}/v1/chat/completions`, chat('slow-headers'));
      assert.equal(response.statusCode, 504);
      const body = (await response.body.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'upstream_timeout');
      assert.match(body.error.message, /PALISADE_UPSTREAM_TIMEOUT/);
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('a stream that goes quiet is ended with an SSE error event', async () => {
    const upstream = await startMockUpstream({ models: ['stall-stream'] });
    const palisade = await startPalisade({
      env: { PALISADE_UPSTREAMS: `mock=${upstream.url}`, PALISADE_STREAM_IDLE_TIMEOUT: '300ms' },
    });
    try {
      const response = await post(
        `${palisade.url}/v1/chat/completions`,
        chat('stall-stream', { stream: true }),
      );
      assert.equal(response.statusCode, 200);
      assert.match(String(response.headers['content-type']), /^text\/event-stream/);
      const text = await response.body.text();
      assert.match(text, /"role":"assistant"/, 'the first chunk was relayed');
      assert.match(text, /data: \{"error":\{"message":"upstream mock sent nothing for 300 ms/);
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('a non-streaming response that stalls mid-body is a 504', async () => {
    const upstream = await startMockUpstream({ models: ['stall-stream'] });
    const palisade = await startPalisade({
      env: { PALISADE_UPSTREAMS: `mock=${upstream.url}`, PALISADE_STREAM_IDLE_TIMEOUT: '300ms' },
    });
    try {
      const response = await post(`${palisade.url}/v1/chat/completions`, chat('stall-stream'));
      assert.equal(response.statusCode, 504);
      const body = (await response.body.json()) as { error: { code: string } };
      assert.equal(body.error.code, 'upstream_timeout');
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('streaming chunks are relayed as they come, not buffered', async () => {
    const upstream = await startMockUpstream({ models: ['endless-stream'] });
    const palisade = await startPalisade({ env: { PALISADE_UPSTREAMS: `mock=${upstream.url}` } });
    const controller = new AbortController();
    try {
      const response = await post(
        `${palisade.url}/v1/chat/completions`,
        chat('endless-stream', { stream: true }),
        controller.signal,
      );
      let chunks = 0;
      for await (const _chunk of response.body) {
        chunks += 1;
        if (chunks >= 3) break;
      }
      assert.ok(chunks >= 3, 'an endless stream delivered chunks before ending');
    } finally {
      controller.abort();
      await palisade.close();
      await upstream.close();
    }
  });

  test('a client that disconnects mid-stream aborts the upstream request at once', async () => {
    const upstream = await startMockUpstream({ models: ['endless-stream'] });
    const palisade = await startPalisade({ env: { PALISADE_UPSTREAMS: `mock=${upstream.url}` } });
    try {
      const controller = new AbortController();
      const response = await post(
        `${palisade.url}/v1/chat/completions`,
        chat('endless-stream', { stream: true }),
        controller.signal,
      );
      for await (const _chunk of response.body) break;
      assert.equal(upstream.openStreams, 1);
      controller.abort();
      for (let i = 0; i < 100 && upstream.abortedStreams === 0; i++) await sleep(20);
      assert.equal(upstream.abortedStreams, 1, 'the upstream saw the disconnect');
      assert.equal(upstream.openStreams, 0);
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });
});

describe('SSRF guard on upstreams', () => {
  test('a metadata address given as an upstream stops start-up with a clear message', async () => {
    await assert.rejects(
      startPalisade({ env: { PALISADE_UPSTREAMS: 'meta=http://169.254.169.254' } }),
      /upstream URL refused: 169\.254\.169\.254 is a cloud metadata address/,
    );
    await assert.rejects(
      startPalisade({ env: { PALISADE_UPSTREAMS: 'meta=http://[fd00:ec2::254]/' } }),
      /refused/,
    );
    await assert.rejects(
      startPalisade({ env: { PALISADE_UPSTREAMS: 'meta=http://metadata.google.internal' } }),
      /refused/,
    );
  });

  test('a host name that resolves to a metadata address is refused too', async () => {
    const lookup = async (hostname: string) =>
      hostname === 'innocent.example'
        ? [{ address: '169.254.169.254', family: 4 }]
        : [{ address: '127.0.0.1', family: 4 }];
    await assert.rejects(
      startPalisade({ env: { PALISADE_UPSTREAMS: 'x=http://innocent.example:8080' }, lookup }),
      /innocent\.example resolves to 169\.254\.169\.254/,
    );
  });

  test('DNS that changes after the check (rebinding) is caught at connect time with a 502', async () => {
    const upstream = await startMockUpstream({ models: ['m'] });
    const port = new URL(upstream.url).port;
    // When the upstream is checked the name points at loopback; by the time a connection is
    // made it points at the metadata service.
    const lookup = async () => [{ address: '127.0.0.1', family: 4 }];
    const rebound = ((
      _hostname: string,
      options: unknown,
      callback: (...args: unknown[]) => void,
    ) => {
      const all =
        typeof options === 'object' && options !== null && (options as { all?: boolean }).all;
      return all
        ? callback(null, [{ address: '169.254.169.254', family: 4 }])
        : callback(null, '169.254.169.254', 4);
    }) as LookupFunction;
    const palisade = await startPalisade({
      env: { PALISADE_UPSTREAMS: `r=http://rebind.example:${port}` },
      lookup,
      connectLookup: guardedLookup(rebound),
    });
    try {
      const response = await post(`${palisade.url}/v1/chat/completions`, chat('m'));
      assert.equal(response.statusCode, 502);
      const body = (await response.body.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'upstream_blocked');
      assert.match(body.error.message, /SSRF guard/);
      assert.equal(upstream.requests.length, 0, 'nothing reached any server');
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('palisade upstreams add refuses metadata and credential URLs, accepts local ones', async () => {
    const home = tempHome();
    const refused = await runCli([
      'upstreams',
      'add',
      'meta',
      'http://169.254.169.254/latest',
      '--home',
      home,
    ]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^palisade: upstream URL refused: 169\.254\.169\.254 is a cloud metadata address/,
    );
    const creds = await runCli([
      'upstreams',
      'add',
      'c',
      'http://user:pw@127.0.0.1:1234',
      '--home',
      home,
    ]);
    assert.equal(creds.code, 1);
    assert.ok(!creds.stderr.includes('pw@'), 'credentials are not echoed');
    const scheme = await runCli(['upstreams', 'add', 'f', 'file:///etc/passwd', '--home', home]);
    assert.equal(scheme.code, 1);
    const ok = await runCli([
      'upstreams',
      'add',
      'local',
      'http://127.0.0.1:1234/v1',
      '--home',
      home,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const listed = await runCli(['upstreams', 'list', '--json', '--home', home]);
    assert.deepEqual(
      JSON.parse(listed.stdout).map((u: { name: string }) => u.name),
      ['local'],
    );
  });
});

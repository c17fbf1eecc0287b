import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { startMockUpstream } from '../support/mock-upstream.js';
import { startPalisade } from '../support/palisade.js';

async function get(url: string, headers: Record<string, string> = {}) {
  const response = await request(url, { headers });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

describe('bind and exposure policy', () => {
  test('on loopback with no keys, /v1 is open', async () => {
    const upstream = await startMockUpstream();
    const palisade = await startPalisade({ env: { PALISADE_UPSTREAMS: `mock=${upstream.url}` } });
    try {
      assert.equal((await get(`${palisade.url}/v1/models`)).status, 200);
      assert.equal(palisade.announced.length, 0, 'no key is minted on loopback');
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('on loopback, once a key exists, /v1 requires one', async () => {
    const palisade = await startPalisade();
    try {
      const key = await palisade.createKey({ name: 'first' });
      assert.equal((await get(`${palisade.url}/v1/models`)).status, 401);
      assert.equal(
        (await get(`${palisade.url}/v1/models`, { authorization: `Bearer ${key}` })).status,
        200,
      );
      assert.equal((await get(`${palisade.url}/v1/models`, { 'x-api-key': key })).status, 200);
    } finally {
      await palisade.close();
    }
  });

  test('bound to a non-loopback address, keyless requests are refused and a key is minted once', async () => {
    const palisade = await startPalisade({ env: { PALISADE_HOST: '0.0.0.0' } });
    let home = palisade.home;
    try {
      const refused = await get(`${palisade.url}/v1/models`);
      assert.equal(refused.status, 401);
      assert.match(JSON.parse(refused.text).error.message, /needs an API key/);
      const printed = palisade.announced.join('');
      const minted = /pk_[A-Za-z0-9_-]{43}/.exec(printed)?.[0];
      assert.ok(minted, 'the minted key is printed to the terminal');
      assert.match(printed, /shown once/);
      assert.ok(!palisade.logs.join('').includes(minted), 'the minted key is not in the log');
      assert.equal(
        (await get(`${palisade.url}/v1/models`, { authorization: `Bearer ${minted}` })).status,
        200,
      );
      home = palisade.home;
    } finally {
      await palisade.close();
    }
    const again = await startPalisade({ home, env: { PALISADE_HOST: '0.0.0.0' } });
    try {
      assert.ok(
        !again.announced.join('').includes('pk_'),
        'a key already exists: nothing new is minted',
      );
      assert.equal((await get(`${again.url}/v1/models`)).status, 401);
    } finally {
      await again.close();
    }
  });

  test('/healthz answers without auth and holds no secrets; /metrics is loopback or admin', async () => {
    const upstream = await startMockUpstream();
    const palisade = await startPalisade({
      env: { PALISADE_HOST: '0.0.0.0', PALISADE_UPSTREAMS: `mock=${upstream.url}` },
    });
    try {
      const health = await get(`${palisade.url}/healthz`);
      assert.equal(health.status, 200);
      const body = JSON.parse(health.text);
      assert.deepEqual(Object.keys(body).sort(), [
        'active_jobs',
        'status',
        'upstreams',
        'uptime_s',
        'version',
      ]);
      assert.equal(body.status, 'ok');
      assert.deepEqual(body.upstreams, [{ name: 'mock', healthy: true, models: 2 }]);
      assert.ok(!health.text.includes(upstream.url), 'upstream addresses are not disclosed');

      const metrics = await get(`${palisade.url}/metrics`);
      assert.equal(metrics.status, 200, 'loopback client');
      assert.match(metrics.text, /palisade_http_requests_total/);
      assert.match(metrics.text, /palisade_upstream_up\{upstream="mock"\} 1/);
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });

  test('behind a trusted proxy, /metrics for a remote client needs an admin key', async () => {
    const palisade = await startPalisade({ env: { PALISADE_TRUST_PROXY: 'true' } });
    try {
      const remote = { 'x-forwarded-for': '203.0.113.9' };
      const refused = await get(`${palisade.url}/metrics`, remote);
      assert.equal(refused.status, 403);
      assert.match(JSON.parse(refused.text).error.message, /admin key/);
      const plain = await palisade.createKey({ name: 'plain' });
      assert.equal(
        (await get(`${palisade.url}/metrics`, { ...remote, authorization: `Bearer ${plain}` }))
          .status,
        403,
      );
      const admin = await palisade.createKey({ name: 'admin', scope: 'admin' });
      assert.equal(
        (await get(`${palisade.url}/metrics`, { ...remote, authorization: `Bearer ${admin}` }))
          .status,
        200,
      );
    } finally {
      await palisade.close();
    }
  });
});

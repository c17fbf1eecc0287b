import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startPalisade, type TestPalisade } from '../support/palisade.js';

/** Opens a connection, sends `first`, then nothing more; resolves with what the server said. */
function stall(
  url: string,
  first: string,
  limitMs: number,
): Promise<{ text: string; closedBy: 'server' | 'test' }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedBy: 'test' });
    }, limitMs);
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedBy: 'server' });
    });
    socket.on('error', () => undefined);
    socket.write(first);
  });
}

describe('slow clients are cut off', () => {
  let palisade: TestPalisade;

  before(async () => {
    palisade = await startPalisade({
      env: { PALISADE_HEADERS_TIMEOUT: '1s', PALISADE_REQUEST_TIMEOUT: '2s' },
    });
  });

  after(() => palisade.close());

  test('headers that never finish get 408 and the connection closed', async () => {
    const result = await stall(
      palisade.url,
      'GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ',
      15_000,
    );
    assert.equal(result.closedBy, 'server');
    assert.match(result.text, /^HTTP\/1\.1 408/);
    assert.match(result.text, /"code":"request_timeout".*"request_id":"req_/);
  });

  test('a body that never finishes gets 408 and the connection closed', async () => {
    const result = await stall(
      palisade.url,
      'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":',
      15_000,
    );
    assert.equal(result.closedBy, 'server');
    assert.match(result.text, /^HTTP\/1\.1 408/);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startPalisade, type TestPalisade } from '../../test/support/palisade.js';
import { meshSnapshot } from '../../test/support/mesh-snapshot.js';

interface ErrorBody {
  error: { message: string; type: string; code: string };
  request_id: string;
}

for (const trustProxy of ['false', 'true']) {
  describe(`/mesh refuses clients that are not on this machine (PALISADE_TRUST_PROXY=${trustProxy})`, () => {
    let palisade: TestPalisade;
    let token: string;

    before(async () => {
      palisade = await startPalisade({ env: { PALISADE_TRUST_PROXY: trustProxy } });
      const mesh = palisade.server.mesh;
      assert.ok(mesh, 'the mesh is on by default');
      token = mesh.token;
    });

    after(() => palisade.close());

    async function inject(options: {
      method?: 'GET' | 'POST';
      url: string;
      remoteAddress?: string;
      headers?: Record<string, string>;
      body?: unknown;
    }) {
      const response = await palisade.server.app.inject({
        method: options.method ?? 'GET',
        url: options.url,
        ...(options.remoteAddress ? { remoteAddress: options.remoteAddress } : {}),
        headers: { authorization: `Bearer ${token}`, ...options.headers },
        ...(options.body === undefined ? {} : { payload: options.body as object }),
      });
      return response;
    }

    function assertForbidden(response: Awaited<ReturnType<typeof inject>>) {
      assert.equal(response.statusCode, 403, response.body);
      const body = response.json<ErrorBody>();
      assert.equal(body.error.code, 'mesh_loopback_only');
      assert.equal(body.error.type, 'permission_error');
      assert.match(body.error.message, /this machine only/);
      assert.match(body.request_id, /^req_[0-9a-f]{24}$/);
      assert.equal(response.headers['x-request-id'], body.request_id);
    }

    test('a loopback client with the token is served (IPv4 and IPv6)', async () => {
      for (const remoteAddress of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) {
        const response = await inject({ url: '/mesh/status', remoteAddress });
        assert.equal(response.statusCode, 200, `${remoteAddress}: ${response.body}`);
      }
    });

    test('a remote client is refused 403 even with the right token, /mesh/health too', async () => {
      const before = meshSnapshot(palisade);
      for (const remoteAddress of ['192.0.2.10', '::ffff:192.0.2.10', '2001:db8::1', '10.0.0.1']) {
        assertForbidden(await inject({ url: '/mesh/status', remoteAddress }));
        assertForbidden(await inject({ url: '/mesh/health', remoteAddress }));
        assertForbidden(await inject({ url: '/mesh/peers', remoteAddress }));
        assertForbidden(await inject({ url: '/mesh/no-such-route', remoteAddress }));
        assertForbidden(await inject({ url: '/mesh', remoteAddress }));
        assertForbidden(
          await inject({
            method: 'POST',
            url: '/mesh/peers',
            remoteAddress,
            body: { cwd: '/src/app' },
          }),
        );
      }
      assert.equal(meshSnapshot(palisade), before, 'nothing was registered');
    });

    test('the refusal comes before the token check: no token, no hint', async () => {
      const response = await palisade.server.app.inject({
        method: 'GET',
        url: '/mesh/status',
        remoteAddress: '192.0.2.10',
      });
      assertForbidden(response);
      assert.equal(response.headers['www-authenticate'], undefined);
    });

    test('X-Forwarded-For cannot make a remote client local', async () => {
      for (const forwarded of ['127.0.0.1', '::1', '127.0.0.1, 127.0.0.1']) {
        assertForbidden(
          await inject({
            url: '/mesh/status',
            remoteAddress: '192.0.2.10',
            headers: { 'x-forwarded-for': forwarded },
          }),
        );
        assertForbidden(
          await inject({
            url: '/mesh/health',
            remoteAddress: '192.0.2.10',
            headers: { 'x-forwarded-for': forwarded, forwarded: `for=${forwarded}` },
          }),
        );
      }
    });

    test('a remote client behind a local proxy is refused when the proxy is trusted', async () => {
      const response = await inject({
        url: '/mesh/status',
        remoteAddress: '127.0.0.1',
        headers: { 'x-forwarded-for': '192.0.2.10' },
      });
      if (trustProxy === 'true') assertForbidden(response);
      // Untrusted, the header is only a header: the client is the local proxy.
      else assert.equal(response.statusCode, 200);
    });
  });
}

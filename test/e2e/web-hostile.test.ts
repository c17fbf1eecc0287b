import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { totpCode } from '../../src/auth/index.js';
import { head, rawRequest } from '../support/http.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import {
  addUser,
  assertApiError,
  FAST_SCRYPT_ENV,
  fromRaw,
  listRoutes,
  enrollTotp,
  newSignedInUser,
  PASSWORD,
  signIn,
  snapshot,
  WebClient,
  withStore,
} from '../support/web.js';

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const AUTH_ROUTES = [
  'POST /api/auth/setup',
  'POST /api/auth/login',
  'POST /api/auth/logout',
  'POST /api/auth/totp/verify',
  'POST /api/auth/totp/enroll',
  'POST /api/auth/totp/confirm',
  'POST /api/auth/totp/disable',
  'POST /api/me/password',
  'DELETE /api/me/sessions/:id',
];

/** A body each route would act on, were the request let through. */
function bodyFor(method: string, url: string): unknown {
  if (method === 'DELETE' || !STATE_CHANGING.has(method)) return undefined;
  switch (url) {
    case '/api/auth/setup':
      return { username: 'mallory', password: PASSWORD };
    case '/api/auth/login':
      return { username: 'alice', password: PASSWORD };
    case '/api/me/password':
      return { current_password: PASSWORD, new_password: 'a password mallory chose' };
    case '/api/auth/totp/disable':
      return { password: PASSWORD };
    case '/api/auth/totp/confirm':
    case '/api/auth/totp/verify':
      return { code: '123456' };
    case '/api/conversations':
      return { title: 'planted by another site' };
    case '/api/conversations/:id':
      return { title: 'renamed by another site' };
    case '/api/conversations/:id/messages':
      return { content: 'sent by another site' };
    default:
      return {};
  }
}

describe('the /api door', () => {
  let palisade: TestPalisade;
  let alice: WebClient;
  /** The ids to put in paths: a live one of alice's, by the route's leading path. */
  const ids = new Map<string, string>();
  before(async () => {
    palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    // A signed-in user while setup is still open (no admin yet): every refused request below
    // would have changed something had the door let it through.
    alice = await newSignedInUser(palisade, 'alice');
    const sessions = await alice.get('/api/me/sessions');
    const { sessions: list } = sessions.body as { sessions: Array<{ id: string }> };
    ids.set('/api/me/sessions/', list[0]?.id as string);
    // Where the chat is served, a conversation of alice's for its routes to aim at.
    const conversation = await alice.post('/api/conversations', { title: 'mine' });
    if (conversation.status === 201 || conversation.status === 200) {
      const body = conversation.body as { id?: string; conversation?: { id: string } };
      ids.set('/api/conversations/', (body.id ?? body.conversation?.id) as string);
    }
  });
  after(() => palisade.close());

  function apiRoutes() {
    const routes = listRoutes(palisade).filter(([, url]) => url.startsWith('/api/'));
    const found = new Set(routes.map(([m, u]) => `${m} ${u}`));
    for (const route of AUTH_ROUTES) assert.ok(found.has(route), `${route} is served`);
    const idFor = (url: string) =>
      [...ids].find(([prefix]) => url.startsWith(prefix))?.[1] ??
      '00000000-0000-4000-8000-000000000000';
    return routes.map(([method, url]) => ({
      method,
      url,
      path: url.replace(/:[a-z_]+/g, idFor(url)).replace(/\*$/, 'x'),
    }));
  }

  test('state changes without an Origin, or with another one, are refused', async () => {
    const routes = apiRoutes().filter((r) => STATE_CHANGING.has(r.method));
    const before = await snapshot(palisade);
    const { port } = new URL(palisade.url);
    const otherOrigins = [
      `http://evil.example:${port}`, // another host
      `http://127.0.0.1:${Number(port) === 65535 ? 1 : Number(port) + 1}`, // another port
      `https://127.0.0.1:${port}`, // another scheme
      `http://localhost:${port}`, // another name of this machine is another origin
      'null', // sandboxed frames, file: pages, some redirects
      `${palisade.url}/`,
      '',
    ];
    for (const { method, url, path } of routes) {
      const body = bodyFor(method, url);
      const missing = await alice.request(method, path, body, { origin: undefined });
      assertApiError(missing, 403, 'origin_missing');
      for (const origin of otherOrigins) {
        const refused = await alice.request(method, path, body, { origin });
        assert.equal(refused.status, 403, `${method} ${path} with Origin "${origin}"`);
        assertApiError(refused, 403, origin === '' ? undefined : 'origin_mismatch');
        assert.equal(refused.headers.getSetCookie().length, 0, `${method} ${path} ${origin}`);
      }
    }
    assert.deepEqual(await snapshot(palisade), before, 'nothing changed');
    assert.equal((await alice.get('/api/me')).status, 200, 'the session still works');
    const state = await alice.get('/api/auth/state');
    assert.equal((state.body as { setup_required: boolean }).setup_required, true);
  });

  test('requests without X-Requested-With: palisade are refused, GET too', async () => {
    const routes = apiRoutes().filter((r) => r.method !== 'HEAD');
    const before = await snapshot(palisade);
    for (const { method, url, path } of routes) {
      const body = bodyFor(method, url);
      for (const value of [undefined, 'XMLHttpRequest', 'Palisade', 'palisade, palisade', '']) {
        const refused = await alice.request(method, path, body, { 'x-requested-with': value });
        assertApiError(refused, 403, 'csrf_header_missing');
      }
    }
    const headRefused = await alice.request('HEAD', '/api/me', undefined, {
      'x-requested-with': undefined,
    });
    assert.equal(headRefused.status, 403);
    assert.deepEqual(await snapshot(palisade), before, 'nothing changed');
  });

  test('Sec-Fetch-Site: cross-site is refused, even with the right headers', async () => {
    const before = await snapshot(palisade);
    for (const { method, url, path } of apiRoutes().filter((r) => r.method !== 'HEAD')) {
      const refused = await alice.request(method, path, bodyFor(method, url), {
        'sec-fetch-site': 'cross-site',
      });
      assertApiError(refused, 403, 'cross_site_request');
    }
    assert.deepEqual(await snapshot(palisade), before, 'nothing changed');
    // What the browser sends for the app's own requests is fine.
    const same = await alice.get('/api/me', { 'sec-fetch-site': 'same-origin' });
    assert.equal(same.status, 200);
  });

  test('a CORS preflight to /api is never granted', async () => {
    const response = await fetch(`${palisade.url}/api/auth/login`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, x-requested-with',
      },
    });
    await response.arrayBuffer();
    assert.notEqual(response.status, 204);
    for (const name of [
      'access-control-allow-origin',
      'access-control-allow-headers',
      'access-control-allow-methods',
      'access-control-allow-credentials',
    ]) {
      assert.equal(response.headers.get(name), null, name);
    }
  });
});

describe('hostile bodies, paths and cookies', () => {
  let palisade: TestPalisade;
  let alice: WebClient;
  before(async () => {
    palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    alice = await newSignedInUser(palisade, 'alice');
  });
  after(() => palisade.close());

  /** Raw bytes to `path` with the browser's headers and alice's cookie. */
  function rawHead(method: string, path: string, headers: Record<string, string | number>) {
    return head(method, path, {
      host: new URL(palisade.url).host,
      origin: palisade.url,
      'x-requested-with': 'palisade',
      cookie: alice.cookieHeader,
      ...headers,
    });
  }

  test('malformed JSON, wrong types, unknown fields and other media types are refused', async () => {
    const before = await snapshot(palisade);
    const json = { 'content-type': 'application/json' };
    const cases: Array<[string, unknown, Record<string, string>, number]> = [
      ['/api/auth/setup', '{"username": "root", "password":', json, 400],
      ['/api/auth/setup', '{"username": "root"} trailing', json, 400],
      ['/api/auth/setup', "{'username': 'root'}", json, 400],
      ['/api/auth/setup', '', json, 400],
      ['/api/auth/setup', 'null', json, 400],
      ['/api/auth/setup', '[]', json, 400],
      ['/api/auth/setup', '"root"', json, 400],
      ['/api/auth/setup', { username: 42, password: PASSWORD }, json, 400],
      ['/api/auth/setup', { username: ['root'], password: PASSWORD }, json, 400],
      ['/api/auth/setup', { username: 'root', password: { length: 20 } }, json, 400],
      ['/api/auth/setup', { username: 'root' }, json, 400],
      ['/api/auth/setup', { username: 'root', password: PASSWORD, role: 'admin' }, json, 400],
      [
        '/api/auth/setup',
        '{"username":"root","password":"correct horse battery staple","__proto__":{"role":"admin"}}',
        json,
        400,
      ],
      [
        '/api/auth/setup',
        '{"username":"root","password":"correct horse battery staple","constructor":{"prototype":{"x":1}}}',
        json,
        400,
      ],
      ['/api/auth/setup', { username: '../root', password: PASSWORD }, json, 400],
      ['/api/auth/setup', { username: 'r'.repeat(33), password: PASSWORD }, json, 400],
      ['/api/auth/setup', { username: 'ro ot', password: PASSWORD }, json, 400],
      ['/api/auth/setup', { username: 'root\u0000', password: PASSWORD }, json, 400],
      ['/api/auth/setup', { username: 'root', password: PASSWORD, setup_token: 7 }, json, 400],
      [
        '/api/auth/setup',
        JSON.stringify({ username: 'root', password: PASSWORD }),
        { 'content-type': 'text/plain' },
        415,
      ],
      [
        '/api/auth/setup',
        'username=root&password=correct+horse+battery+staple',
        { 'content-type': 'application/x-www-form-urlencoded' },
        415,
      ],
      [
        '/api/auth/setup',
        '--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nroot\r\n--b--\r\n',
        { 'content-type': 'multipart/form-data; boundary=b' },
        415,
      ],
      [
        '/api/auth/setup',
        JSON.stringify({ username: 'root', password: PASSWORD }),
        { 'content-type': undefined as unknown as string },
        415,
      ],
      ['/api/auth/login', { username: 'alice', password: PASSWORD, remember: true }, json, 400],
      ['/api/auth/login', { username: '', password: PASSWORD }, json, 400],
      ['/api/auth/login', { username: 'alice', password: 'x'.repeat(2000) }, json, 400],
      [
        '/api/me/password',
        { current_password: PASSWORD, new_password: 'a new good passphrase', role: 'admin' },
        json,
        400,
      ],
      ['/api/me/password', { current_password: PASSWORD, new_password: 12345678901234 }, json, 400],
      ['/api/auth/login', '['.repeat(400_000) + ']'.repeat(400_000), json, 400],
      ['/api/auth/login', '{"a":'.repeat(150_000) + '1' + '}'.repeat(150_000), json, 400],
      ['/api/auth/totp/enroll', '{"a":', json, 400],
      ['/api/auth/totp/confirm', { code: 123456 }, json, 400],
      ['/api/auth/totp/confirm', { code: 'x'.repeat(65) }, json, 400],
      ['/api/auth/totp/verify', { code: '123456', username: 'alice' }, json, 400],
    ];
    for (const [path, body, headers, status] of cases) {
      const response = await alice.request(
        'POST',
        path,
        body === undefined ? undefined : body,
        headers,
      );
      assertApiError(response, status, status === 415 ? 'unsupported_media_type' : undefined);
      assert.ok(!/at .*\.ts:\d+|node_modules/.test(response.text), 'no stack trace');
    }
    assert.deepEqual(await snapshot(palisade), before, 'nothing stored');
    assert.equal((await alice.get('/api/me')).status, 200);
  });

  test('a body over 1 MB is refused with 413, declared or chunked', async () => {
    const before = await snapshot(palisade);
    const declared = await rawRequest(
      palisade.url,
      rawHead('POST', '/api/auth/setup', {
        'content-type': 'application/json',
        'content-length': 2 * 1024 * 1024,
      }),
      '{"username":"root","password":"',
    );
    const big = fromRaw(declared);
    assertApiError(big, 413, 'body_too_large');

    async function* chunks() {
      yield '{"username":"root","password":"correct horse battery staple","x":"';
      const piece = 'a'.repeat(64 * 1024);
      for (let i = 0; i < 40; i += 1) yield piece; // 2.5 MB, never finished
      yield '"}';
    }
    async function* chunked() {
      for await (const part of chunks())
        yield `${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`;
      yield '0\r\n\r\n';
    }
    for (const path of ['/api/auth/setup', '/api/me/password', '/api/auth/login']) {
      const response = await rawRequest(
        palisade.url,
        rawHead('POST', path, {
          'content-type': 'application/json',
          'transfer-encoding': 'chunked',
        }),
        chunked(),
      );
      assertApiError(fromRaw(response), 413, 'body_too_large');
    }
    // Just under the limit, the body is read and judged on its fields.
    const under = await alice.post('/api/auth/login', {
      username: 'alice',
      password: PASSWORD,
      padding: 'p'.repeat(1_000_000),
    });
    assertApiError(under, 400, 'invalid_request');
    assert.deepEqual(await snapshot(palisade), before, 'nothing stored');
  });

  test('hostile paths and cookies get clean errors', async () => {
    const before = await snapshot(palisade);
    for (const path of [
      `/api/me/sessions/${'a'.repeat(65)}`,
      '/api/me/sessions/%27%20or%201=1--',
      '/api/me/sessions/..%2F..%2Fme',
    ]) {
      const response = await alice.delete(path);
      assert.ok([400, 404].includes(response.status), `${path}: ${response.status}`);
      assertApiError(response, response.status);
    }
    const cookies = [
      'palisade_session=',
      `palisade_session=${'A'.repeat(5000)}`,
      'palisade_session=%E0%A4%A',
      'palisade_session="quoted"',
      'palisade_session=a; palisade_session=b',
      '__Host-palisade_session=whatever',
    ];
    for (const cookie of cookies) {
      const response = await new WebClient(palisade.url).get('/api/me', { cookie });
      assertApiError(response, 401, 'not_signed_in');
    }
    assert.deepEqual(await snapshot(palisade), before);
  });
});

describe('throttles', () => {
  test('too many /api requests get 429 with Retry-After', async () => {
    const palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_API_RATE: '1', PALISADE_API_BURST: '3' },
    });
    try {
      await addUser(palisade, 'alice');
      const stored = await snapshot(palisade);
      const browser = new WebClient(palisade.url);
      for (let i = 0; i < 3; i += 1) {
        assert.equal((await browser.get('/api/auth/state')).status, 200, `request ${i + 1}`);
      }
      // Requests keep coming until the bucket is empty; the next one is a login, at once.
      let refused;
      for (let i = 0; i < 10 && !refused; i += 1) {
        const response = await browser.get('/api/auth/state');
        if (response.status !== 200) refused = response;
      }
      const login = await browser.post('/api/auth/login', {
        username: 'alice',
        password: PASSWORD,
      });
      assert.ok(refused, 'the burst ran out');
      assertApiError(refused, 429, 'rate_limited');
      const retryAfter = Number(refused.headers.get('retry-after'));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${retryAfter}`);
      // A refused login stores nothing (no session), even with the right password.
      assertApiError(login, 429, 'rate_limited');
      assert.equal(browser.cookies.size, 0);
      assert.deepEqual(await snapshot(palisade), stored);
    } finally {
      await palisade.close();
    }
  });

  test('people signing in at once from one address are all let in', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      const names = ['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal'];
      for (const name of names) await addUser(palisade, name);
      const clients = await Promise.all(names.map((name) => signIn(palisade, name)));
      for (const client of clients) assert.equal((await client.get('/api/me')).status, 200);
    } finally {
      await palisade.close();
    }
  });

  test('the password asked again for a change is throttled like a login', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      const alice = await newSignedInUser(palisade, 'alice');
      const change = (current: string) =>
        alice.post('/api/me/password', {
          current_password: current,
          new_password: 'a brand new passphrase',
        });
      const guesses = await Promise.all(
        Array.from({ length: 3 }, (_, i) => change(`guess number ${i}`)),
      );
      assert.ok(guesses.every((r) => r.status === 403 || r.status === 429));
      for (let i = 0; guesses.filter((r) => r.status === 403).length < 5; i += 1) {
        const guess = await change(`another guess ${i}`);
        assertApiError(guess, 403, 'wrong_password');
        guesses.push(guess);
      }
      const before = await snapshot(palisade);
      for (const response of [
        await change(PASSWORD),
        await alice.post('/api/auth/totp/disable', { password: PASSWORD }),
      ]) {
        assertApiError(response, 429, 'too_many_attempts');
        assert.ok(Number(response.headers.get('retry-after')) >= 1);
      }
      assert.deepEqual(await snapshot(palisade), before, 'the password is unchanged');
      assert.equal((await alice.get('/api/me')).status, 200, 'the session stays');
    } finally {
      await palisade.close();
    }
  });

  test('concurrent wrong passwords get no more than 5 tries', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      await addUser(palisade, 'alice');
      const attempts = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          new WebClient(palisade.url).post('/api/auth/login', {
            username: 'alice',
            password: `wrong password ${i}`,
          }),
        ),
      );
      const checked = attempts.filter((r) => r.status === 401);
      for (const refused of attempts.filter((r) => r.status !== 401)) {
        assertApiError(refused, 429, 'too_many_attempts');
        assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      }
      assert.equal(checked.length, 5, 'exactly 5 passwords were tried');
      const failures = await withStore(palisade, (store) =>
        store.sqlite
          .prepare(`select count(*) as n from audit_entry where action = 'auth.login_failed'`)
          .get(),
      );
      assert.deepEqual(failures, { n: checked.length });
      // And the account stays throttled for the right password too.
      await assert.rejects(signIn(palisade, 'alice'), /429/);
    } finally {
      await palisade.close();
    }
  });
});

describe('secrets', () => {
  test('passwords, tokens, TOTP secrets and recovery codes never reach the logs', async () => {
    const setupToken = 'a-setup-token-nobody-should-log';
    const palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_HOST: '0.0.0.0', PALISADE_SETUP_TOKEN: setupToken },
    });
    const secrets: string[] = [PASSWORD, setupToken];
    try {
      const root = new WebClient(palisade.url);
      const wrongToken = 'a-wrong-setup-token-also-secret';
      secrets.push(wrongToken);
      await root.post('/api/auth/setup', {
        username: 'root',
        password: PASSWORD,
        setup_token: wrongToken,
      });
      const created = await root.post('/api/auth/setup', {
        username: 'root',
        password: PASSWORD,
        setup_token: setupToken,
      });
      assert.equal(created.status, 201, created.text);
      secrets.push(root.cookies.get('palisade_session') as string);
      const wrongPassword = 'a wrong password that is secret too';
      secrets.push(wrongPassword);
      await new WebClient(palisade.url).post('/api/auth/login', {
        username: 'root',
        password: wrongPassword,
      });
      const { secret, recoveryCodes } = await enrollTotp(root);
      secrets.push(secret, ...recoveryCodes);
      const browser = new WebClient(palisade.url);
      await browser.post('/api/auth/login', { username: 'root', password: PASSWORD });
      secrets.push(browser.cookies.get('palisade_login') as string);
      const code = totpCode(secret, Date.now() + 30_000);
      const verified = await browser.post('/api/auth/totp/verify', { code });
      assert.equal(verified.status, 200, verified.text);
      secrets.push(browser.cookies.get('palisade_session') as string);
      const newPassword = 'the new password nobody logs';
      secrets.push(newPassword);
      const changed = await browser.post('/api/me/password', {
        current_password: PASSWORD,
        new_password: newPassword,
      });
      assert.equal(changed.status, 204, changed.text);
    } finally {
      await palisade.close();
    }
    const audit = readFileSync(join(palisade.home, 'audit.jsonl'), 'utf8');
    assert.match(audit, /auth\.login_failed/, 'the audit log records the failure');
    const logs = palisade.logs.join('');
    for (const value of secrets) {
      assert.ok(value && value.length >= 8, 'a secret to look for');
      assert.ok(!logs.includes(value), `not in the log: ${value.slice(0, 4)}…`);
      assert.ok(!audit.includes(value), `not in the audit log: ${value.slice(0, 4)}…`);
    }
  });
});

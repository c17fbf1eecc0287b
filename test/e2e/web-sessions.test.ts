import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setUserDisabled } from '../../src/auth/index.js';
import { randomToken, sha256Hex } from '../../src/crypto/index.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import {
  addUser,
  assertApiError,
  FAST_SCRYPT_ENV,
  newSignedInUser,
  PASSWORD,
  setCookieOf,
  signIn,
  snapshot,
  WebClient,
  withStore,
} from '../support/web.js';

const SESSION = 'palisade_session';

interface SessionView {
  id: string;
  user_agent: string;
  current: boolean;
  expires_at: string;
}

async function sessionsOf(client: WebClient): Promise<SessionView[]> {
  const response = await client.get('/api/me/sessions');
  assert.equal(response.status, 200, response.text);
  return (response.body as { sessions: SessionView[] }).sessions;
}

function userId(palisade: TestPalisade, username: string): Promise<string> {
  return withStore(
    palisade,
    (store) =>
      (
        store.sqlite.prepare('select id from user where username = ?').get(username) as {
          id: string;
        }
      ).id,
  );
}

function sessionRow(palisade: TestPalisade, token: string) {
  return withStore(
    palisade,
    (store) =>
      store.sqlite.prepare('select * from session where token_hash = ?').get(sha256Hex(token)) as {
        id: string;
        expires_at: string;
        revoked_at: string | null;
      },
  );
}

/** A second client holding only the given session cookie value. */
function clientWith(palisade: TestPalisade, value: string, name = SESSION): WebClient {
  const client = new WebClient(palisade.url);
  client.cookies.set(name, value);
  return client;
}

describe('session cookies', () => {
  test('over plain http: HttpOnly, SameSite=Strict, Path=/, no Secure, no Domain', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      await addUser(palisade, 'alice');
      const browser = new WebClient(palisade.url);
      const login = await browser.post('/api/auth/login', {
        username: 'alice',
        password: PASSWORD,
      });
      assert.equal(login.status, 200, login.text);
      const cookie = setCookieOf(login, SESSION);
      assert.ok(cookie, `a session cookie: ${login.headers.getSetCookie().join(' | ')}`);
      assert.equal(cookie.attributes.get('path'), '/');
      assert.ok(cookie.attributes.has('httponly'));
      assert.equal(cookie.attributes.get('samesite'), 'Strict');
      assert.ok(!cookie.attributes.has('secure'));
      assert.ok(!cookie.attributes.has('domain'));
      assert.equal(cookie.attributes.get('max-age'), String(30 * 86_400));
      assert.match(cookie.value, /^[A-Za-z0-9_-]{43}$/, '32 random bytes');
      assert.equal((await browser.get('/api/me')).status, 200);
    } finally {
      await palisade.close();
    }
  });

  test('with PALISADE_HTTPS=true the cookie is __Host- and Secure', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV, PALISADE_HTTPS: 'true' } });
    try {
      await addUser(palisade, 'alice');
      const origin = palisade.url.replace('http:', 'https:');
      const browser = new WebClient(palisade.url, origin);
      // The served origin is https://, so the http:// one is another site.
      assertApiError(
        await new WebClient(palisade.url).post('/api/auth/login', {
          username: 'alice',
          password: PASSWORD,
        }),
        403,
        'origin_mismatch',
      );
      const login = await browser.post('/api/auth/login', {
        username: 'alice',
        password: PASSWORD,
      });
      assert.equal(login.status, 200, login.text);
      assert.equal(setCookieOf(login, SESSION), undefined, 'no unprefixed cookie');
      const cookie = setCookieOf(login, `__Host-${SESSION}`);
      assert.ok(cookie, login.headers.getSetCookie().join(' | '));
      assert.ok(cookie.attributes.has('secure'));
      assert.ok(cookie.attributes.has('httponly'));
      assert.equal(cookie.attributes.get('samesite'), 'Strict');
      assert.equal(cookie.attributes.get('path'), '/');
      assert.ok(!cookie.attributes.has('domain'), '__Host- cookies have no Domain');
      assert.equal((await browser.get('/api/me')).status, 200);
      // The same value under the unprefixed name is not read over HTTPS.
      const unprefixed = clientWith(palisade, cookie.value);
      assertApiError(await unprefixed.get('/api/me'), 401, 'not_signed_in');
    } finally {
      await palisade.close();
    }
  });

  test('X-Forwarded-Proto: https makes the cookie Secure only behind a trusted proxy', async () => {
    const trusted = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_TRUST_PROXY: 'true' },
    });
    try {
      await addUser(trusted, 'alice');
      const browser = new WebClient(trusted.url, trusted.url.replace('http:', 'https:'));
      const login = await browser.post(
        '/api/auth/login',
        { username: 'alice', password: PASSWORD },
        { 'x-forwarded-proto': 'https' },
      );
      assert.equal(login.status, 200, login.text);
      const cookie = setCookieOf(login, `__Host-${SESSION}`);
      assert.ok(cookie, login.headers.getSetCookie().join(' | '));
      assert.ok(cookie.attributes.has('secure'));
      const me = await browser.get('/api/me', { 'x-forwarded-proto': 'https' });
      assert.equal(me.status, 200, me.text);
    } finally {
      await trusted.close();
    }

    const untrusted = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      await addUser(untrusted, 'alice');
      const browser = new WebClient(untrusted.url);
      const login = await browser.post(
        '/api/auth/login',
        { username: 'alice', password: PASSWORD },
        { 'x-forwarded-proto': 'https' },
      );
      assert.equal(login.status, 200, login.text);
      const cookie = setCookieOf(login, SESSION);
      assert.ok(cookie, login.headers.getSetCookie().join(' | '));
      assert.ok(!cookie.attributes.has('secure'), 'the header is ignored without trust-proxy');
      // Nor does it turn the served origin into https://.
      const spoofed = await new WebClient(
        untrusted.url,
        untrusted.url.replace('http:', 'https:'),
      ).post(
        '/api/auth/login',
        { username: 'alice', password: PASSWORD },
        { 'x-forwarded-proto': 'https' },
      );
      assertApiError(spoofed, 403, 'origin_mismatch');
    } finally {
      await untrusted.close();
    }
  });
});

describe('session lifecycle', () => {
  let palisade: TestPalisade;
  before(async () => {
    palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
  });
  after(() => palisade.close());

  test('a cookie planted before login is never the session after it', async () => {
    await addUser(palisade, 'fixation-victim');
    // A value the attacker made up does not authenticate...
    const planted = randomToken(32);
    const browser = clientWith(palisade, planted);
    assertApiError(await browser.get('/api/me'), 401, 'not_signed_in');
    const login = await browser.post('/api/auth/login', {
      username: 'fixation-victim',
      password: PASSWORD,
    });
    assert.equal(login.status, 200, login.text);
    const issued = setCookieOf(login, SESSION)?.value;
    assert.ok(issued);
    assert.notEqual(issued, planted, 'a new token at login');
    assert.equal(browser.cookies.get(SESSION), issued);
    assert.equal((await browser.get('/api/me')).status, 200);
    assertApiError(await clientWith(palisade, planted).get('/api/me'), 401, 'not_signed_in');
    assert.equal(await sessionRow(palisade, planted), undefined, 'the planted value is not stored');

    // ...and the attacker's own live session planted in the victim's browser is ended at login.
    const attacker = await newSignedInUser(palisade, 'fixation-attacker');
    const attackerToken = attacker.cookies.get(SESSION) as string;
    const victim = clientWith(palisade, attackerToken);
    const second = await victim.post('/api/auth/login', {
      username: 'fixation-victim',
      password: PASSWORD,
    });
    assert.equal(second.status, 200, second.text);
    assert.notEqual(victim.cookies.get(SESSION), attackerToken);
    assert.equal(
      ((await victim.get('/api/me')).body as { username: string }).username,
      'fixation-victim',
    );
    assertApiError(await attacker.get('/api/me'), 401, 'not_signed_in');
  });

  test('logout revokes the session: the old cookie no longer works', async () => {
    const browser = await newSignedInUser(palisade, 'logout-user');
    const token = browser.cookies.get(SESSION) as string;
    const out = await browser.post('/api/auth/logout', {});
    assert.equal(out.status, 204, out.text);
    const cleared = setCookieOf(out, SESSION);
    assert.ok(cleared, 'the cookie is cleared');
    assert.equal(cleared.value, '');
    assert.equal(browser.cookies.size, 0);
    assertApiError(await clientWith(palisade, token).get('/api/me'), 401, 'not_signed_in');
    assert.ok((await sessionRow(palisade, token))?.revoked_at, 'revoked in the store');
    // Logging out again (no session) is harmless.
    assert.equal((await browser.post('/api/auth/logout', {})).status, 204);
  });

  test('an expired session is refused', async () => {
    const browser = await newSignedInUser(palisade, 'expiring-user');
    const token = browser.cookies.get(SESSION) as string;
    await withStore(palisade, (store) =>
      store.sqlite
        .prepare('update session set expires_at = ? where token_hash = ?')
        .run(new Date(Date.now() - 1000).toISOString(), sha256Hex(token)),
    );
    assertApiError(await browser.get('/api/me'), 401, 'not_signed_in');
    assertApiError(await browser.get('/api/me/sessions'), 401, 'not_signed_in');
  });

  test('a session revoked from another session is refused; the revoker keeps working', async () => {
    await addUser(palisade, 'two-devices');
    const laptop = await signIn(palisade, 'two-devices');
    const phone = await signIn(palisade, 'two-devices');
    const listed = await sessionsOf(laptop);
    assert.equal(listed.length, 2);
    const phoneSession = listed.find((s) => !s.current);
    assert.ok(phoneSession);
    const revoked = await laptop.delete(`/api/me/sessions/${phoneSession.id}`);
    assert.equal(revoked.status, 204, revoked.text);
    assertApiError(await phone.get('/api/me'), 401, 'not_signed_in');
    assert.equal((await laptop.get('/api/me')).status, 200);
    assert.deepEqual(
      (await sessionsOf(laptop)).map((s) => s.current),
      [true],
    );
    // Revoking it again, or an id that does not exist, is a 404.
    assertApiError(
      await laptop.delete(`/api/me/sessions/${phoneSession.id}`),
      404,
      'session_not_found',
    );
    assertApiError(
      await laptop.delete('/api/me/sessions/00000000-0000-4000-8000-000000000000'),
      404,
      'session_not_found',
    );
  });

  test('only the SHA-256 of the token is stored, never the token', async () => {
    const browser = await newSignedInUser(palisade, 'hashed-token');
    const token = browser.cookies.get(SESSION) as string;
    const row = await sessionRow(palisade, token);
    assert.ok(row, 'the row is found by the hash of the token');
    const files = ['palisade.db', 'palisade.db-wal'].map((f) => join(palisade.home, f));
    for (const file of files) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch {
        continue;
      }
      assert.equal(bytes.indexOf(token), -1, `the cookie value is not in ${file}`);
      assert.equal(bytes.indexOf(Buffer.from(token, 'base64url')), -1, `nor its bytes`);
    }
    const logs = palisade.logs.join('');
    assert.ok(!logs.includes(token), 'nor in the log');
  });

  test('past half its lifetime a session is renewed: the cookie is sent again', async () => {
    const browser = await newSignedInUser(palisade, 'renewed-user');
    const token = browser.cookies.get(SESSION) as string;
    const fresh = await browser.get('/api/me');
    assert.equal(fresh.status, 200);
    assert.equal(setCookieOf(fresh, SESSION), undefined, 'a fresh session is not re-sent');

    const near = new Date(Date.now() + 3_600_000).toISOString();
    await withStore(palisade, (store) =>
      store.sqlite
        .prepare('update session set expires_at = ? where token_hash = ?')
        .run(near, sha256Hex(token)),
    );
    const renewed = await browser.get('/api/me');
    assert.equal(renewed.status, 200, renewed.text);
    const cookie = setCookieOf(renewed, SESSION);
    assert.ok(cookie, 'the cookie is sent again');
    assert.equal(cookie.value, token, 'the same token');
    assert.equal(cookie.attributes.get('max-age'), String(30 * 86_400));
    assert.ok(cookie.attributes.has('httponly'));
    assert.equal(cookie.attributes.get('samesite'), 'Strict');
    const moved = (await sessionRow(palisade, token))?.expires_at as string;
    assert.ok(moved > near, `expires_at moved from ${near} to ${moved}`);
    assert.ok(Date.parse(moved) - Date.parse(near) > 15 * 86_400_000);
  });

  test('the sessions list marks the current one and shows the user agent', async () => {
    await addUser(palisade, 'agent-user');
    const firefox = new WebClient(palisade.url);
    const headers = { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Firefox/140.0' };
    const login = await firefox.post(
      '/api/auth/login',
      { username: 'agent-user', password: PASSWORD },
      headers,
    );
    assert.equal(login.status, 200);
    const other = new WebClient(palisade.url);
    await other.post(
      '/api/auth/login',
      { username: 'agent-user', password: PASSWORD },
      { 'user-agent': 'curl/8.0' },
    );
    const listed = await sessionsOf(firefox);
    assert.equal(listed.length, 2);
    const current = listed.filter((s) => s.current);
    assert.equal(current.length, 1);
    assert.equal(current[0]?.user_agent, headers['user-agent']);
    assert.equal(listed.find((s) => !s.current)?.user_agent, 'curl/8.0');
    for (const s of listed) {
      assert.deepEqual(Object.keys(s).sort(), [
        'created_at',
        'current',
        'expires_at',
        'id',
        'ip',
        'last_seen_at',
        'user_agent',
      ]);
    }
  });

  test("a user cannot revoke another user's session", async () => {
    const alice = await newSignedInUser(palisade, 'owner-alice');
    const bob = await newSignedInUser(palisade, 'intruder-bob');
    const [aliceSession] = await sessionsOf(alice);
    assert.ok(aliceSession);
    const before = await snapshot(palisade);
    const refused = await bob.delete(`/api/me/sessions/${aliceSession.id}`);
    assertApiError(refused, 404, 'session_not_found');
    assert.deepEqual(await snapshot(palisade), before);
    assert.equal((await alice.get('/api/me')).status, 200);
    // Nor does bob see it.
    assert.ok(!(await sessionsOf(bob)).some((s) => s.id === aliceSession.id));
  });

  test("a password change ends the user's other sessions, not the current one", async () => {
    await addUser(palisade, 'changer');
    const here = await signIn(palisade, 'changer');
    const elsewhere = await signIn(palisade, 'changer');
    const bystander = await newSignedInUser(palisade, 'bystander');
    const newPassword = 'a brand new passphrase here';

    const before = await snapshot(palisade);
    assertApiError(
      await here.post('/api/me/password', {
        current_password: 'not my password',
        new_password: newPassword,
      }),
      403,
      'wrong_password',
    );
    assertApiError(
      await here.post('/api/me/password', {
        current_password: PASSWORD,
        new_password: 'short',
      }),
      400,
      'weak_password',
    );
    assert.deepEqual(await snapshot(palisade), before, 'refused changes change nothing');
    assert.equal((await elsewhere.get('/api/me')).status, 200);

    const changed = await here.post('/api/me/password', {
      current_password: PASSWORD,
      new_password: newPassword,
    });
    assert.equal(changed.status, 204, changed.text);
    assert.equal((await here.get('/api/me')).status, 200, 'the current session stays');
    assertApiError(await elsewhere.get('/api/me'), 401, 'not_signed_in');
    assert.equal((await bystander.get('/api/me')).status, 200, "others' sessions stay");
    assertApiError(
      await new WebClient(palisade.url).post('/api/auth/login', {
        username: 'changer',
        password: PASSWORD,
      }),
      401,
      'invalid_credentials',
    );
    await signIn(palisade, 'changer', newPassword);
  });

  test('disabling a user ends their sessions', async () => {
    const browser = await newSignedInUser(palisade, 'to-disable');
    const second = await signIn(palisade, 'to-disable');
    const id = await userId(palisade, 'to-disable');
    await withStore(palisade, (store) => setUserDisabled(store, id, true));
    assertApiError(await browser.get('/api/me'), 401, 'not_signed_in');
    assertApiError(await second.get('/api/me'), 401, 'not_signed_in');
    const live = await withStore(palisade, (store) =>
      store.sqlite
        .prepare('select count(*) as n from session where user_id = ? and revoked_at is null')
        .get(id),
    );
    assert.deepEqual(live, { n: 0 });
    // Re-enabled, they sign in anew; the old sessions stay dead.
    await withStore(palisade, (store) => setUserDisabled(store, id, false));
    assertApiError(await browser.get('/api/me'), 401, 'not_signed_in');
    await signIn(palisade, 'to-disable');
  });
});

describe('PALISADE_SINGLE_SESSION=true', () => {
  test('a second login ends the first session', async () => {
    const palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_SINGLE_SESSION: 'true' },
    });
    try {
      await addUser(palisade, 'alice');
      const bob = await newSignedInUser(palisade, 'bob');
      const first = await signIn(palisade, 'alice');
      assert.equal((await first.get('/api/me')).status, 200);
      const second = await signIn(palisade, 'alice');
      assertApiError(await first.get('/api/me'), 401, 'not_signed_in');
      assert.equal((await second.get('/api/me')).status, 200);
      assert.equal((await sessionsOf(second)).length, 1);
      assert.equal((await bob.get('/api/me')).status, 200, "other users' sessions stay");
    } finally {
      await palisade.close();
    }
  });
});

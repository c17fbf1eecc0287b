import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createUser, listUsers, setUserDisabled } from '../../src/auth/index.js';
import { openStore } from '../../src/store/index.js';
import { startPalisade, tempHome, type TestPalisade } from '../support/palisade.js';
import {
  addUser,
  assertApiError,
  FAST_SCRYPT,
  FAST_SCRYPT_ENV,
  PASSWORD,
  setCookieOf,
  signIn,
  snapshot,
  WebClient,
  withoutRequestId,
  withStore,
} from '../support/web.js';

/** The setup token Palisade printed at start, if it printed one. */
function printedSetupToken(palisade: TestPalisade): string | undefined {
  const text = palisade.announced.find((t) => /setup token/.test(t));
  return text === undefined ? undefined : /^ {4}(\S+)$/m.exec(text)?.[1];
}

function admins(palisade: TestPalisade) {
  return withStore(palisade, (store) =>
    store.sqlite.prepare(`select username from user where role = 'admin'`).all(),
  );
}

describe('setup of the first admin', () => {
  test('on loopback no token is asked; setup signs in, then closes for good', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      assert.equal(printedSetupToken(palisade), undefined, 'no setup token on loopback');
      const browser = new WebClient(palisade.url);
      const state = await browser.get('/api/auth/state');
      assert.equal(state.status, 200);
      assert.deepEqual(state.body, {
        auth: true,
        setup_required: true,
        setup_token_required: false,
        user: null,
      });

      const setup = await browser.post('/api/auth/setup', { username: 'root', password: PASSWORD });
      assert.equal(setup.status, 201, setup.text);
      const { user } = setup.body as { user: { username: string; role: string } };
      assert.equal(user.username, 'root');
      assert.equal(user.role, 'admin');
      assert.ok(setCookieOf(setup, 'palisade_session'), 'setup signs the admin in');
      const me = await browser.get('/api/me');
      assert.equal(me.status, 200);
      assert.equal((me.body as { username: string }).username, 'root');

      const after = await new WebClient(palisade.url).get('/api/auth/state');
      assert.equal((after.body as { setup_required: boolean }).setup_required, false);

      const before = await snapshot(palisade);
      for (const client of [browser, new WebClient(palisade.url)]) {
        const again = await client.post('/api/auth/setup', {
          username: 'second',
          password: PASSWORD,
        });
        assertApiError(again, 409, 'setup_closed');
      }
      assert.deepEqual(await snapshot(palisade), before);
      assert.deepEqual(await admins(palisade), [{ username: 'root' }]);
    } finally {
      await palisade.close();
    }
  });

  test('on an exposed bind setup needs the printed token', async () => {
    const palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_HOST: '0.0.0.0' },
    });
    try {
      const token = printedSetupToken(palisade);
      assert.ok(token, `a setup token is printed: ${palisade.announced.join('')}`);
      assert.ok(!palisade.logs.join('').includes(token), 'the setup token is not in the log');
      const browser = new WebClient(palisade.url);
      const state = await browser.get('/api/auth/state');
      assert.equal((state.body as { setup_token_required: boolean }).setup_token_required, true);

      const before = await snapshot(palisade);
      const body = { username: 'root', password: PASSWORD };
      assertApiError(await browser.post('/api/auth/setup', body), 403, 'invalid_setup_token');
      // Four failures: a fifth would close setup to this address for 15 minutes (tested below).
      for (const wrong of [`${token}x`, token.slice(1), '']) {
        const refused = await browser.post('/api/auth/setup', { ...body, setup_token: wrong });
        assertApiError(refused, 403, 'invalid_setup_token');
      }
      assert.deepEqual(await snapshot(palisade), before, 'nothing stored by refused setups');
      assert.equal(browser.cookies.size, 0);

      const created = await browser.post('/api/auth/setup', { ...body, setup_token: token });
      assert.equal(created.status, 201, created.text);
      assert.equal((await browser.get('/api/me')).status, 200);
      // The token was one-time: setup is closed now, token or not.
      const reused = await new WebClient(palisade.url).post('/api/auth/setup', {
        username: 'other',
        password: PASSWORD,
        setup_token: token,
      });
      assertApiError(reused, 409, 'setup_closed');
    } finally {
      await palisade.close();
    }
  });

  test('setup-token guesses are throttled like failed sign-ins', async () => {
    const palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_HOST: '0.0.0.0' },
    });
    try {
      const token = printedSetupToken(palisade);
      assert.ok(token);
      const browser = new WebClient(palisade.url);
      const body = { username: 'root', password: PASSWORD };
      for (let i = 0; i < 5; i += 1) {
        const refused = await browser.post('/api/auth/setup', { ...body, setup_token: `x${i}` });
        assertApiError(refused, 403, 'invalid_setup_token');
      }
      const throttled = await browser.post('/api/auth/setup', { ...body, setup_token: token });
      assertApiError(throttled, 429, 'too_many_attempts');
      assert.ok(Number(throttled.headers.get('retry-after')) > 0);
      assert.equal((await withStore(palisade, (store) => listUsers(store))).length, 0);
    } finally {
      await palisade.close();
    }
  });

  test('PALISADE_SETUP_TOKEN is used instead of a minted one', async () => {
    const configured = 'my-own-setup-token-0123456789';
    const palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_HOST: '0.0.0.0', PALISADE_SETUP_TOKEN: configured },
    });
    try {
      assert.equal(printedSetupToken(palisade), undefined, 'no token is minted or printed');
      const browser = new WebClient(palisade.url);
      const body = { username: 'root', password: PASSWORD };
      assertApiError(
        await browser.post('/api/auth/setup', { ...body, setup_token: 'another-token-0123456789' }),
        403,
        'invalid_setup_token',
      );
      const created = await browser.post('/api/auth/setup', { ...body, setup_token: configured });
      assert.equal(created.status, 201, created.text);
    } finally {
      await palisade.close();
    }
  });

  test('two setups racing create exactly one admin', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      const [first, second] = await Promise.all(
        ['alpha', 'bravo'].map((username) =>
          new WebClient(palisade.url).post('/api/auth/setup', { username, password: PASSWORD }),
        ),
      );
      assert.ok(first && second);
      const statuses = [first.status, second.status].sort();
      assert.deepEqual(statuses, [201, 409], `${first.text} ${second.text}`);
      assertApiError(first.status === 409 ? first : second, 409, 'setup_closed');
      const rows = await admins(palisade);
      assert.equal(rows.length, 1);
      const users = await withStore(palisade, (store) =>
        store.sqlite.prepare('select count(*) as n from user').get(),
      );
      assert.deepEqual(users, { n: 1 });
    } finally {
      await palisade.close();
    }
  });

  test('weak passwords are refused and nothing is stored', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      const browser = new WebClient(palisade.url);
      const before = await snapshot(palisade);
      const cases: Array<[string, string]> = [
        ['root', 'short'],
        ['root', 'eleven-char'],
        ['root', 'qwertyuiopasdf'],
        ['root', 'Password1234'],
        ['administrator1', 'Administrator1'],
        ['root', 'a'.repeat(257)],
        ['root', 'é'.repeat(129)], // 129 characters, 258 bytes
      ];
      for (const [username, password] of cases) {
        const refused = await browser.post('/api/auth/setup', { username, password });
        assertApiError(refused, 400, 'weak_password');
        assert.equal(setCookieOf(refused, 'palisade_session'), undefined);
      }
      assert.deepEqual(await snapshot(palisade), before);
      const state = await browser.get('/api/auth/state');
      assert.equal((state.body as { setup_required: boolean }).setup_required, true);
      // 256 bytes exactly is allowed.
      const created = await browser.post('/api/auth/setup', {
        username: 'root',
        password: 'a-'.repeat(128),
      });
      assert.equal(created.status, 201, created.text);
    } finally {
      await palisade.close();
    }
  });
});

describe('password login', () => {
  test('a wrong password, an unknown user and a disabled user get the same 401', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      await addUser(palisade, 'alice');
      await addUser(palisade, 'carol');
      await withStore(palisade, (store) => {
        const carol = store.sqlite.prepare(`select id from user where username = 'carol'`).get();
        setUserDisabled(store, (carol as { id: string }).id, true);
      });
      const before = await snapshot(palisade);
      const browser = new WebClient(palisade.url);
      const wrong = await browser.post('/api/auth/login', {
        username: 'alice',
        password: 'not the password at all',
      });
      const unknown = await browser.post('/api/auth/login', {
        username: 'nobody',
        password: PASSWORD,
      });
      const disabled = await browser.post('/api/auth/login', {
        username: 'carol',
        password: PASSWORD,
      });
      for (const response of [wrong, unknown, disabled]) {
        assertApiError(response, 401, 'invalid_credentials');
        assert.equal(response.headers.getSetCookie().length, 0);
      }
      assert.deepEqual(withoutRequestId(wrong), withoutRequestId(unknown));
      assert.deepEqual(withoutRequestId(wrong), withoutRequestId(disabled));
      assert.notEqual(
        (wrong.body as { request_id: string }).request_id,
        (unknown.body as { request_id: string }).request_id,
      );
      assert.deepEqual(await snapshot(palisade), before);
      assertApiError(await browser.get('/api/me'), 401, 'not_signed_in');

      // The right password signs in, whatever the case of the name typed.
      const signedIn = await new WebClient(palisade.url).post('/api/auth/login', {
        username: 'ALICE',
        password: PASSWORD,
      });
      assert.equal(signedIn.status, 200, signedIn.text);
      assert.equal((signedIn.body as { user: { username: string } }).user.username, 'alice');
    } finally {
      await palisade.close();
    }
  });

  test('after 5 failures logins are throttled per account and per address', async () => {
    // Behind a trusted proxy, X-Forwarded-For is the client address the throttle counts.
    const palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_TRUST_PROXY: 'true' },
    });
    try {
      await addUser(palisade, 'alice');
      await addUser(palisade, 'bob');
      const from = (ip: string) => ({ 'x-forwarded-for': ip });
      const browser = new WebClient(palisade.url);
      for (let i = 0; i < 5; i += 1) {
        const failed = await browser.post(
          '/api/auth/login',
          { username: 'alice', password: `wrong password ${i}` },
          from('203.0.113.1'),
        );
        assertApiError(failed, 401, 'invalid_credentials');
      }
      const before = await snapshot(palisade);
      const attempts = [
        // The 6th attempt, even with the right password.
        { username: 'alice', ip: '203.0.113.1' },
        // The same account from another address.
        { username: 'ALICE', ip: '198.51.100.7' },
        // Another account from the same address.
        { username: 'bob', ip: '203.0.113.1' },
      ];
      for (const { username, ip } of attempts) {
        const refused = await browser.post(
          '/api/auth/login',
          { username, password: PASSWORD },
          from(ip),
        );
        assertApiError(refused, 429, 'too_many_attempts');
        const retryAfter = Number(refused.headers.get('retry-after'));
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${retryAfter}`);
        assert.equal(refused.headers.getSetCookie().length, 0, 'no session for a throttled login');
      }
      assert.deepEqual(await snapshot(palisade), before, 'throttled logins store nothing');
      // Another account from another address is not affected.
      const fine = await browser.post(
        '/api/auth/login',
        { username: 'bob', password: PASSWORD },
        from('198.51.100.8'),
      );
      assert.equal(fine.status, 200, fine.text);
    } finally {
      await palisade.close();
    }
  });

  test('a hash made with a lower scrypt N is upgraded at a successful login', async () => {
    const palisade = await startPalisade({ env: { PALISADE_SCRYPT_N: '2048' } });
    try {
      await addUser(palisade, 'alice'); // hashed with N=1024
      const hash = () =>
        withStore(
          palisade,
          (store) =>
            (
              store.sqlite
                .prepare(`select password_hash from user where username = 'alice'`)
                .get() as { password_hash: string }
            ).password_hash,
        );
      const old = await hash();
      assert.match(old, /^scrypt\$n=1024\$r=8\$p=1\$/);
      const refused = await new WebClient(palisade.url).post('/api/auth/login', {
        username: 'alice',
        password: 'the wrong password',
      });
      assertApiError(refused, 401, 'invalid_credentials');
      assert.equal(await hash(), old, 'a failed login does not touch the hash');

      await signIn(palisade, 'alice');
      const upgraded = await hash();
      assert.match(upgraded, /^scrypt\$n=2048\$r=8\$p=1\$/);
      assert.notEqual(upgraded, old);
      // The upgraded hash still takes the same password, and is not upgraded again.
      await signIn(palisade, 'alice');
      assert.equal(await hash(), upgraded);
    } finally {
      await palisade.close();
    }
  });
});

describe('single-user mode (PALISADE_AUTH=false)', () => {
  test('on loopback the local user is signed in without a cookie', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV, PALISADE_AUTH: 'false' } });
    try {
      const browser = new WebClient(palisade.url);
      const me = await browser.get('/api/me');
      assert.equal(me.status, 200, me.text);
      assert.equal((me.body as { username: string }).username, 'local');
      const state = await browser.get('/api/auth/state');
      assert.equal(state.status, 200);
      const body = state.body as { auth: boolean; setup_required: boolean; user: unknown };
      assert.equal(body.auth, false);
      assert.equal(body.setup_required, false);
      assert.equal((body.user as { username: string }).username, 'local');
      assert.equal(browser.cookies.size, 0, 'no session cookie is needed or set');
      // The door still stands: no X-Requested-With, no answer.
      assertApiError(
        await browser.get('/api/me', { 'x-requested-with': undefined }),
        403,
        'csrf_header_missing',
      );
      // There is nothing to set up, and the local user cannot sign in with a password.
      assertApiError(
        await browser.post('/api/auth/setup', { username: 'root', password: PASSWORD }),
        409,
        'setup_closed',
      );
      assertApiError(
        await browser.post('/api/auth/login', { username: 'local', password: '!' }),
        401,
        'invalid_credentials',
      );
    } finally {
      await palisade.close();
    }
  });

  test('turning accounts on after single-user mode opens setup', async () => {
    const local = await startPalisade({ env: { ...FAST_SCRYPT_ENV, PALISADE_AUTH: 'false' } });
    const { home } = local;
    await local.close();
    const palisade = await startPalisade({ home, env: { ...FAST_SCRYPT_ENV } });
    try {
      const browser = new WebClient(palisade.url);
      const state = await browser.get('/api/auth/state');
      assert.equal(
        (state.body as { setup_required: boolean }).setup_required,
        true,
        'the password-less local admin cannot sign in, so it does not close setup',
      );
      const created = await browser.post('/api/auth/setup', {
        username: 'root',
        password: PASSWORD,
      });
      assert.equal(created.status, 201, created.text);
      assertApiError(
        await new WebClient(palisade.url).post('/api/auth/login', {
          username: 'local',
          password: PASSWORD,
        }),
        401,
        'invalid_credentials',
      );
    } finally {
      await palisade.close();
    }
    // From now on the home has an account: single-user mode is refused.
    await assert.rejects(
      startPalisade({ home, env: { ...FAST_SCRYPT_ENV, PALISADE_AUTH: 'false' } }),
      /already has user accounts/,
    );
  });

  test('refused at start on an exposed bind, naming the fix', async () => {
    await assert.rejects(
      startPalisade({
        env: { ...FAST_SCRYPT_ENV, PALISADE_AUTH: 'false', PALISADE_HOST: '0.0.0.0' },
      }),
      (error: Error) => {
        assert.match(error.message, /PALISADE_AUTH=false/);
        assert.match(error.message, /127\.0\.0\.1|loopback/);
        return true;
      },
    );
  });

  test('refused at start when the home already has another user', async () => {
    const home = tempHome();
    const store = await openStore(home);
    try {
      await createUser(store, { username: 'alice', password: PASSWORD, role: 'user' }, FAST_SCRYPT);
    } finally {
      await store.close();
    }
    await assert.rejects(
      startPalisade({ home, env: { ...FAST_SCRYPT_ENV, PALISADE_AUTH: 'false' } }),
      (error: Error) => {
        assert.match(error.message, /already has user accounts/);
        assert.match(error.message, /remove PALISADE_AUTH=false/);
        return true;
      },
    );
    // The home is left as it was, and serves normally with accounts on.
    const palisade = await startPalisade({ home, env: { ...FAST_SCRYPT_ENV } });
    try {
      const users = await withStore(palisade, (s) =>
        s.sqlite.prepare('select username from user').all(),
      );
      assert.deepEqual(users, [{ username: 'alice' }]);
      assert.equal((await signIn(palisade, 'alice').then((c) => c.get('/api/me'))).status, 200);
    } finally {
      await palisade.close();
    }
  });
});

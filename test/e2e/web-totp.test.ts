import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { acceptTotp, hashRecoveryCode, totpCode, TOTP_PERIOD_S } from '../../src/auth/index.js';
import { randomToken, sha256Hex } from '../../src/crypto/index.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import {
  addUser,
  assertApiError,
  enrollTotp,
  FAST_SCRYPT_ENV,
  PASSWORD,
  setCookieOf,
  signIn,
  snapshot,
  WebClient,
  withStore,
} from '../support/web.js';

const STEP_MS = TOTP_PERIOD_S * 1000;

/** A 6-digit code that no step near now accepts. */
function wrongCode(secret: string): string {
  for (let n = 0; ; n += 1) {
    const code = String(n).padStart(6, '0');
    if (
      acceptTotp(secret, code, null) === null &&
      acceptTotp(secret, code, null, Date.now() + STEP_MS) === null
    ) {
      return code;
    }
  }
}

/** The password step of a login for a TOTP user: a fresh client holding the login cookie. */
async function passwordStep(palisade: TestPalisade, username: string): Promise<WebClient> {
  const browser = new WebClient(palisade.url);
  const step = await browser.post('/api/auth/login', { username, password: PASSWORD });
  assert.equal(step.status, 200, step.text);
  assert.deepEqual(step.body, { totp_required: true });
  assert.equal(setCookieOf(step, 'palisade_session'), undefined, 'no session yet');
  assert.ok(browser.cookies.has('palisade_login'));
  return browser;
}

function userRow(palisade: TestPalisade, username: string) {
  return withStore(
    palisade,
    (store) =>
      store.sqlite.prepare('select * from user where username = ?').get(username) as {
        id: string;
        totp_secret_enc: string | null;
        totp_enabled_at: string | null;
      },
  );
}

describe('TOTP', () => {
  let palisade: TestPalisade;
  before(async () => {
    palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
  });
  after(() => palisade.close());

  test('enroll, confirm, then sign in with password and code', async () => {
    await addUser(palisade, 'alice');
    const browser = await signIn(palisade, 'alice');

    // The password again: a session left open cannot bind someone else's phone.
    assertApiError(await browser.post('/api/auth/totp/enroll', {}), 400, 'invalid_request');
    assertApiError(
      await browser.post('/api/auth/totp/enroll', { password: 'not the password at all' }),
      403,
      'wrong_password',
    );
    const elsewhere = await signIn(palisade, 'alice');
    const enrolled = await browser.post('/api/auth/totp/enroll', { password: PASSWORD });
    assert.equal(enrolled.status, 200, enrolled.text);
    const { secret, otpauth_url, qr_svg } = enrolled.body as {
      secret: string;
      otpauth_url: string;
      qr_svg: string;
    };
    assert.match(secret, /^[A-Z2-7]{32}$/);
    assert.match(otpauth_url, /^otpauth:\/\/totp\/Palisade:alice\?/);
    assert.match(qr_svg, /^<svg/);
    // Not on until confirmed.
    assert.equal(
      ((await browser.get('/api/me')).body as { totp_enabled: boolean }).totp_enabled,
      false,
    );

    const stateBefore = await snapshot(palisade);
    for (const code of [wrongCode(secret), '12345', 'abcdef', ' ']) {
      assertApiError(await browser.post('/api/auth/totp/confirm', { code }), 400);
    }
    assert.deepEqual(await snapshot(palisade), stateBefore, 'wrong codes change nothing');

    const confirmed = await browser.post('/api/auth/totp/confirm', {
      code: totpCode(secret, Date.now()),
    });
    assert.equal(confirmed.status, 200, confirmed.text);
    const codes = (confirmed.body as { recovery_codes: string[] }).recovery_codes;
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const code of codes) assert.match(code, /^[a-z2-9]{4}(-[a-z2-9]{4}){3}$/);
    assert.equal(
      ((await browser.get('/api/me')).body as { totp_enabled: boolean }).totp_enabled,
      true,
    );
    assertApiError(
      await browser.post('/api/auth/totp/enroll', { password: PASSWORD }),
      409,
      'totp_already_enabled',
    );
    // Turning it on ends the other sessions, which never passed the second factor.
    assertApiError(await elsewhere.get('/api/me'), 401, 'not_signed_in');

    // Stored sealed, never in clear; recovery codes only as hashes.
    const row = await userRow(palisade, 'alice');
    assert.match(row.totp_secret_enc ?? '', /^enc\$v1\$/);
    assert.ok(!(row.totp_secret_enc ?? '').includes(secret));
    const hashes = await withStore(palisade, (store) =>
      store.sqlite
        .prepare('select code_hash from recovery_code where user_id = ? order by seq')
        .all(row.id),
    );
    assert.deepEqual(
      hashes,
      codes.map((c) => ({ code_hash: hashRecoveryCode(c) })),
    );
    for (const file of ['palisade.db', 'palisade.db-wal']) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(join(palisade.home, file));
      } catch {
        continue;
      }
      assert.equal(bytes.indexOf(secret), -1, `the TOTP secret is not in ${file}`);
      for (const code of codes) assert.equal(bytes.indexOf(code), -1, `nor recovery codes`);
    }

    // The password step answers totp_required with a short-lived HttpOnly login cookie.
    const next = new WebClient(palisade.url);
    const step = await next.post('/api/auth/login', { username: 'alice', password: PASSWORD });
    assert.equal(step.status, 200, step.text);
    assert.deepEqual(step.body, { totp_required: true });
    const login = setCookieOf(step, 'palisade_login');
    assert.ok(login, step.headers.getSetCookie().join(' | '));
    assert.ok(login.attributes.has('httponly'));
    assert.equal(login.attributes.get('samesite'), 'Strict');
    assert.equal(login.attributes.get('path'), '/');
    assert.ok(Number(login.attributes.get('max-age')) <= 600, 'short-lived');
    assert.equal(setCookieOf(step, 'palisade_session'), undefined);
    assertApiError(await next.get('/api/me'), 401, 'not_signed_in');
    const challenge = await withStore(palisade, (store) =>
      store.sqlite
        .prepare('select * from login_challenge where token_hash = ?')
        .get(sha256Hex(login.value)),
    );
    assert.ok(challenge, 'only the hash of the login token is stored');

    // The code of the next step (the confirm used this one's).
    const code = totpCode(secret, Date.now() + STEP_MS);
    const verified = await next.post('/api/auth/totp/verify', { code });
    assert.equal(verified.status, 200, verified.text);
    assert.equal((verified.body as { user: { username: string } }).user.username, 'alice');
    assert.ok(setCookieOf(verified, 'palisade_session'));
    assert.equal(next.cookies.has('palisade_login'), false, 'the login cookie is cleared');
    assert.equal((await next.get('/api/me')).status, 200);

    // The same code, replayed after a new password step, is refused.
    const replay = await passwordStep(palisade, 'alice');
    const replayBefore = await snapshot(palisade);
    const replayed = await replay.post('/api/auth/totp/verify', { code });
    assertApiError(replayed, 401, 'invalid_code');
    assert.equal(setCookieOf(replayed, 'palisade_session'), undefined);
    assertApiError(await replay.get('/api/me'), 401, 'not_signed_in');
    const sessions = (s: Record<string, unknown[]>) => s.session;
    assert.deepEqual(sessions(await snapshot(palisade)), sessions(replayBefore));
    // Nor does the same code work on the login cookie that was used (it is gone).
    const used = new WebClient(palisade.url);
    used.cookies.set('palisade_login', login.value);
    assertApiError(await used.post('/api/auth/totp/verify', { code }), 401, 'login_expired');

    // A recovery code works once, typed in any case; then it is refused.
    const [recovery] = codes as [string];
    const first = await passwordStep(palisade, 'alice');
    const recovered = await first.post('/api/auth/totp/verify', { code: recovery.toUpperCase() });
    assert.equal(recovered.status, 200, recovered.text);
    assert.equal((await first.get('/api/me')).status, 200);
    const again = await passwordStep(palisade, 'alice');
    assertApiError(
      await again.post('/api/auth/totp/verify', { code: recovery }),
      401,
      'invalid_code',
    );
    const usedCodes = await withStore(palisade, (store) =>
      store.sqlite
        .prepare(
          'select count(*) as n from recovery_code where user_id = ? and used_at is not null',
        )
        .get(row.id),
    );
    assert.deepEqual(usedCodes, { n: 1 });
  });

  test('the TOTP step without the password step is refused', async () => {
    await addUser(palisade, 'bob');
    const { secret } = await enrollTotp(await signIn(palisade, 'bob'));
    const code = totpCode(secret, Date.now() + STEP_MS);
    const before = await snapshot(palisade);
    const none = new WebClient(palisade.url);
    assertApiError(await none.post('/api/auth/totp/verify', { code }), 401, 'login_expired');
    const forged = new WebClient(palisade.url);
    for (const value of [randomToken(32), 'x', 'a'.repeat(300)]) {
      forged.cookies.set('palisade_login', value);
      assertApiError(await forged.post('/api/auth/totp/verify', { code }), 401, 'login_expired');
    }
    // A session cookie is not a login cookie either.
    const session = await new WebClient(palisade.url).post('/api/auth/login', {
      username: 'bob',
      password: PASSWORD,
    });
    assert.deepEqual(session.body, { totp_required: true });
    const swapped = new WebClient(palisade.url);
    swapped.cookies.set('palisade_session', setCookieOf(session, 'palisade_login')?.value ?? '');
    assertApiError(await swapped.get('/api/me'), 401, 'not_signed_in');
    const sessions = (s: Record<string, unknown[]>) => [s.session, s.user, s.recovery_code];
    assert.deepEqual(sessions(await snapshot(palisade)), sessions(before));
    // The code is still good for a real login.
    const real = await passwordStep(palisade, 'bob');
    assert.equal((await real.post('/api/auth/totp/verify', { code })).status, 200);
  });

  test('an expired challenge is refused, even with the right code', async () => {
    await addUser(palisade, 'carol');
    const { secret } = await enrollTotp(await signIn(palisade, 'carol'));
    const browser = await passwordStep(palisade, 'carol');
    const token = browser.cookies.get('palisade_login') as string;
    await withStore(palisade, (store) =>
      store.sqlite
        .prepare('update login_challenge set expires_at = ? where token_hash = ?')
        .run(new Date(Date.now() - 1000).toISOString(), sha256Hex(token)),
    );
    const refused = await browser.post('/api/auth/totp/verify', {
      code: totpCode(secret, Date.now() + STEP_MS),
    });
    assertApiError(refused, 401, 'login_expired');
    assert.equal(setCookieOf(refused, 'palisade_session'), undefined);
  });

  test('require_totp: a user without TOTP may only enroll', async () => {
    await addUser(palisade, 'dave');
    const browser = await signIn(palisade, 'dave');
    await withStore(palisade, (store) =>
      store.sqlite
        .prepare(
          `insert into instance_setting (key, value, updated_at) values ('require_totp', 'true', ?)`,
        )
        .run(new Date().toISOString()),
    );
    try {
      const me = await browser.get('/api/me');
      assert.equal(me.status, 200);
      assert.equal(
        (me.body as { totp_enrollment_required: boolean }).totp_enrollment_required,
        true,
      );
      assert.equal((await browser.get('/api/auth/state')).status, 200);
      const before = await snapshot(palisade);
      assertApiError(await browser.get('/api/me/sessions'), 403, 'totp_enrollment_required');
      assertApiError(
        await browser.post('/api/me/password', {
          current_password: PASSWORD,
          new_password: 'another good passphrase',
        }),
        403,
        'totp_enrollment_required',
      );
      assert.deepEqual(await snapshot(palisade), before);

      const { secret } = await enrollTotp(browser);
      assert.equal((await browser.get('/api/me/sessions')).status, 200);
      const me2 = await browser.get('/api/me');
      assert.equal(
        (me2.body as { totp_enrollment_required: boolean }).totp_enrollment_required,
        false,
      );
      // While it is required, it cannot be turned off.
      assertApiError(
        await browser.post('/api/auth/totp/disable', { password: PASSWORD }),
        409,
        'totp_required',
      );
      assert.ok((await userRow(palisade, 'dave')).totp_enabled_at);
      assert.ok(secret);
    } finally {
      await withStore(palisade, (store) =>
        store.sqlite.prepare(`delete from instance_setting where key = 'require_totp'`).run(),
      );
    }
  });

  test('turning TOTP off needs the password', async () => {
    await addUser(palisade, 'erin');
    const browser = await signIn(palisade, 'erin');
    await enrollTotp(browser);
    const before = await snapshot(palisade);
    assertApiError(
      await browser.post('/api/auth/totp/disable', { password: 'not the password' }),
      403,
      'wrong_password',
    );
    assert.deepEqual(await snapshot(palisade), before);
    const off = await browser.post('/api/auth/totp/disable', { password: PASSWORD });
    assert.equal(off.status, 204, off.text);
    const row = await userRow(palisade, 'erin');
    assert.equal(row.totp_enabled_at, null);
    assert.equal(row.totp_secret_enc, null);
    await signIn(palisade, 'erin'); // no TOTP step any more
  });
});

describe('TOTP: wrong codes', () => {
  test('after 5 wrong codes the challenge is dead, even for the right code', async () => {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
    try {
      await addUser(palisade, 'alice');
      const { secret } = await enrollTotp(await signIn(palisade, 'alice'));
      const browser = await passwordStep(palisade, 'alice');
      const wrong = wrongCode(secret);
      for (let i = 0; i < 5; i += 1) {
        assertApiError(
          await browser.post('/api/auth/totp/verify', { code: wrong }),
          401,
          'invalid_code',
        );
      }
      const before = await snapshot(palisade);
      const dead = await browser.post('/api/auth/totp/verify', {
        code: totpCode(secret, Date.now() + STEP_MS),
      });
      assertApiError(dead, 401, 'login_expired');
      assert.equal(setCookieOf(dead, 'palisade_session'), undefined);
      assert.deepEqual(await snapshot(palisade), before);
      // The wrong codes also count against the account: the next password step is throttled.
      const throttled = await new WebClient(palisade.url).post('/api/auth/login', {
        username: 'alice',
        password: PASSWORD,
      });
      assertApiError(throttled, 429, 'too_many_attempts');
    } finally {
      await palisade.close();
    }
  });
});

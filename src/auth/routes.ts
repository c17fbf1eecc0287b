import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { recordRequest, type AuditLog } from '../audit/index.js';
import {
  burnPasswordCheck,
  constantTimeEqual,
  deriveKey,
  hashPassword,
  needsRehash,
  secretBox,
  verifyPassword,
  type ScryptParams,
} from '../crypto/index.js';
import { HttpError } from '../server/errors.js';
import { parseWith } from '../server/validate.js';
import { isoNow, type Store, type UserRow } from '../store/index.js';
import { clearCookie, readCookie, setCookie, type CookiePolicy } from './cookies.js';
import { clientKey, type LoginThrottle } from './login-throttle.js';
import { hashRecoveryCode, looksLikeRecoveryCode, newRecoveryCodes } from './recovery-codes.js';
import { isLocalRequest, requireUser } from './request-user.js';
import {
  CHALLENGE_TTL_MS,
  createChallenge,
  createSession,
  deleteChallenge,
  failChallenge,
  findChallenge,
  listSessions,
  revokeSession,
  revokeSessionByToken,
} from './sessions.js';
import { acceptTotp, newTotpSecret, totpQrSvg, totpUrl } from './totp.js';
import {
  AccountError,
  createFirstAdmin,
  findUser,
  findUserByName,
  isSetupClosed,
  resetUserTotp,
  revokeAllSessions,
  setUserPassword,
  upgradePasswordHash,
} from './users.js';

export interface AuthRoutesOptions {
  store: Store;
  audit: AuditLog;
  masterKey: Buffer;
  cookies: CookiePolicy;
  throttle: LoginThrottle;
  scrypt: ScryptParams;
  sessionTtlMs: number;
  /** PALISADE_SINGLE_SESSION: a login ends the user's other sessions. */
  singleSession: boolean;
  /** Setup must present this token (non-loopback bind); undefined: no token is asked. */
  setupToken: string | undefined;
  /** False in single-user mode: there is no login, the local user is always signed in. */
  authEnabled: boolean;
  isTotpRequired: () => boolean;
}

const Username = z.string().min(1).max(64);
// Longer than any allowed password (256 bytes), so an over-long one is a wrong password, not a 400.
const Password = z.string().min(1).max(1024);

const SetupBody = z
  .object({ username: Username, password: Password, setup_token: z.string().max(256).optional() })
  .strict();
const LoginBody = z.object({ username: Username, password: Password }).strict();
const CodeBody = z.object({ code: z.string().min(1).max(64) }).strict();
const PasswordBody = z.object({ password: Password }).strict();
const EmptyBody = z.object({}).strict();
const ChangePasswordBody = z
  .object({ current_password: Password, new_password: Password })
  .strict();
const SessionParams = z.object({ id: z.string().max(64) });

/**
 * The throttle's account for setup-token guesses: one per client address (`#` is never in a
 * username), so guesses from one address cannot block setup for everyone.
 */
const setupAccount = (request: FastifyRequest) => `#setup:${request.ip}`;
const BAD_CREDENTIALS = new HttpError(401, 'invalid_credentials', 'wrong username or password');

/** The user as the web app sees it (src/web/api.ts `Me`). */
export function describeMe(user: UserRow, totpRequired: boolean) {
  return {
    id: user.id,
    username: user.username,
    role: user.role,
    totp_enabled: user.totp_enabled_at !== null,
    totp_enrollment_required: totpRequired && user.totp_enabled_at === null,
    created_at: user.created_at,
    last_login_at: user.last_login_at,
  };
}

/**
 * Sign-in and the signed-in user's own account, under `/api`: setup of the first admin,
 * password login with an optional TOTP step, logout, TOTP enrollment, password change and
 * the user's sessions.
 *
 * @example
 * api.register(authRoutes, { store, audit, masterKey, cookies, throttle, scrypt, ... });
 */
export const authRoutes: FastifyPluginAsync<AuthRoutesOptions> = async (app, options) => {
  const { store, audit } = options;
  const totpBox = secretBox(deriveKey(options.masterKey, 'totp'));
  const actor = (user: Pick<UserRow, 'username'>) => `user:${user.username}`;
  const record = (
    request: FastifyRequest,
    action: string,
    who: string,
    details: Record<string, string | number | boolean> = {},
    target?: string,
  ) =>
    recordRequest(audit, request, { action, actor: who, details, ...(target ? { target } : {}) });

  const setupClosed = () => isSetupClosed(store);

  /** A new session (a new token every time: a token planted before login is never used). */
  function signIn(request: FastifyRequest, reply: FastifyReply, user: UserRow) {
    const presented = readCookie(request, options.cookies, 'session');
    if (presented !== undefined) revokeSessionByToken(store, presented);
    const { token, session } = createSession(store, {
      userId: user.id,
      userAgent: String(request.headers['user-agent'] ?? ''),
      ip: request.ip,
      ttlMs: options.sessionTtlMs,
    });
    if (options.singleSession) revokeAllSessions(store, user.id, session.id);
    const now = isoNow();
    store.sqlite.prepare('update user set last_login_at = ? where id = ?').run(now, user.id);
    user.last_login_at = now;
    setCookie(request, reply, options.cookies, 'session', token, options.sessionTtlMs);
    record(request, 'auth.login', actor(user), { session_id: session.id });
    return { user: describeMe(user, options.isTotpRequired()) };
  }

  function throttled(request: FastifyRequest, username: string) {
    const wait = options.throttle.retryAfter(request.ip, username);
    if (wait > 0) {
      // Logged, not audited: refusals are unbounded, and the audit log is append-only.
      request.log.warn({ ip: request.ip }, 'sign-in throttled');
      throw new HttpError(
        429,
        'too_many_attempts',
        `too many failed sign-ins; try again in ${wait} s`,
        { headers: { 'retry-after': String(wait) } },
      );
    }
  }

  /**
   * Counts and audits a refused sign-in. A name that is no account is not written down: it may
   * be a password typed in the wrong field, and the audit log keeps everything for good.
   */
  function failed(
    request: FastifyRequest,
    username: string,
    reason: string,
    account: UserRow | undefined,
  ): never {
    options.throttle.recordFailure(request.ip, username);
    record(request, 'auth.login_failed', account ? actor(account) : 'anonymous', { reason });
    throw BAD_CREDENTIALS;
  }

  /** The last password check queued per client address and per account. */
  const checks = new Map<string, Promise<unknown>>();

  /**
   * Runs a password check (`check` calls `throttled` first and counts a wrong password) after
   * the checks already running for the same client address or account. A failure is counted
   * only once its slow hash is done, so attempts sent at once would otherwise all pass the
   * throttle before the first was counted.
   */
  async function oneCheckAtATime<T>(
    request: FastifyRequest,
    username: string,
    check: () => Promise<T>,
  ): Promise<T> {
    const keys = [`ip:${clientKey(request.ip)}`, `user:${username.normalize('NFC').toLowerCase()}`];
    const run = Promise.allSettled(keys.map((key) => checks.get(key))).then(check);
    const done = run.then(
      () => undefined,
      () => undefined,
    );
    for (const key of keys) checks.set(key, done);
    try {
      return await run;
    } finally {
      for (const key of keys) if (checks.get(key) === done) checks.delete(key);
    }
  }

  /** The signed-in user's password, asked again before a sensitive change; throttled like a login. */
  async function checkOwnPassword(request: FastifyRequest, user: UserRow, password: string) {
    await oneCheckAtATime(request, user.username, async () => {
      throttled(request, user.username);
      if (!(await verifyPassword(password, user.password_hash))) {
        options.throttle.recordFailure(request.ip, user.username);
        record(request, 'auth.password_check_failed', actor(user));
        throw new HttpError(403, 'wrong_password', 'the password is wrong');
      }
    });
  }

  app.get('/auth/state', async (request) => ({
    auth: options.authEnabled,
    setup_required: options.authEnabled && !setupClosed(),
    setup_token_required: options.setupToken !== undefined,
    user: request.user ? describeMeById(request.user.id) : null,
  }));

  function describeMeById(id: string) {
    const user = findUser(store, id);
    if (!user) throw new HttpError(401, 'not_signed_in', 'sign in first: POST /api/auth/login');
    return describeMe(user, options.isTotpRequired());
  }

  app.post('/auth/setup', async (request, reply) => {
    const body = parseWith(SetupBody, request.body, 'body');
    if (!options.authEnabled || setupClosed()) {
      throw new HttpError(409, 'setup_closed', 'setup is closed: an admin already exists; sign in');
    }
    if (options.setupToken === undefined && !isLocalRequest(request)) {
      throw new HttpError(
        403,
        'setup_local_only',
        'the first admin can be set up without a token only from this machine: open the app on it, set PALISADE_SETUP_TOKEN, or run palisade users create NAME --admin',
      );
    }
    if (options.setupToken !== undefined) {
      // Wrong tokens count like failed sign-ins of one pseudo-account no username can be.
      throttled(request, setupAccount(request));
      if (
        body.setup_token === undefined ||
        !constantTimeEqual(body.setup_token, options.setupToken)
      ) {
        options.throttle.recordFailure(request.ip, setupAccount(request));
        record(request, 'auth.setup_refused', 'anonymous', { reason: 'setup token' });
        throw new HttpError(
          403,
          'invalid_setup_token',
          'the setup token is missing or wrong: it was printed when Palisade started (or is PALISADE_SETUP_TOKEN)',
        );
      }
    }
    let admin: UserRow | undefined;
    try {
      admin = await createFirstAdmin(store, body, options.scrypt);
    } catch (error) {
      if (error instanceof AccountError) throw new HttpError(400, error.code, error.message);
      throw error;
    }
    if (!admin)
      throw new HttpError(409, 'setup_closed', 'setup is closed: an admin already exists; sign in');
    record(
      request,
      'auth.setup',
      actor(admin),
      { username: admin.username, role: 'admin' },
      admin.id,
    );
    return reply.code(201).send(signIn(request, reply, admin));
  });

  app.post('/auth/login', async (request, reply) => {
    const body = parseWith(LoginBody, request.body, 'body');
    const user = await oneCheckAtATime(request, body.username, async () => {
      throttled(request, body.username);
      const found = findUserByName(store, body.username);
      if (!found || found.disabled_at !== null) {
        await burnPasswordCheck(body.password, options.scrypt);
        failed(request, body.username, found ? 'disabled' : 'unknown user', found);
      }
      if (!(await verifyPassword(body.password, found.password_hash))) {
        // A hash weaker than the server's is quicker to check: make up the difference, so the
        // time taken does not tell such accounts from unknown names.
        if (needsRehash(found.password_hash, options.scrypt)) {
          await burnPasswordCheck(body.password, options.scrypt);
        }
        failed(request, body.username, 'wrong password', found);
      }
      return found;
    });
    if (needsRehash(user.password_hash, options.scrypt)) {
      upgradePasswordHash(store, user.id, await hashPassword(body.password, options.scrypt));
    }
    if (user.totp_enabled_at !== null) {
      const token = createChallenge(store, user.id, request.ip);
      setCookie(request, reply, options.cookies, 'login', token, CHALLENGE_TTL_MS);
      return { totp_required: true };
    }
    return signIn(request, reply, user);
  });

  app.post('/auth/totp/verify', async (request, reply) => {
    const body = parseWith(CodeBody, request.body, 'body');
    const token = readCookie(request, options.cookies, 'login');
    const userId = token === undefined ? undefined : findChallenge(store, token);
    const user = userId === undefined ? undefined : findUser(store, userId);
    if (
      token === undefined ||
      !user ||
      user.disabled_at !== null ||
      user.totp_secret_enc === null
    ) {
      throw new HttpError(
        401,
        'login_expired',
        'the sign-in step expired or was not started: sign in with your password again',
      );
    }
    throttled(request, user.username);
    const accepted = looksLikeRecoveryCode(body.code)
      ? useRecoveryCode(user.id, body.code)
      : useTotpCode(user, body.code);
    if (!accepted) {
      failChallenge(store, token);
      options.throttle.recordFailure(request.ip, user.username);
      record(request, 'auth.login_failed', actor(user), { reason: 'wrong code' });
      throw new HttpError(401, 'invalid_code', 'that code is not valid (or was already used)');
    }
    deleteChallenge(store, token);
    clearCookie(request, reply, options.cookies, 'login');
    return signIn(request, reply, user);
  });

  /** Accepts a TOTP code once: the step is moved forward in the same statement that checks it. */
  function useTotpCode(user: UserRow, code: string): boolean {
    const secret = totpBox.open(user.totp_secret_enc as string, `totp:${user.id}`);
    const step = acceptTotp(secret, code, user.totp_last_step);
    if (step === null) return false;
    return (
      store.sqlite
        .prepare(
          'update user set totp_last_step = ? where id = ? and (totp_last_step is null or totp_last_step < ?)',
        )
        .run(step, user.id, step).changes === 1
    );
  }

  function useRecoveryCode(userId: string, code: string): boolean {
    const used = store.sqlite
      .prepare(
        `update recovery_code set used_at = ? where seq = (
           select seq from recovery_code where user_id = ? and code_hash = ? and used_at is null limit 1)`,
      )
      .run(isoNow(), userId, hashRecoveryCode(code)).changes;
    return used === 1;
  }

  app.post('/auth/logout', async (request, reply) => {
    parseWith(EmptyBody, request.body ?? {}, 'body');
    const token = readCookie(request, options.cookies, 'session');
    if (token !== undefined) revokeSessionByToken(store, token);
    clearCookie(request, reply, options.cookies, 'session');
    if (request.user) record(request, 'auth.logout', actor(request.user));
    return reply.code(204).send();
  });

  app.post('/auth/totp/enroll', async (request) => {
    const me = requireUser(request);
    const body = parseWith(PasswordBody, request.body, 'body');
    const user = findUser(store, me.id) as UserRow;
    await checkOwnPassword(request, user, body.password);
    if (user.totp_enabled_at !== null) {
      throw new HttpError(
        409,
        'totp_already_enabled',
        'two-factor sign-in is already on; turn it off first',
      );
    }
    const secret = newTotpSecret();
    store.sqlite
      .prepare('update user set totp_secret_enc = ?, totp_last_step = null where id = ?')
      .run(totpBox.seal(secret, `totp:${user.id}`), user.id);
    const url = totpUrl(secret, user.username);
    return { secret, otpauth_url: url, qr_svg: await totpQrSvg(url) };
  });

  app.post('/auth/totp/confirm', async (request) => {
    const me = requireUser(request);
    const body = parseWith(CodeBody, request.body, 'body');
    const user = findUser(store, me.id) as UserRow;
    if (user.totp_enabled_at !== null) {
      throw new HttpError(409, 'totp_already_enabled', 'two-factor sign-in is already on');
    }
    if (user.totp_secret_enc === null) {
      throw new HttpError(409, 'totp_not_enrolling', 'start with POST /api/auth/totp/enroll');
    }
    if (!useTotpCode(user, body.code)) {
      throw new HttpError(
        400,
        'invalid_code',
        'that code is not valid: check the time on your phone and try the next one',
      );
    }
    const codes = newRecoveryCodes();
    store.sqlite.transaction(() => {
      store.sqlite
        .prepare('update user set totp_enabled_at = ? where id = ?')
        .run(isoNow(), user.id);
      store.sqlite.prepare('delete from recovery_code where user_id = ?').run(user.id);
      const insert = store.sqlite.prepare(
        'insert into recovery_code (user_id, code_hash) values (?, ?)',
      );
      for (const code of codes) insert.run(user.id, hashRecoveryCode(code));
    })();
    // Sessions opened before the second factor existed end, as after a password change.
    revokeAllSessions(store, user.id, request.sessionId ?? undefined);
    record(request, 'auth.totp_enabled', actor(user), {}, user.id);
    return { recovery_codes: codes };
  });

  app.post('/auth/totp/disable', async (request, reply) => {
    const me = requireUser(request);
    const body = parseWith(PasswordBody, request.body, 'body');
    const user = findUser(store, me.id) as UserRow;
    await checkOwnPassword(request, user, body.password);
    if (options.isTotpRequired()) {
      throw new HttpError(
        409,
        'totp_required',
        'an admin requires two-factor sign-in for everyone',
      );
    }
    resetUserTotp(store, user.id);
    record(request, 'auth.totp_disabled', actor(user), {}, user.id);
    return reply.code(204).send();
  });

  app.get('/me', async (request) => describeMeById(requireUser(request).id));

  app.post('/me/password', async (request, reply) => {
    const me = requireUser(request);
    const body = parseWith(ChangePasswordBody, request.body, 'body');
    const user = findUser(store, me.id) as UserRow;
    await checkOwnPassword(request, user, body.current_password);
    try {
      await setUserPassword(
        store,
        user,
        body.new_password,
        options.scrypt,
        request.sessionId ?? undefined,
      );
    } catch (error) {
      if (error instanceof AccountError) throw new HttpError(400, error.code, error.message);
      throw error;
    }
    record(request, 'auth.password_changed', actor(user), {}, user.id);
    return reply.code(204).send();
  });

  app.get('/me/sessions', async (request) => {
    const me = requireUser(request);
    return {
      sessions: listSessions(store, me.id).map((s) => ({
        id: s.id,
        user_agent: s.user_agent,
        ip: s.ip,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: s.expires_at,
        current: s.id === request.sessionId,
      })),
    };
  });

  app.delete('/me/sessions/:id', async (request, reply) => {
    const me = requireUser(request);
    const { id } = parseWith(SessionParams, request.params, 'path');
    if (!revokeSession(store, me.id, id)) {
      throw new HttpError(404, 'session_not_found', 'you have no live session with this id');
    }
    record(request, 'auth.session_revoked', actor(me), { session_id: id });
    return reply.code(204).send();
  });
};

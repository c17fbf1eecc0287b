import { randomUUID } from 'node:crypto';
import { randomToken, sha256Hex } from '../crypto/index.js';
import { isoNow, toIso, type SessionRow, type Store, type UserRow } from '../store/index.js';

/** A challenge (the step between password and TOTP code) lasts this long. */
export const CHALLENGE_TTL_MS = 5 * 60_000;
/** Wrong codes a challenge survives; then the password step must be done again. */
export const CHALLENGE_MAX_ATTEMPTS = 5;
/** `last_seen_at` is written at most this often per session. */
const SEEN_RESOLUTION_MS = 60_000;

export interface NewSession {
  userId: string;
  userAgent: string;
  ip: string;
  ttlMs: number;
  now?: number;
}

export interface ResolvedSession {
  user: UserRow;
  session: SessionRow;
  /** The lifetime was renewed: the cookie must be sent again with the new expiry. */
  renewed: boolean;
}

/**
 * Web sessions: an opaque 32-byte random token in the cookie, only its SHA-256 in the store.
 *
 * @example
 * const { token } = createSession(store, { userId, userAgent, ip, ttlMs: 30 * 86_400_000 });
 * resolveSession(store, token, ttlMs)?.user; // the signed-in user
 */
export function createSession(
  store: Store,
  input: NewSession,
): { token: string; session: SessionRow } {
  const token = randomToken(32);
  const now = input.now ?? Date.now();
  const session: SessionRow = {
    id: randomUUID(),
    token_hash: sha256Hex(token),
    user_id: input.userId,
    created_at: toIso(new Date(now)),
    expires_at: toIso(new Date(now + input.ttlMs)),
    last_seen_at: toIso(new Date(now)),
    user_agent: input.userAgent.slice(0, 300),
    ip: input.ip,
    revoked_at: null,
  };
  store.sqlite
    .prepare(
      `insert into session (id, token_hash, user_id, created_at, expires_at, last_seen_at, user_agent, ip, revoked_at)
       values (@id, @token_hash, @user_id, @created_at, @expires_at, @last_seen_at, @user_agent, @ip, @revoked_at)`,
    )
    .run(session);
  return { token, session };
}

/**
 * The live session a token names, with its user: refused when unknown, revoked, expired or
 * the user is disabled. Past half its lifetime, a session is renewed for another full one.
 */
export function resolveSession(
  store: Store,
  token: string,
  ttlMs: number,
  now = Date.now(),
): ResolvedSession | undefined {
  if (token.length === 0 || token.length > 200) return undefined;
  const session = store.sqlite
    .prepare<[string], SessionRow>('select * from session where token_hash = ?')
    .get(sha256Hex(token));
  if (!session || session.revoked_at !== null) return undefined;
  const expires = Date.parse(session.expires_at);
  if (!(expires > now)) return undefined;
  const user = store.sqlite
    .prepare<[string], UserRow>('select * from user where id = ?')
    .get(session.user_id);
  if (!user || user.disabled_at !== null) return undefined;

  const renewed = expires - now < ttlMs / 2;
  const seenLongAgo = now - Date.parse(session.last_seen_at) >= SEEN_RESOLUTION_MS;
  if (renewed || seenLongAgo) {
    session.last_seen_at = toIso(new Date(now));
    if (renewed) session.expires_at = toIso(new Date(now + ttlMs));
    store.sqlite
      .prepare('update session set last_seen_at = ?, expires_at = ? where id = ?')
      .run(session.last_seen_at, session.expires_at, session.id);
  }
  return { user, session, renewed };
}

/** Ends a session by its token (logout, or the old session presented at a new login). */
export function revokeSessionByToken(store: Store, token: string): void {
  store.sqlite
    .prepare('update session set revoked_at = ? where token_hash = ? and revoked_at is null')
    .run(isoNow(), sha256Hex(token));
}

/** Ends one of a user's sessions by its public id; false when the user has no such session. */
export function revokeSession(store: Store, userId: string, sessionId: string): boolean {
  return (
    store.sqlite
      .prepare(
        'update session set revoked_at = ? where id = ? and user_id = ? and revoked_at is null',
      )
      .run(isoNow(), sessionId, userId).changes === 1
  );
}

/** A user's live sessions, most recently seen first. */
export function listSessions(store: Store, userId: string, now = Date.now()): SessionRow[] {
  return store.sqlite
    .prepare<[string, string], SessionRow>(
      `select * from session where user_id = ? and revoked_at is null and expires_at > ?
       order by last_seen_at desc`,
    )
    .all(userId, toIso(new Date(now)));
}

/** Deletes sessions and challenges that can no longer be used. */
export function pruneSessions(store: Store, now = Date.now()): void {
  const cutoff = toIso(new Date(now));
  store.sqlite
    .prepare('delete from session where expires_at <= ? or revoked_at is not null')
    .run(cutoff);
  store.sqlite.prepare('delete from login_challenge where expires_at <= ?').run(cutoff);
}

/** Starts the TOTP step of a login: a short-lived token bound to the user who passed the password step. */
export function createChallenge(
  store: Store,
  userId: string,
  ip: string,
  now = Date.now(),
): string {
  const token = randomToken(32);
  store.sqlite
    .prepare(
      'insert into login_challenge (token_hash, user_id, expires_at, ip) values (?, ?, ?, ?)',
    )
    .run(sha256Hex(token), userId, toIso(new Date(now + CHALLENGE_TTL_MS)), ip);
  return token;
}

/** The user a live challenge token belongs to, or undefined when unknown, expired or used up. */
export function findChallenge(store: Store, token: string, now = Date.now()): string | undefined {
  if (token.length === 0 || token.length > 200) return undefined;
  const row = store.sqlite
    .prepare<[string], { user_id: string; expires_at: string; attempts: number }>(
      'select user_id, expires_at, attempts from login_challenge where token_hash = ?',
    )
    .get(sha256Hex(token));
  if (!row || !(Date.parse(row.expires_at) > now) || row.attempts >= CHALLENGE_MAX_ATTEMPTS) {
    return undefined;
  }
  return row.user_id;
}

/** Counts a wrong code against a challenge; the last allowed one deletes it. */
export function failChallenge(store: Store, token: string): void {
  const hash = sha256Hex(token);
  store.sqlite
    .prepare('update login_challenge set attempts = attempts + 1 where token_hash = ?')
    .run(hash);
  store.sqlite
    .prepare('delete from login_challenge where token_hash = ? and attempts >= ?')
    .run(hash, CHALLENGE_MAX_ATTEMPTS);
}

export function deleteChallenge(store: Store, token: string): void {
  store.sqlite.prepare('delete from login_challenge where token_hash = ?').run(sha256Hex(token));
}

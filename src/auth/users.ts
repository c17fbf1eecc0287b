import { randomUUID } from 'node:crypto';
import { hashPassword, passwordProblem, type ScryptParams } from '../crypto/index.js';
import { isoNow, type Store, type UserRole, type UserRow } from '../store/index.js';

export const USERNAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** A refused account change: `code` is the error code the API answers with. */
export class AccountError extends Error {
  override name = 'AccountError';
  constructor(
    readonly code: 'invalid_username' | 'weak_password' | 'username_taken' | 'user_not_found',
    message: string,
  ) {
    super(message);
  }
}

export interface NewUser {
  username: string;
  password: string;
  role: UserRole;
}

/**
 * Creates a user after checking the name and the password policy. Inside a transaction so a
 * caller can add its own condition (see `createFirstAdmin`).
 *
 * @example
 * await createUser(store, { username: 'alice', password, role: 'user' }, config.scrypt);
 */
export async function createUser(
  store: Store,
  input: NewUser,
  params: ScryptParams,
): Promise<UserRow> {
  const row = await prepareUser(input, params);
  insertUser(store, row);
  return row;
}

/** Validates and hashes a new user's row without storing it. */
export async function prepareUser(input: NewUser, params: ScryptParams): Promise<UserRow> {
  if (!USERNAME_PATTERN.test(input.username)) {
    throw new AccountError(
      'invalid_username',
      'a username is 1 to 32 letters, digits, dots, dashes or underscores, starting with a letter or digit',
    );
  }
  const problem = passwordProblem(input.password, input.username);
  if (problem !== undefined) throw new AccountError('weak_password', problem);
  return newUserRow(input.username, input.role, await hashPassword(input.password, params));
}

/** A new account's row: a fresh id, no TOTP, enabled, never signed in. */
function newUserRow(username: string, role: UserRole, passwordHash: string): UserRow {
  return {
    id: randomUUID(),
    username,
    role,
    password_hash: passwordHash,
    totp_secret_enc: null,
    totp_enabled_at: null,
    totp_last_step: null,
    disabled_at: null,
    created_at: isoNow(),
    last_login_at: null,
  };
}

/** Stores a prepared user; a taken name (whatever its case) is refused. */
export function insertUser(store: Store, row: UserRow): void {
  try {
    store.sqlite
      .prepare(
        `insert into user (id, username, role, password_hash, totp_secret_enc, totp_enabled_at,
           totp_last_step, disabled_at, created_at, last_login_at)
         values (@id, @username, @role, @password_hash, @totp_secret_enc, @totp_enabled_at,
           @totp_last_step, @disabled_at, @created_at, @last_login_at)`,
      )
      .run(row);
  } catch (error) {
    if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
      throw new AccountError('username_taken', `the username "${row.username}" is taken`);
    }
    throw error;
  }
}

/**
 * Creates the first admin only if no admin exists, in one transaction: of two setups racing,
 * exactly one creates an admin and the other gets false.
 */
export async function createFirstAdmin(
  store: Store,
  input: Omit<NewUser, 'role'>,
  params: ScryptParams,
): Promise<UserRow | undefined> {
  const row = await prepareUser({ ...input, role: 'admin' }, params);
  const created = store.sqlite.transaction(() => {
    if (isSetupClosed(store)) return false;
    insertUser(store, row);
    markSetupClosed(store);
    return true;
  })();
  return created ? row : undefined;
}

/** Accounts other than `userId` (single-user mode ends when there is any). */
export function countOtherUsers(store: Store, userId: string): number {
  return (
    store.sqlite
      .prepare<[string], { n: number }>('select count(*) as n from user where id != ?')
      .get(userId)?.n ?? 0
  );
}

export function findUser(store: Store, id: string): UserRow | undefined {
  return store.sqlite.prepare<[string], UserRow>('select * from user where id = ?').get(id);
}

/** Looks a user up by name, whatever its case. */
export function findUserByName(store: Store, username: string): UserRow | undefined {
  return store.sqlite
    .prepare<[string], UserRow>('select * from user where username = ? collate nocase')
    .get(username);
}

export function listUsers(store: Store): UserRow[] {
  return store.sqlite.prepare<[], UserRow>('select * from user order by created_at, id').all();
}

/** Finds a user by id or name, or throws `user_not_found`. */
export function requireUserRow(store: Store, idOrName: string): UserRow {
  const user = findUser(store, idOrName) ?? findUserByName(store, idOrName);
  if (!user) throw new AccountError('user_not_found', `no user "${idOrName}"`);
  return user;
}

/** Ends every session of a user (and any half-done TOTP login). */
export function revokeAllSessions(store: Store, userId: string, exceptSessionId?: string): number {
  const now = isoNow();
  store.sqlite.prepare('delete from login_challenge where user_id = ?').run(userId);
  return store.sqlite
    .prepare(
      `update session set revoked_at = ? where user_id = ? and revoked_at is null and id != ?`,
    )
    .run(now, userId, exceptSessionId ?? '').changes;
}

/** Disables or re-enables a user; disabling ends all of the user's sessions. */
/**
 * Disables or re-enables a user. Disabling ends all of the user's sessions and revokes the API
 * keys they own (a key's owner is its user's name), so no access outlives the account; keys
 * stay revoked when the user is enabled again. Returns how many keys were revoked.
 */
export function setUserDisabled(store: Store, userId: string, disabled: boolean): number {
  return store.sqlite.transaction(() => {
    const now = isoNow();
    store.sqlite
      .prepare('update user set disabled_at = ? where id = ?')
      .run(disabled ? now : null, userId);
    if (!disabled) return 0;
    revokeAllSessions(store, userId);
    return store.sqlite
      .prepare(
        `update api_key set revoked_at = ? where revoked_at is null
           and owner = (select username from user where id = ?) collate nocase`,
      )
      .run(now, userId).changes;
  })();
}

export function setUserRole(store: Store, userId: string, role: UserRole): void {
  store.sqlite.prepare('update user set role = ? where id = ?').run(role, userId);
}

/**
 * Sets a new password (after the policy check) and ends the user's sessions but
 * `keepSessionId`, so the person who changed it stays signed in on this device.
 */
export async function setUserPassword(
  store: Store,
  user: Pick<UserRow, 'id' | 'username'>,
  password: string,
  params: ScryptParams,
  keepSessionId?: string,
): Promise<void> {
  const problem = passwordProblem(password, user.username);
  if (problem !== undefined) throw new AccountError('weak_password', problem);
  const hash = await hashPassword(password, params);
  store.sqlite.transaction(() => {
    store.sqlite.prepare('update user set password_hash = ? where id = ?').run(hash, user.id);
    revokeAllSessions(store, user.id, keepSessionId);
  })();
}

/** Replaces a stored hash made with weaker parameters (at login, with the right password). */
export function upgradePasswordHash(store: Store, userId: string, hash: string): void {
  store.sqlite.prepare('update user set password_hash = ? where id = ?').run(hash, userId);
}

/**
 * Removes a user's TOTP enrollment and recovery codes: the user turning it off, or an admin's
 * reset for a lost phone, which also ends the user's sessions (`endSessions`): the phone may
 * have been stolen with a signed-in browser.
 */
export function resetUserTotp(
  store: Store,
  userId: string,
  options: { endSessions?: boolean } = {},
): void {
  store.sqlite.transaction(() => {
    if (options.endSessions === true) revokeAllSessions(store, userId);
    store.sqlite
      .prepare(
        'update user set totp_secret_enc = null, totp_enabled_at = null, totp_last_step = null where id = ?',
      )
      .run(userId);
    store.sqlite.prepare('delete from recovery_code where user_id = ?').run(userId);
    store.sqlite.prepare('delete from login_challenge where user_id = ?').run(userId);
  })();
}

/** The JSON shape of a user for admins (no hashes, no secrets). */
export function describeUser(user: UserRow) {
  return {
    id: user.id,
    username: user.username,
    role: user.role,
    totp_enabled: user.totp_enabled_at !== null,
    disabled: user.disabled_at !== null,
    created_at: user.created_at,
    last_login_at: user.last_login_at,
  };
}

const SETUP_DONE = 'setup_done';

/**
 * Setup closes for good once an admin was created (even if admins were removed later). The
 * single-user mode's `local` admin, who has no password, does not count: it cannot sign in.
 */
export function isSetupClosed(store: Store): boolean {
  return (
    store.sqlite.prepare('select 1 from instance_setting where key = ?').get(SETUP_DONE) !==
      undefined ||
    store.sqlite
      .prepare(`select 1 from user where role = 'admin' and password_hash != ?`)
      .get(NO_PASSWORD) !== undefined
  );
}

export function markSetupClosed(store: Store): void {
  store.sqlite
    .prepare('insert or ignore into instance_setting (key, value, updated_at) values (?, ?, ?)')
    .run(SETUP_DONE, 'true', isoNow());
}

/** The one user of single-user mode (PALISADE_AUTH=false). */
export const LOCAL_USERNAME = 'local';
/** A password hash no password matches: the local user cannot sign in, only be the default. */
const NO_PASSWORD = '!';

/**
 * The single-user mode's user, created on first use. Refused (undefined) once the store has
 * any other user: from then on the instance is multi-user and needs sign-in.
 */
export function ensureLocalUser(store: Store): UserRow | undefined {
  const others = store.sqlite
    .prepare<[string], { n: number }>(
      'select count(*) as n from user where username != ? collate nocase',
    )
    .get(LOCAL_USERNAME);
  if ((others?.n ?? 0) > 0) return undefined;
  const existing = findUserByName(store, LOCAL_USERNAME);
  if (existing) return existing;
  const row = newUserRow(LOCAL_USERNAME, 'admin', NO_PASSWORD);
  insertUser(store, row);
  return row;
}

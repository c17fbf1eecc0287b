import type { Generated, Selectable } from 'kysely';
import type { IsoDate, JsonText } from './types.js';

export type UserRole = 'admin' | 'user';

export interface UserTable {
  /** UUIDv4. */
  id: string;
  /** Unique regardless of case. */
  username: string;
  role: UserRole;
  /** `scrypt$n=N$r=R$p=P$salt$hash` (see src/crypto/password.ts). */
  password_hash: string;
  /** The TOTP secret sealed with the `totp` subkey, once enrollment has begun. */
  totp_secret_enc: string | null;
  /** Set when enrollment was confirmed with a valid code; TOTP is asked at login from then on. */
  totp_enabled_at: IsoDate | null;
  /** The last TOTP time step accepted, so a code is never accepted twice. */
  totp_last_step: number | null;
  disabled_at: IsoDate | null;
  created_at: IsoDate;
  last_login_at: IsoDate | null;
}

export interface SessionTable {
  /** A public id for listings and revocation; not the secret. */
  id: string;
  /** SHA-256 (hex) of the cookie's token; the token itself is never stored. */
  token_hash: string;
  user_id: string;
  created_at: IsoDate;
  expires_at: IsoDate;
  last_seen_at: IsoDate;
  user_agent: string;
  ip: string;
  revoked_at: IsoDate | null;
}

/** The half-logged-in state between the password step and the TOTP step. */
export interface LoginChallengeTable {
  token_hash: string;
  user_id: string;
  expires_at: IsoDate;
  ip: string;
  /** Wrong codes tried with this challenge; it is dropped after a few. */
  attempts: Generated<number>;
}

export interface RecoveryCodeTable {
  seq: Generated<number>;
  user_id: string;
  /** SHA-256 (hex) of the normalised code. */
  code_hash: string;
  used_at: IsoDate | null;
}

/** Instance-wide switches an admin sets (`require_totp`) and the setup marker. */
export interface InstanceSettingTable {
  key: string;
  value: JsonText<unknown>;
  updated_at: IsoDate;
}

/** One user's preferences (`default_model`, `theme`): plain JSON, nothing secret. */
export interface UserSettingTable {
  user_id: string;
  key: string;
  value: JsonText<unknown>;
}

export type UserSecretKind = 'upstream_key' | 'mcp_server';

/**
 * A user's personal secrets: an upstream API key (`name` is the upstream) or a remote MCP
 * server (`name` is its label, `url` its address). `secret_enc` is sealed with the
 * `user-secrets` subkey, bound to the user, kind and id.
 */
export interface UserSecretTable {
  id: string;
  user_id: string;
  kind: UserSecretKind;
  name: string;
  url: string | null;
  secret_enc: string | null;
  /** The last four characters of the secret, for masked display. */
  hint: string | null;
  created_at: IsoDate;
}

export type UserRow = Selectable<UserTable>;
export type SessionRow = Selectable<SessionTable>;
export type LoginChallengeRow = Selectable<LoginChallengeTable>;
export type RecoveryCodeRow = Selectable<RecoveryCodeTable>;
export type UserSecretRow = Selectable<UserSecretTable>;

export type PartialDB = {
  user: UserTable;
  session: SessionTable;
  login_challenge: LoginChallengeTable;
  recovery_code: RecoveryCodeTable;
  instance_setting: InstanceSettingTable;
  user_setting: UserSettingTable;
  user_secret: UserSecretTable;
};

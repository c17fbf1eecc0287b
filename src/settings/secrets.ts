import { randomUUID } from 'node:crypto';
import { UPSTREAM_NAME } from '../config/index.js';
import { deriveKey, secretBox, type SecretBox } from '../crypto/index.js';
import { checkUpstreamUrl, SsrfError, type SsrfPolicy } from '../gateway/index.js';
import { isoNow, type Store, type UserSecretKind, type UserSecretRow } from '../store/index.js';

export const MAX_UPSTREAM_KEYS = 50;
export const MAX_MCP_SERVERS = 20;
export const MAX_SECRET_LENGTH = 4096;
export const MAX_URL_LENGTH = 2048;
export const MAX_MCP_NAME_LENGTH = 64;

/** Printable ASCII without spaces: what fits in an `Authorization` header as one token. */
const SECRET_TEXT = new RegExp(`^[\\x21-\\x7e]{1,${MAX_SECRET_LENGTH}}$`);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const MASK = '••••';
/** Keys shorter than this show no characters at all: four of them would be too much of it. */
const HINT_MIN_LENGTH = 16;

export interface UpstreamKeyInfo {
  upstream: string;
  /** `••••` and the key's last four characters; the key itself is never shown. */
  masked: string;
  created_at: string;
}

export interface McpServerInfo {
  id: string;
  name: string;
  url: string;
  /** The masked token, or null when none was given. */
  token_masked: string | null;
  created_at: string;
}

/** A remote MCP server with its token opened, for the code that connects to it. */
export interface McpServer {
  id: string;
  name: string;
  url: string;
  token: string | undefined;
}

/** A refused change to a user's secrets: `code` is the error code the API answers with. */
export class SecretError extends Error {
  override name = 'SecretError';
  constructor(
    readonly code:
      | 'invalid_upstream'
      | 'invalid_secret'
      | 'invalid_name'
      | 'invalid_url'
      | 'too_many_secrets'
      | 'name_taken',
    message: string,
  ) {
    super(message);
  }
}

/**
 * What a sealed user secret is bound to: a value copied to another row or another user's row
 * does not open.
 */
export function userSecretContext(userId: string, secretId: string): string {
  return `user-secret:${userId}:${secretId}`;
}

/** The box user secrets are sealed with (the `user-secrets` subkey of the master key). */
export function userSecretBox(masterKey: Buffer): SecretBox {
  return secretBox(deriveKey(masterKey, 'user-secrets'));
}

function hintFor(secret: string): string {
  return secret.length >= HINT_MIN_LENGTH ? secret.slice(-4) : '';
}

function masked(hint: string | null): string {
  return MASK + (hint ?? '');
}

function checkSecret(what: string, secret: string): void {
  if (!SECRET_TEXT.test(secret)) {
    throw new SecretError(
      'invalid_secret',
      `${what} must be 1 to ${MAX_SECRET_LENGTH} printable ASCII characters without spaces`,
    );
  }
}

function checkUpstreamName(upstream: string): void {
  if (!UPSTREAM_NAME.test(upstream)) {
    throw new SecretError(
      'invalid_upstream',
      'an upstream name is 1 to 64 letters, digits, dots, dashes or underscores',
    );
  }
}

/**
 * Checks an MCP server's address: http(s), no credentials or query in it (the token has its
 * own field), and not an address the SSRF guard refuses outright. The host is resolved and
 * checked again on every connection, through the guard.
 */
/**
 * A URL as shown back: its origin, and of its path only how it ends. Hosted MCP endpoints often
 * carry their credential in the path (`/mcp/<key>/sse`), so the path is a secret of sorts.
 */
export function maskedUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '';
  }
  const path = parsed.pathname;
  if (path.length <= 1) return parsed.origin + path;
  return `${parsed.origin}/…${path.length > 8 ? path.slice(-4) : ''}`;
}

export function checkMcpUrl(url: string, policy: SsrfPolicy = { strict: true }): URL {
  if (url.length > MAX_URL_LENGTH) {
    throw new SecretError('invalid_url', `the URL is longer than ${MAX_URL_LENGTH} characters`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SecretError('invalid_url', 'the URL is not valid; write it as https://host/path');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new SecretError('invalid_url', 'the URL must start with http:// or https://');
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new SecretError(
      'invalid_url',
      'the URL must not hold credentials; put the token in the token field',
    );
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new SecretError(
      'invalid_url',
      'the URL must not have a query string or fragment; put a token in the token field',
    );
  }
  try {
    return checkUpstreamUrl(parsed.href, policy);
  } catch (error) {
    if (!(error instanceof SsrfError)) throw error;
    throw new SecretError(
      'invalid_url',
      error.message.replace(/^upstream URL refused: /, 'MCP server URL refused: '),
    );
  }
}

function checkMcpName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length === 0 || trimmed.length > MAX_MCP_NAME_LENGTH || CONTROL.test(trimmed)) {
    throw new SecretError(
      'invalid_name',
      `an MCP server name is 1 to ${MAX_MCP_NAME_LENGTH} characters without control characters`,
    );
  }
  return trimmed;
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE';
}

export interface UserSecretsOptions {
  store: Store;
  masterKey: Buffer;
  /** Where MCP server URLs may point; default strict (no loopback or private addresses). */
  mcpPolicy?: SsrfPolicy;
}

/**
 * A user's personal secrets: API keys for upstreams and remote MCP servers with their tokens.
 * Each is sealed with the `user-secrets` subkey, bound to its user and id; answers only ever
 * carry it masked. Every method is scoped to one user: another user's id is as unknown as a
 * made-up one.
 *
 * @example
 * const secrets = createUserSecrets({ store, masterKey });
 * secrets.setUpstreamKey(user.id, 'openrouter', 'sk-or-v1-...');
 * secrets.upstreamKeyFor(user.id, 'openrouter'); // 'sk-or-v1-...'
 * secrets.listMasked(user.id).upstream_keys; // [{ upstream: 'openrouter', masked: '••••9f3a', ... }]
 */
export function createUserSecrets({ store, masterKey, mcpPolicy }: UserSecretsOptions) {
  const box = userSecretBox(masterKey);
  const { sqlite } = store;
  const selectByName = sqlite.prepare<[string, UserSecretKind, string], UserSecretRow>(
    'select * from user_secret where user_id = ? and kind = ? and name = ?',
  );
  const selectById = sqlite.prepare<[string, UserSecretKind, string], UserSecretRow>(
    'select * from user_secret where user_id = ? and kind = ? and id = ?',
  );
  const selectKind = sqlite.prepare<[string, UserSecretKind], UserSecretRow>(
    'select * from user_secret where user_id = ? and kind = ? order by created_at, name',
  );
  const countKind = sqlite
    .prepare<[string, UserSecretKind], number>(
      'select count(*) from user_secret where user_id = ? and kind = ?',
    )
    .pluck();
  const insert = sqlite.prepare<[UserSecretRow]>(
    `insert into user_secret (id, user_id, kind, name, url, secret_enc, hint, created_at)
     values (@id, @user_id, @kind, @name, @url, @secret_enc, @hint, @created_at)`,
  );
  const replaceSecret = sqlite.prepare<[string, string, string, string]>(
    'update user_secret set secret_enc = ?, hint = ?, created_at = ? where id = ?',
  );
  const deleteRow = sqlite.prepare<[string]>('delete from user_secret where id = ?');

  const open = (row: UserSecretRow): string | undefined =>
    row.secret_enc === null
      ? undefined
      : box.open(row.secret_enc, userSecretContext(row.user_id, row.id));

  const describeKey = (row: UserSecretRow): UpstreamKeyInfo => ({
    upstream: row.name,
    masked: masked(row.hint),
    created_at: row.created_at,
  });

  // An MCP server's URL may carry a key in its path, so the whole URL is sealed with the token;
  // the `url` column keeps only its masked form, for display.
  const describeServer = (row: UserSecretRow): McpServerInfo => ({
    id: row.id,
    name: row.name,
    url: row.url ?? '',
    token_masked: row.hint === null ? null : masked(row.hint),
    created_at: row.created_at,
  });

  function openServer(row: UserSecretRow): { url: string; token?: string } {
    const sealed = JSON.parse(open(row) ?? '{}') as { url?: unknown; token?: unknown };
    return {
      url: typeof sealed.url === 'string' ? sealed.url : '',
      ...(typeof sealed.token === 'string' ? { token: sealed.token } : {}),
    };
  }

  return {
    /** Stores (or replaces) the user's key for an upstream. */
    setUpstreamKey(userId: string, upstream: string, key: string): UpstreamKeyInfo {
      checkUpstreamName(upstream);
      checkSecret('an upstream key', key);
      const row = sqlite
        .transaction(() => {
          const now = isoNow();
          const existing = selectByName.get(userId, 'upstream_key', upstream);
          if (existing) {
            const sealed = box.seal(key, userSecretContext(userId, existing.id));
            replaceSecret.run(sealed, hintFor(key), now, existing.id);
            return { ...existing, secret_enc: sealed, hint: hintFor(key), created_at: now };
          }
          if ((countKind.get(userId, 'upstream_key') ?? 0) >= MAX_UPSTREAM_KEYS) {
            throw new SecretError(
              'too_many_secrets',
              `you already have ${MAX_UPSTREAM_KEYS} upstream keys; remove one first`,
            );
          }
          const id = randomUUID();
          const created: UserSecretRow = {
            id,
            user_id: userId,
            kind: 'upstream_key',
            name: upstream,
            url: null,
            secret_enc: box.seal(key, userSecretContext(userId, id)),
            hint: hintFor(key),
            created_at: now,
          };
          insert.run(created);
          return created;
        })
        .immediate();
      return describeKey(row);
    },

    /** Removes the user's key for an upstream; false when there was none. */
    removeUpstreamKey(userId: string, upstream: string): boolean {
      const existing = selectByName.get(userId, 'upstream_key', upstream);
      if (!existing) return false;
      return deleteRow.run(existing.id).changes > 0;
    },

    /** The user's own key for an upstream, opened; undefined when none is stored. */
    upstreamKeyFor(userId: string, upstream: string): string | undefined {
      const row = selectByName.get(userId, 'upstream_key', upstream);
      return row ? open(row) : undefined;
    },

    addMcpServer(
      userId: string,
      input: { name: string; url: string; token?: string | undefined },
    ): McpServerInfo {
      const name = checkMcpName(input.name);
      const url = checkMcpUrl(input.url, mcpPolicy);
      if (input.token !== undefined) checkSecret('a token', input.token);
      const id = randomUUID();
      const row: UserSecretRow = {
        id,
        user_id: userId,
        kind: 'mcp_server',
        name,
        url: maskedUrl(url.href),
        secret_enc: box.seal(
          JSON.stringify({
            url: url.href,
            ...(input.token === undefined ? {} : { token: input.token }),
          }),
          userSecretContext(userId, id),
        ),
        hint: input.token === undefined ? null : hintFor(input.token),
        created_at: isoNow(),
      };
      sqlite
        .transaction(() => {
          if ((countKind.get(userId, 'mcp_server') ?? 0) >= MAX_MCP_SERVERS) {
            throw new SecretError(
              'too_many_secrets',
              `you already have ${MAX_MCP_SERVERS} MCP servers; remove one first`,
            );
          }
          try {
            insert.run(row);
          } catch (error) {
            if (!isUniqueViolation(error)) throw error;
            throw new SecretError(
              'name_taken',
              `you already have an MCP server named "${name}"; pick another name`,
            );
          }
        })
        .immediate();
      return describeServer(row);
    },

    /** Removes one of the user's MCP servers; undefined when the user has none with that id. */
    removeMcpServer(userId: string, id: string): McpServerInfo | undefined {
      const existing = selectById.get(userId, 'mcp_server', id);
      if (!existing) return undefined;
      deleteRow.run(existing.id);
      return describeServer(existing);
    },

    /** The user's MCP servers with their tokens opened, for the chat's MCP client. */
    mcpServersFor(userId: string): McpServer[] {
      return selectKind.all(userId, 'mcp_server').map((row) => {
        const { url, token } = openServer(row);
        return { id: row.id, name: row.name, url, token };
      });
    },

    /** Everything the settings page shows, masked. */
    listMasked(userId: string): { upstream_keys: UpstreamKeyInfo[]; mcp_servers: McpServerInfo[] } {
      return {
        upstream_keys: selectKind.all(userId, 'upstream_key').map(describeKey),
        mcp_servers: selectKind.all(userId, 'mcp_server').map(describeServer),
      };
    },
  };
}

export type UserSecrets = ReturnType<typeof createUserSecrets>;

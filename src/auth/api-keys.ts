import { randomBytes } from 'node:crypto';
import { randomToken, sha256Hex } from '../crypto/index.js';
import {
  fromJsonText,
  isoNow,
  toIso,
  toJsonText,
  type ApiKeyRow,
  type KeyScope,
  type Store,
} from '../store/index.js';
import { compileGlob, type Glob } from './glob.js';

export const API_KEY_PATTERN = /^pk_[A-Za-z0-9_-]{43}$/;
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** An API key as Palisade knows it: everything but the key itself. */
export interface ApiKey {
  id: string;
  name: string;
  owner: string | null;
  scope: KeyScope;
  hint: string;
  models: string[] | null;
  modelPatterns: Glob[] | null;
  expiresAt: Date | null;
  rpm: number | null;
  maxStreams: number | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface NewApiKey {
  name: string;
  owner?: string | null;
  scope?: KeyScope;
  models?: string[] | null;
  expiresInMs?: number | null;
  rpm?: number | null;
  maxStreams?: number | null;
}

export function hashApiKey(key: string): string {
  return sha256Hex(key);
}

function toApiKey(row: ApiKeyRow): ApiKey {
  const models = row.models === null ? null : fromJsonText(row.models);
  return {
    id: row.id,
    name: row.name,
    owner: row.owner,
    scope: row.scope,
    hint: row.hint,
    models,
    modelPatterns: models === null ? null : models.map(compileGlob),
    expiresAt: row.expires_at === null ? null : new Date(row.expires_at),
    rpm: row.rpm,
    maxStreams: row.max_streams,
    createdAt: new Date(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : new Date(row.last_used_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

/**
 * Mints a key (`pk_` + 32 random bytes, base64url) and stores only its SHA-256.
 * The key is returned once and cannot be shown again.
 */
export async function createApiKey(
  store: Store,
  input: NewApiKey,
): Promise<{ key: string; apiKey: ApiKey }> {
  if (!KEY_NAME_PATTERN.test(input.name)) {
    throw new Error(
      `key name "${input.name}" is not allowed: use up to 64 letters, digits and . _ @ -`,
    );
  }
  const existing = await store.db
    .selectFrom('api_key')
    .select('id')
    .where('name', '=', input.name)
    .executeTakeFirst();
  if (existing) throw new Error(`a key named "${input.name}" already exists: pick another name`);

  const key = `pk_${randomBytes(32).toString('base64url')}`;
  const now = isoNow();
  const row = {
    id: `key_${randomToken(9)}`,
    name: input.name,
    owner: input.owner ?? null,
    scope: input.scope ?? 'inference',
    hash: hashApiKey(key),
    hint: key.slice(-4),
    models: input.models && input.models.length > 0 ? toJsonText(input.models) : null,
    expires_at: input.expiresInMs != null ? toIso(new Date(Date.now() + input.expiresInMs)) : null,
    rpm: input.rpm ?? null,
    max_streams: input.maxStreams ?? null,
    created_at: now,
    last_used_at: null,
    revoked_at: null,
  };
  const inserted = await store.db
    .insertInto('api_key')
    .values(row)
    .returningAll()
    .executeTakeFirstOrThrow();
  return { key, apiKey: toApiKey(inserted) };
}

export async function listApiKeys(store: Store): Promise<ApiKey[]> {
  const rows = await store.db.selectFrom('api_key').selectAll().orderBy('seq').execute();
  return rows.map(toApiKey);
}

/**
 * What the audit log keeps of a newly created key: its settings, never the key or its hint.
 *
 * @example
 * audit.record({ action: 'key.created', actor: 'cli', target: apiKey.id, details: keyAuditDetails(apiKey) });
 */
export function keyAuditDetails(key: ApiKey) {
  return {
    name: key.name,
    owner: key.owner,
    scope: key.scope,
    models: key.models ?? [],
    expires_at: key.expiresAt?.toISOString() ?? null,
    rpm: key.rpm,
  };
}

/** Revokes by id or name. Returns the key, or undefined when there is no such key. */
export async function revokeApiKey(store: Store, idOrName: string): Promise<ApiKey | undefined> {
  const row = await store.db
    .selectFrom('api_key')
    .selectAll()
    .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
    .executeTakeFirst();
  if (!row) return undefined;
  if (row.revoked_at !== null) return toApiKey(row);
  const updated = await store.db
    .updateTable('api_key')
    .set({ revoked_at: isoNow() })
    .where('id', '=', row.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return toApiKey(updated);
}

/** Why a presented key was refused, or the key when it may be used. */
export type KeyCheck =
  | { ok: true; apiKey: ApiKey }
  | { ok: false; reason: 'unknown' | 'revoked' | 'expired'; apiKey?: ApiKey };

/**
 * The server's view of the keys: held in memory, looked up by hash (so no key is ever
 * compared character by character), reloaded whenever another process (the CLI) changes
 * the database. Last-used times are batched and written every `flushMs`.
 */
export function createKeyRing(store: Store, options: { flushMs?: number } = {}) {
  let byHash = new Map<string, ApiKey>();
  let anyKeys = false;
  let seenVersion = -1;
  // Epoch milliseconds; turned into ISO text only when flushed (off the request path).
  const used = new Map<string, number>();
  const selectAll = store.sqlite.prepare('SELECT * FROM api_key');
  const touch = store.sqlite.prepare('UPDATE api_key SET last_used_at = ? WHERE id = ?');

  function reload() {
    const rows = selectAll.all() as ApiKeyRow[];
    byHash = new Map(rows.map((row) => [row.hash, toApiKey(row)]));
    anyKeys = rows.length > 0;
  }

  function refreshIfChanged() {
    const version = store.dataVersion();
    if (version !== seenVersion) {
      seenVersion = version;
      reload();
    }
  }

  const flush = () => {
    if (used.size === 0) return;
    const batch = [...used];
    used.clear();
    store.sqlite.transaction(() => {
      for (const [id, at] of batch) touch.run(new Date(at).toISOString(), id);
    })();
  };
  const timer = setInterval(flush, options.flushMs ?? 30_000);
  timer.unref();

  return {
    /** True once any key has been created (revoked ones included): then /v1 needs a key. */
    hasKeys(): boolean {
      refreshIfChanged();
      return anyKeys;
    },
    check(presented: string): KeyCheck {
      refreshIfChanged();
      const apiKey = API_KEY_PATTERN.test(presented)
        ? byHash.get(hashApiKey(presented))
        : undefined;
      if (!apiKey) return { ok: false, reason: 'unknown' };
      if (apiKey.revokedAt) return { ok: false, reason: 'revoked', apiKey };
      if (apiKey.expiresAt && apiKey.expiresAt.getTime() <= Date.now()) {
        return { ok: false, reason: 'expired', apiKey };
      }
      used.set(apiKey.id, Date.now());
      return { ok: true, apiKey };
    },
    /** Call after this process changed keys itself (data_version only tracks others). */
    invalidate(): void {
      seenVersion = -1;
    },
    flush,
    close(): void {
      clearInterval(timer);
      flush();
    },
  };
}

export type KeyRing = ReturnType<typeof createKeyRing>;

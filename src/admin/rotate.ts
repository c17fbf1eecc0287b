import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { homeFile } from '../config/index.js';
import {
  deriveKey,
  MASTER_KEY_BYTES,
  secretBox,
  type KeyPurpose,
  type SecretBox,
} from '../crypto/index.js';
import { userSecretContext } from '../settings/index.js';
import type { Store } from '../store/index.js';

/**
 * Rotating the master key, and why it survives a crash at any point.
 *
 * Everything sealed under the master key is re-sealed in ONE write transaction (committed
 * with `synchronous = FULL`). The new key is staged as `secret.key.new` and the old one
 * copied to `secret.key.old` (both fsynced) inside that transaction, before the commit;
 * after it `secret.key.new` is renamed over `secret.key` and `secret.key.old` removed.
 * So at every instant one of the three files opens the database:
 *
 * - crash before the commit: the database is unchanged and `secret.key` still opens it;
 * - crash between the commit and the rename: `secret.key.new` opens it;
 * - crash after the rename: `secret.key` opens it.
 *
 * `settleKeyFiles` finds out which case it is by trying each file against the stored values
 * (never by the files' names alone), puts that key in `secret.key` and removes the others.
 * `palisade secret rotate` runs it first, and the server should too before it loads the key.
 * `secret.key.old` is the copy that still opens a database restored from before the commit.
 *
 * The pid lock keeps a server away; a CLI command that read the old key just before and
 * writes a sealed value just after the commit (`upstreams add --api-key-stdin`) is not, so
 * rotate with nothing else running.
 */

export class RotationError extends Error {
  override name = 'RotationError';
}

/** One sealed column value with what it is bound to. */
interface SealedValue {
  what: string;
  purpose: KeyPurpose;
  context: string;
  sealed: string;
  update: (sealed: string) => void;
}

function readSealedValues(store: Store): SealedValue[] {
  const { sqlite } = store;
  const setUpstream = sqlite.prepare('update upstream set api_key_enc = ? where name = ?');
  const setTotp = sqlite.prepare('update user set totp_secret_enc = ? where id = ?');
  const setSecret = sqlite.prepare('update user_secret set secret_enc = ? where id = ?');
  const upstreams = sqlite
    .prepare<[], { name: string; api_key_enc: string }>(
      'select name, api_key_enc from upstream where api_key_enc is not null order by name',
    )
    .all()
    .map((row): SealedValue => ({
      what: `the API key of the upstream "${row.name}"`,
      purpose: 'upstream-keys',
      context: `upstream:${row.name}`,
      sealed: row.api_key_enc,
      update: (sealed) => setUpstream.run(sealed, row.name),
    }));
  const totp = sqlite
    .prepare<[], { id: string; username: string; totp_secret_enc: string }>(
      'select id, username, totp_secret_enc from user where totp_secret_enc is not null order by id',
    )
    .all()
    .map((row): SealedValue => ({
      what: `the TOTP secret of the user "${row.username}"`,
      purpose: 'totp',
      context: `totp:${row.id}`,
      sealed: row.totp_secret_enc,
      update: (sealed) => setTotp.run(sealed, row.id),
    }));
  const secrets = sqlite
    .prepare<[], { id: string; user_id: string; kind: string; name: string; secret_enc: string }>(
      `select id, user_id, kind, name, secret_enc from user_secret
       where secret_enc is not null order by id`,
    )
    .all()
    .map((row): SealedValue => ({
      what: `the ${row.kind === 'mcp_server' ? 'MCP server token' : 'upstream key'} "${row.name}" (user secret ${row.id})`,
      purpose: 'user-secrets',
      context: userSecretContext(row.user_id, row.id),
      sealed: row.secret_enc,
      update: (sealed) => setSecret.run(sealed, row.id),
    }));
  return [...upstreams, ...totp, ...secrets];
}

/** The secret box of each purpose under one master key, derived once. */
function boxesFor(master: Buffer): (purpose: KeyPurpose) => SecretBox {
  const boxes = new Map<KeyPurpose, SecretBox>();
  return (purpose) => {
    let box = boxes.get(purpose);
    if (!box) boxes.set(purpose, (box = secretBox(deriveKey(master, purpose))));
    return box;
  };
}

/** Opens every value with `master`; the first that does not open is named in the error. */
function openAll(values: SealedValue[], master: Buffer): string[] {
  const box = boxesFor(master);
  return values.map((value) => {
    try {
      return box(value.purpose).open(value.sealed, value.context);
    } catch {
      throw new RotationError(`${value.what} does not open with the current master key`);
    }
  });
}

function opensAll(values: SealedValue[], master: Buffer): boolean {
  try {
    openAll(values, master);
    return true;
  } catch {
    return false;
  }
}

export interface KeyFiles {
  current: string;
  staged: string;
  previous: string;
}

export function keyFiles(home: string): KeyFiles {
  const current = homeFile(home, 'secret.key');
  return { current, staged: `${current}.new`, previous: `${current}.old` };
}

/** Writes a 0600 file and flushes it to disk before returning. */
function writeDurable(path: string, data: Buffer): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes a rename or unlink in `dir` durable. */
function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function readKeyFile(path: string): Buffer | undefined {
  if (!existsSync(path)) return undefined;
  const key = readFileSync(path);
  return key.length === MASTER_KEY_BYTES ? key : undefined;
}

export type SettleOutcome =
  /** No rotation was interrupted. */
  | 'clean'
  /** A rotation was cut off before its commit: the staged key was dropped. */
  | 'rolled_back'
  /** A rotation was cut off after its commit: the staged key was put in place. */
  | 'finished'
  /** The database is sealed under the key kept as `secret.key.old`: that key was put back. */
  | 'restored';

/**
 * Completes or undoes a rotation that was cut off (see the top of this file): whichever of
 * `secret.key`, `secret.key.new` and `secret.key.old` opens every stored value becomes
 * `secret.key`; the others are removed. Call it only while no server runs on the home.
 *
 * @example
 * const outcome = settleKeyFiles(home, store); // 'clean' almost always
 */
export function settleKeyFiles(home: string, store: Store): SettleOutcome {
  const files = keyFiles(home);
  if (!existsSync(files.staged) && !existsSync(files.previous)) return 'clean';
  const values = readSealedValues(store);
  const candidates = [files.current, files.staged, files.previous];
  const winner = candidates.find((path) => {
    const key = readKeyFile(path);
    return key !== undefined && opensAll(values, key);
  });
  if (winner === undefined) {
    throw new RotationError(
      `none of secret.key, secret.key.new and secret.key.old in ${home} opens the stored secrets; keep all three files and restore the database or the key from a backup`,
    );
  }
  if (winner !== files.current) {
    renameSync(winner, files.current);
    syncDirectory(home);
  }
  for (const path of [files.staged, files.previous]) removeIfPresent(path);
  syncDirectory(home);
  if (winner === files.staged) return 'finished';
  return winner === files.current ? 'rolled_back' : 'restored';
}

export interface RotateOptions {
  home: string;
  store: Store;
  /**
   * The master key when it comes from PALISADE_SECRET: then no file is read or written, and
   * `newKey` must be given (the operator stores it where PALISADE_SECRET comes from).
   */
  currentKey?: Buffer;
  newKey?: Buffer;
}

export interface RotateResult {
  /** How many sealed values were re-sealed. */
  resealed: number;
  /** What was found of an earlier, interrupted rotation (file mode only). */
  settled: SettleOutcome;
  /** The new master key, when it was made here (file mode). */
  newKey: Buffer;
}

/**
 * Re-seals every value sealed under the master key (upstream API keys, TOTP secrets, users'
 * upstream keys and MCP tokens) under a new random key, in one transaction, then puts the
 * new key in `secret.key`. A value that does not open with the current key aborts it all
 * with nothing changed. The caller holds the pid lock: a running server keeps the old key.
 *
 * @example
 * const { resealed } = rotateMasterKey({ home, store });
 */
export function rotateMasterKey(options: RotateOptions): RotateResult {
  const { home, store } = options;
  const fromEnv = options.currentKey !== undefined;
  if (fromEnv && options.newKey === undefined) {
    throw new RotationError('the master key comes from PALISADE_SECRET: give the new key too');
  }
  const settled = fromEnv ? 'clean' : settleKeyFiles(home, store);
  const files = keyFiles(home);
  const oldKey = options.currentKey ?? readKeyFile(files.current);
  if (oldKey === undefined) {
    throw new RotationError(
      `${files.current} is missing or not ${MASTER_KEY_BYTES} bytes; restore it from a backup first`,
    );
  }
  const newKey = options.newKey ?? randomBytes(MASTER_KEY_BYTES);
  if (newKey.length !== MASTER_KEY_BYTES || newKey.equals(oldKey)) {
    throw new RotationError(
      `the new master key must be ${MASTER_KEY_BYTES} bytes and differ from the old one`,
    );
  }

  // The commit must be on disk before the key file is replaced (WAL's NORMAL may lose it).
  store.sqlite.pragma('synchronous = FULL');
  let staged = false;
  let resealed: number;
  try {
    resealed = store.sqlite
      .transaction(() => {
        const values = readSealedValues(store);
        const plain = openAll(values, oldKey);
        if (!fromEnv) {
          writeDurable(files.previous, oldKey);
          writeDurable(files.staged, newKey);
          syncDirectory(home);
          staged = true;
        }
        const box = boxesFor(newKey);
        values.forEach((value, i) => {
          value.update(box(value.purpose).seal(plain[i] as string, value.context));
        });
        // Read back what is about to be committed: every value opens with the new key.
        openAll(readSealedValues(store), newKey);
        return values.length;
      })
      .immediate();
  } catch (error) {
    // Whether the commit happened is decided by what opens the database, not assumed.
    if (staged) {
      try {
        settleKeyFiles(home, store);
      } catch {
        // All three files stay; the next settle sorts them out.
      }
    }
    throw error;
  } finally {
    store.sqlite.pragma('synchronous = NORMAL');
  }

  if (!fromEnv) {
    renameSync(files.staged, files.current);
    syncDirectory(home);
    removeIfPresent(files.previous);
    syncDirectory(home);
  }
  return { resealed, settled, newKey };
}

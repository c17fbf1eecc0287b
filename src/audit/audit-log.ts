import {
  appendFileSync,
  closeSync,
  existsSync,
  fchmodSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
} from 'node:fs';
import { homeFile } from '../config/index.js';
import { sha256Hex } from '../crypto/index.js';
import type { Store } from '../store/index.js';

/** A value allowed in `details`: plain scalars or a list of strings. */
export type AuditValue = string | number | boolean | null | string[];

/** One thing that happened, as a caller describes it. */
export interface AuditEvent {
  /** Dotted lower-case name, e.g. `key.create`, `upstream.remove`, `auth.login_failed`. */
  action: string;
  /** Who did it, e.g. `cli`, `user:alice`, `key:k_123`, `system`. */
  actor: string;
  target?: string;
  ip?: string;
  requestId?: string;
  /** Only whitelisted field names are kept (see `DETAIL_FIELDS`); others are dropped. */
  details?: Record<string, AuditValue>;
}

export interface AuditLog {
  /** Appends one entry to the database and to `audit.jsonl`, atomically with respect to other writers. */
  record(event: AuditEvent): void;
}

/** One entry as read back from the log, newest first in listings. */
export interface AuditEntry {
  seq: number;
  ts: string;
  action: string;
  actor: string;
  target?: string;
  ip?: string;
  request_id?: string;
  details?: Record<string, AuditValue>;
}

export type AuditVerifyResult =
  { ok: true; entries: number } | { ok: false; entries: number; line: number; reason: string };

/** The `prev` of the first line. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * The only `details` field names that reach the log. A whitelist rather than a blacklist,
 * so a new field holding a secret is dropped until someone decides it is safe.
 */
export const DETAIL_FIELDS: ReadonlySet<string> = new Set([
  'name',
  'id',
  'key_id',
  'user',
  'admin',
  'owner',
  'scope',
  'models',
  'expires_at',
  'rpm',
  'max_streams',
  'url',
  'upstream',
  'model',
  'reason',
  'status',
  'path',
  'method',
  'host',
  'count',
  'source',
  'version',
  'found',
  'template',
  // A job's validated parameters as `name=value`; URLs in them lose userinfo and secret query values.
  'params',
  'job_id',
  'exit_code',
  'signal',
  'duration_ms',
  'peer',
  'username',
  'role',
  'disabled',
  'require_totp',
  'session_id',
  'kind',
  'conversation_id',
]);

const ACTION = /^[a-z][a-z0-9_.-]{0,63}$/;
const MAX_STRING = 500;
const MAX_LIST = 100;
// scheme://user:pass@host -> scheme://host. Greedy up to the last '@' before the path,
// the way the WHATWG URL parser reads an unencoded '@' in a password.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi;
const SECRET_QUERY_PARAM =
  /([?&][^=&#\s]*(?:key|token|secret|passw|pwd|auth|sig|credential)[^=&#\s]*=)[^&#\s]*/gi;

function cleanString(value: string): string {
  let text = value.replace(URL_USERINFO, '$1').replace(SECRET_QUERY_PARAM, '$1[redacted]');
  if (text.length > MAX_STRING) {
    text = text.slice(0, MAX_STRING);
    // Do not leave half of a surrogate pair behind.
    if (/[\uD800-\uDBFF]$/.test(text)) text = text.slice(0, -1);
    text += '…';
  }
  return text;
}

function cleanValue(value: unknown): AuditValue | undefined {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'string') return cleanString(value);
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (Array.isArray(value)) {
    return value
      .filter((item): item is string => typeof item === 'string')
      .slice(0, MAX_LIST)
      .map(cleanString);
  }
  // Objects, functions, undefined: not an AuditValue, whatever the caller cast.
  return undefined;
}

function cleanDetails(
  details: Record<string, AuditValue> | undefined,
): Record<string, AuditValue> | undefined {
  if (!details) return undefined;
  const kept: Record<string, AuditValue> = {};
  for (const key of Object.keys(details).sort()) {
    if (!DETAIL_FIELDS.has(key)) continue;
    const value = cleanValue(details[key]);
    if (value !== undefined) kept[key] = value;
  }
  return Object.keys(kept).length > 0 ? kept : undefined;
}

/** Builds the exact line text; key order is part of the format. */
function buildLine(seq: number, ts: string, event: AuditEvent, prev: string): string {
  const details = cleanDetails(event.details);
  return JSON.stringify({
    seq,
    ts,
    action: event.action,
    actor: cleanString(event.actor),
    ...(event.target !== undefined && { target: cleanString(event.target) }),
    ...(event.ip !== undefined && { ip: cleanString(event.ip) }),
    ...(event.requestId !== undefined && { request_id: cleanString(event.requestId) }),
    ...(details && { details }),
    prev,
  });
}

/** Appends `text` to the file (created 0600); on a failed write, cuts the file back. */
function appendPrivate(path: string, text: string): void {
  const fd = openSync(path, 'a', 0o600);
  try {
    const stat = fstatSync(fd);
    if ((stat.mode & 0o777) !== 0o600) fchmodSync(fd, 0o600);
    try {
      appendFileSync(fd, text);
    } catch (error) {
      // A half-written line would break the chain for every later entry.
      try {
        ftruncateSync(fd, stat.size);
      } catch {
        // Nothing more to do; verify will report the damaged line.
      }
      throw error;
    }
  } finally {
    closeSync(fd);
  }
}

interface LastRow {
  seq: number;
  hash: string;
}

/**
 * The audit log of a home: every entry is a row in `audit_entry` and a line in
 * `audit.jsonl`, each line carrying the SHA-256 of the line before it.
 *
 * `record` takes SQLite's write lock (`BEGIN IMMEDIATE`), so the server and CLI commands
 * sharing the database append one at a time. It runs on `store.sqlite`: called while
 * that connection is inside a transaction, it joins it (as a savepoint), and if that
 * transaction rolls back the file keeps a line the database lacks. Record after commit.
 *
 * @example
 * const audit = createAuditLog(store, home);
 * audit.record({ action: 'key.created', actor: 'cli', target: 'ci-bot', details: { scope: 'inference' } });
 */
export function createAuditLog(store: Store, home: string): AuditLog {
  const path = homeFile(home, 'audit.jsonl');
  const last = store.sqlite.prepare<[], LastRow>(
    'select seq, hash from audit_entry order by seq desc limit 1',
  );
  const insert = store.sqlite.prepare<[number, string, string, string, string, string, string]>(
    'insert into audit_entry (seq, ts, action, actor, line, hash, prev_hash) values (?, ?, ?, ?, ?, ?, ?)',
  );

  const append = store.sqlite.transaction((event: AuditEvent) => {
    const previous = last.get();
    const seq = (previous?.seq ?? 0) + 1;
    const prev = previous?.hash ?? GENESIS_HASH;
    const ts = new Date().toISOString();
    const line = buildLine(seq, ts, event, prev);
    insert.run(seq, ts, event.action, cleanString(event.actor), line, sha256Hex(line), prev);
    // Still inside the transaction: a failed write rolls the row back, and no other
    // writer can slip a line in between.
    appendPrivate(path, line + '\n');
  });

  return {
    record(event) {
      if (typeof event.action !== 'string' || !ACTION.test(event.action)) {
        throw new Error(`invalid audit action ${JSON.stringify(event.action)}`);
      }
      if (typeof event.actor !== 'string' || event.actor.length === 0) {
        throw new Error('audit actor must be a non-empty string');
      }
      append.immediate(event);
    },
  };
}

interface RawLine {
  bytes: Buffer;
  /** False for a last line without its newline. */
  complete: boolean;
}

/** Yields the file's lines one at a time, without reading it whole. */
function* readLines(path: string): Generator<RawLine> {
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(64 * 1024);
    let pending: Buffer[] = [];
    for (;;) {
      const size = readSync(fd, chunk, 0, chunk.length, null);
      if (size === 0) break;
      const view = chunk.subarray(0, size);
      let start = 0;
      for (let nl = view.indexOf(10); nl !== -1; nl = view.indexOf(10, start)) {
        yield { bytes: Buffer.concat([...pending, view.subarray(start, nl)]), complete: true };
        pending = [];
        start = nl + 1;
      }
      if (start < size) pending.push(Buffer.from(view.subarray(start)));
    }
    if (pending.length > 0) yield { bytes: Buffer.concat(pending), complete: false };
  } finally {
    closeSync(fd);
  }
}

interface StoredLine {
  line: string;
  hash: string;
  prev_hash: string;
}

function parseLine(text: string): { seq: unknown; prev: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    return value as { seq: unknown; prev: unknown };
  } catch {
    return undefined;
  }
}

/**
 * Checks `audit.jsonl` against its own hash chain and against the database, line by line,
 * and reports the first line that fails. Safe to run beside a live server.
 *
 * @example
 * const result = verifyAudit(store, home);
 * if (!result.ok) console.error(`broken at line ${result.line}: ${result.reason}`);
 */
export function verifyAudit(store: Store, home: string): AuditVerifyResult {
  const path = homeFile(home, 'audit.jsonl');
  const rowAt = store.sqlite.prepare<[number], StoredLine>(
    'select line, hash, prev_hash from audit_entry where seq = ?',
  );
  // Rows are immutable, so this count is a floor the file must reach; entries appended
  // while we read are checked as we meet them.
  const stored =
    store.sqlite
      .prepare<[], number>('select coalesce(max(seq), 0) from audit_entry')
      .pluck()
      .get() ?? 0;

  let entries = 0;
  const fail = (line: number, reason: string): AuditVerifyResult => ({
    ok: false,
    entries,
    line,
    reason,
  });

  if (!existsSync(path)) {
    return stored === 0
      ? { ok: true, entries: 0 }
      : fail(1, `audit.jsonl is missing but the database holds ${stored} entries`);
  }

  let prevHash = GENESIS_HASH;
  let number = 0;
  for (const { bytes, complete } of readLines(path)) {
    number += 1;
    const text = bytes.toString('utf8');
    if (!complete) return fail(number, 'incomplete last line (file truncated or write cut off)');
    const parsed = parseLine(text);
    if (!parsed) return fail(number, 'not a valid JSON object');
    if (parsed.seq !== number) {
      return fail(
        number,
        `expected seq ${number} but found ${JSON.stringify(parsed.seq)} (line removed, duplicated or reordered)`,
      );
    }
    if (parsed.prev !== prevHash) {
      return fail(
        number,
        number === 1
          ? 'prev hash is not the start of a chain (lines removed from the start)'
          : `prev hash does not match line ${number - 1} (edited or removed line)`,
      );
    }

    // A missing row may be a writer between its append and its commit: wait for the write
    // lock once, then the database is settled.
    const row = rowAt.get(number) ?? store.sqlite.transaction(() => rowAt.get(number)).immediate();
    const hash = sha256Hex(bytes);
    if (!row) return fail(number, 'not in the database (forged or appended line)');
    if (row.line !== text) {
      return fail(
        number,
        row.hash === sha256Hex(row.line)
          ? `differs from database row ${number} (edited line)`
          : `differs from database row ${number} (database row edited)`,
      );
    }
    if (row.hash !== hash || row.prev_hash !== prevHash) {
      return fail(number, `database row ${number} has wrong hashes (database edited)`);
    }
    prevHash = hash;
    entries = number;
  }

  if (stored > entries) {
    return fail(
      entries + 1,
      `missing from the file, which ends at line ${entries} while the database holds ${stored} entries (file truncated or lines removed)`,
    );
  }
  return { ok: true, entries };
}

/**
 * The newest entries, newest first, read from the database.
 *
 * @example
 * listAuditEntries(store, { limit: 20 }); // [{ seq: 42, action: 'key.revoked', ... }, ...]
 */
export function listAuditEntries(
  store: Store,
  options: { limit?: number; beforeSeq?: number } = {},
): AuditEntry[] {
  const limit = Math.max(0, Math.floor(options.limit ?? 50));
  const before = options.beforeSeq ?? Number.MAX_SAFE_INTEGER;
  const rows = store.sqlite
    .prepare<
      [number, number],
      { seq: number; ts: string; action: string; actor: string; line: string }
    >(
      'select seq, ts, action, actor, line from audit_entry where seq < ? order by seq desc limit ?',
    )
    .all(before, limit);
  return rows.map((row) => {
    const entry: AuditEntry = { seq: row.seq, ts: row.ts, action: row.action, actor: row.actor };
    const parsed = parseLine(row.line) as Record<string, unknown> | undefined;
    if (typeof parsed?.target === 'string') entry.target = parsed.target;
    if (typeof parsed?.ip === 'string') entry.ip = parsed.ip;
    if (typeof parsed?.request_id === 'string') entry.request_id = parsed.request_id;
    if (typeof parsed?.details === 'object' && parsed.details !== null) {
      entry.details = parsed.details as Record<string, AuditValue>;
    }
    return entry;
  });
}

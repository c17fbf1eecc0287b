import type { AuditEntry, AuditValue } from '../audit/index.js';
import type { Store } from '../store/index.js';

export interface AuditQuery {
  /** Entries whose action starts with this (`key.` finds key.created and key.revoked). */
  action?: string | undefined;
  /** Entries of exactly this actor, e.g. `user:alice` or `cli`. */
  actor?: string | undefined;
  /** Only entries older than this sequence number (the previous page's `next_before`). */
  before?: number | undefined;
  limit: number;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** Pass as `before` for the next, older page; null on the last page. */
  next_before: number | null;
}

/** An entry as stored: the line is the signed record, so it is what the answer is built from. */
function toEntry(seq: number, line: string): AuditEntry {
  const parsed = JSON.parse(line) as Record<string, unknown>;
  const entry: AuditEntry = {
    seq,
    ts: String(parsed.ts),
    action: String(parsed.action),
    actor: String(parsed.actor),
  };
  if (typeof parsed.target === 'string') entry.target = parsed.target;
  if (typeof parsed.ip === 'string') entry.ip = parsed.ip;
  if (typeof parsed.request_id === 'string') entry.request_id = parsed.request_id;
  if (typeof parsed.details === 'object' && parsed.details !== null) {
    entry.details = parsed.details as Record<string, AuditValue>;
  }
  return entry;
}

/**
 * A page of the audit log, newest first, filtered in SQL (action by prefix, actor exactly).
 *
 * @example
 * const page = queryAudit(store, { action: 'user.', limit: 50 });
 * const older = queryAudit(store, { action: 'user.', before: page.next_before ?? 0, limit: 50 });
 */
export function queryAudit(store: Store, query: AuditQuery): AuditPage {
  const action = query.action ?? '';
  const actor = query.actor ?? null;
  const rows = store.sqlite
    .prepare<
      { before: number; action: string; actor: string | null; take: number },
      { seq: number; line: string }
    >(
      `select seq, line from audit_entry
       where seq < @before
         and substr(action, 1, length(@action)) = @action
         and (@actor is null or actor = @actor)
       order by seq desc limit @take`,
    )
    .all({
      before: query.before ?? Number.MAX_SAFE_INTEGER,
      action,
      actor,
      take: query.limit + 1,
    });
  const page = rows.slice(0, query.limit);
  const last = page.at(-1);
  return {
    entries: page.map((row) => toEntry(row.seq, row.line)),
    next_before: rows.length > query.limit && last ? last.seq : null,
  };
}

import type { Selectable } from 'kysely';
import type { IsoDate } from './types.js';

export interface AuditEntryTable {
  seq: number;
  ts: IsoDate;
  action: string;
  actor: string;
  /** The exact line written to audit.jsonl. */
  line: string;
  /** SHA-256 (hex) of `line`. */
  hash: string;
  /** `hash` of the entry before (64 zeros for the first). */
  prev_hash: string;
}

export type AuditEntryRow = Selectable<AuditEntryTable>;
export const auditEntryTableName = 'audit_entry';
export type PartialDB = { [auditEntryTableName]: AuditEntryTable };

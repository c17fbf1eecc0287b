import type { Generated, Selectable } from 'kysely';
import type { IsoDate, JsonText } from './types.js';

// The jobs launcher's runs (src/jobs). The table is the queue: the server's runner starts the
// oldest `queued` rows, and `palisade jobs run|cancel` write here beside a live server.

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** A validated parameter value as stored: strings (paths resolved) and integers. */
export type JobParamValue = string | number;

export interface JobRunTable {
  /** Insertion order: newest first in listings, oldest first in the queue. */
  seq: Generated<number>;
  /** `run_` and 20 hex digits. */
  id: string;
  template: string;
  /** The validated values, as the process got them (paths absolute). */
  params: JsonText<Record<string, JobParamValue>>;
  /** The values as they were given, validated again when the run starts. */
  input: JsonText<Record<string, JobParamValue>>;
  status: JobStatus;
  /** 0..100 from the job's `progress: N%` lines; null until one is seen. */
  progress: number | null;
  exit_code: number | null;
  signal: string | null;
  reason: string | null;
  /** A username, or `cli`. */
  created_by: string;
  created_at: IsoDate;
  started_at: IsoDate | null;
  finished_at: IsoDate | null;
  log_bytes: number;
  pid: number | null;
  /** The job's process group (its leader's pid: each job starts its own). */
  pgid: number | null;
  /**
   * When the leader started (Linux: /proc/<pid>/stat field 22 and the boot id), so a later
   * server signals the group only while that same process still runs; null elsewhere.
   */
  process_start: string | null;
  /** Set by a cancel from another process (the CLI); the runner acts on it. */
  cancel_requested_at: IsoDate | null;
  cancel_requested_by: string | null;
}

export type JobRunRow = Selectable<JobRunTable>;

export type PartialDB = {
  job_run: JobRunTable;
};

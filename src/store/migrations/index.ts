import type { Migration } from 'kysely';
import * as m0001 from './0001-initial.js';
import * as m0002 from './0002-anthropic-models.js';
import * as m0003 from './0003-mesh.js';
import * as m0004 from './0004-accounts-chat.js';
import * as m0005 from './0005-jobs.js';
import * as m0006 from './0006-job-process.js';

/** Numbered, forward-only. Kysely runs them in name order and records each one. */
export const migrations: Record<string, Migration> = {
  '0001-initial': m0001,
  '0002-anthropic-models': m0002,
  '0003-mesh': m0003,
  '0004-accounts-chat': m0004,
  '0005-jobs': m0005,
  '0006-job-process': m0006,
};

import type { Kysely } from 'kysely';

// A run's process group and its leader's start time, so that a server started after a crash
// can stop the jobs the crashed one left running, without signalling a reused process id.
export async function up(db: Kysely<unknown>): Promise<void> {
  // SQLite adds one column per statement.
  await db.schema.alterTable('job_run').addColumn('pgid', 'integer').execute();
  await db.schema.alterTable('job_run').addColumn('process_start', 'text').execute();
}

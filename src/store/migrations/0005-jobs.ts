import { sql, type Kysely } from 'kysely';

// The jobs launcher's runs. One index serves both the queue (oldest queued first) and the
// runner's look for cancel requests on running rows.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('job_run')
    .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('template', 'text', (c) => c.notNull())
    .addColumn('params', 'text', (c) => c.notNull())
    .addColumn('input', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')`),
    )
    .addColumn('progress', 'real')
    .addColumn('exit_code', 'integer')
    .addColumn('signal', 'text')
    .addColumn('reason', 'text')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text')
    .addColumn('finished_at', 'text')
    .addColumn('log_bytes', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('pid', 'integer')
    .addColumn('cancel_requested_at', 'text')
    .addColumn('cancel_requested_by', 'text')
    .execute();
  await db.schema
    .createIndex('job_run_by_status')
    .on('job_run')
    .columns(['status', 'seq'])
    .execute();
}

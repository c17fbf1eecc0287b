import { sql, type Kysely } from 'kysely';

// Migrations are forward-only: never edit one that has shipped; add the next number.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('api_key')
    .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('owner', 'text')
    .addColumn('scope', 'text', (c) => c.notNull().check(sql`scope in ('inference', 'admin')`))
    .addColumn('hash', 'text', (c) => c.notNull().unique())
    .addColumn('hint', 'text', (c) => c.notNull())
    .addColumn('models', 'text')
    .addColumn('expires_at', 'text')
    .addColumn('rpm', 'integer')
    .addColumn('max_streams', 'integer')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('last_used_at', 'text')
    .addColumn('revoked_at', 'text')
    .execute();

  await db.schema
    .createTable('upstream')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('api_key_env', 'text')
    .addColumn('api_key_enc', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('audit_entry')
    .addColumn('seq', 'integer', (c) => c.primaryKey())
    .addColumn('ts', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('line', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('prev_hash', 'text', (c) => c.notNull())
    .execute();

  // The audit table is append-only: the database itself refuses edits and deletes.
  await sql`create trigger audit_entry_no_update before update on audit_entry
    begin select raise(abort, 'audit entries are append-only'); end`.execute(db);
  await sql`create trigger audit_entry_no_delete before delete on audit_entry
    begin select raise(abort, 'audit entries are append-only'); end`.execute(db);
}

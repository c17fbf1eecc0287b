import { sql, type Kysely } from 'kysely';

// Ids and sequence numbers grow with time, so pruning walks them from the oldest and needs no
// index on the times: each index is another page written for every message.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('mesh_peer')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('agent', 'text', (c) => c.notNull())
    .addColumn('cwd', 'text', (c) => c.notNull())
    .addColumn('git_root', 'text')
    .addColumn('pid', 'integer')
    .addColumn('summary', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('presence', 'text', (c) =>
      c.notNull().check(sql`presence in ('online', 'gone', 'left')`),
    )
    .addColumn('registered_at', 'text', (c) => c.notNull())
    .addColumn('last_seen_at', 'text', (c) => c.notNull())
    .addColumn('left_at', 'text')
    .execute();

  await db.schema
    .createTable('mesh_message')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('from_peer', 'text', (c) => c.notNull())
    .addColumn('from_name', 'text', (c) => c.notNull())
    .addColumn('to_peer', 'text')
    .addColumn('scope', 'text')
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('mesh_delivery')
    .addColumn('peer_id', 'text', (c) => c.notNull().references('mesh_peer.id').onDelete('cascade'))
    .addColumn('message_id', 'integer', (c) =>
      c.notNull().references('mesh_message.id').onDelete('cascade'),
    )
    .addColumn('read_at', 'text')
    .addPrimaryKeyConstraint('mesh_delivery_pk', ['peer_id', 'message_id'])
    // The primary key is the table: one b-tree less to write per message.
    .modifyEnd(sql`without rowid`)
    .execute();
  await db.schema
    .createIndex('mesh_delivery_message')
    .on('mesh_delivery')
    .column('message_id')
    .execute();

  await db.schema
    .createTable('mesh_event')
    .addColumn('seq', 'integer', (c) => c.primaryKey())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('peer_id', 'text')
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('mesh_state')
    .addColumn('project', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('set_by', 'text', (c) => c.notNull())
    .addColumn('set_by_name', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('mesh_state_pk', ['project', 'key'])
    .execute();

  await db.schema
    .createTable('mesh_claim')
    .addColumn('path', 'text', (c) => c.primaryKey())
    .addColumn('peer_id', 'text', (c) => c.notNull().references('mesh_peer.id').onDelete('cascade'))
    .addColumn('claimed_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .execute();
}

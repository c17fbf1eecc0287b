import SqliteDatabase from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { chmodSync, existsSync, watch, type FSWatcher } from 'node:fs';
import { homeFile } from '../config/index.js';
import { startCheckpointer, type Checkpointer } from './checkpointer.js';
import { migrations } from './migrations/index.js';
import type { Database } from './schema/index.js';

export interface Store {
  db: Kysely<Database>;
  /** The underlying connection, for synchronous work on hot paths and in transactions. */
  sqlite: SqliteDatabase.Database;
  /**
   * Changes whenever another connection (e.g. the CLI) commits to the database. Cheap enough
   * for every request: SQLite is only asked again after the database files changed on disk
   * (a file watch) or a second has passed.
   */
  dataVersion(): number;
  close(): Promise<void>;
}

/**
 * Opens `palisade.db` in the home (mode 0600, WAL) and brings its schema up to date.
 *
 * @example
 * const store = await openStore(home);
 * await store.db.selectFrom('api_key').selectAll().execute();
 */
export async function openStore(
  home: string,
  options: {
    /**
     * Run WAL checkpoints on a worker thread every this many ms instead of SQLite's automatic
     * ones on the writing thread (the server does; short-lived CLI commands do not).
     */
    checkpointEveryMs?: number;
  } = {},
): Promise<Store> {
  const path = homeFile(home, 'palisade.db');
  const created = !existsSync(path);
  const sqlite = new SqliteDatabase(path);
  if (created) chmodSync(path, 0o600);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('foreign_keys = ON');

  let checkpointer: Checkpointer | undefined;
  if (options.checkpointEveryMs !== undefined) {
    sqlite.pragma('wal_autocheckpoint = 0');
    checkpointer = startCheckpointer(path, options.checkpointEveryMs);
  }

  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await checkpointer?.close();
    await db.destroy();
    throw error instanceof Error ? error : new Error(String(error));
  }
  const versionStatement = sqlite.prepare('PRAGMA data_version').pluck();
  // Asking SQLite costs ~15 us (it opens a read transaction); a commit by another process
  // writes the -wal file, which the watch sees, so between writes the answer is remembered.
  let version = 0;
  let stale = true;
  let checkedAt = 0;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(home, { persistent: false }, (_event, file) => {
      if (file === null || file.startsWith('palisade.db')) stale = true;
    });
    watcher.on('error', () => (watcher = undefined));
  } catch {
    watcher = undefined;
  }

  return {
    db,
    sqlite,
    dataVersion: () => {
      const now = performance.now();
      if (stale || watcher === undefined || now - checkedAt > 1000) {
        stale = false;
        checkedAt = now;
        version = versionStatement.get() as number;
      }
      return version;
    },
    close: async () => {
      watcher?.close();
      await checkpointer?.close();
      await db.destroy();
    },
  };
}

import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * A checkpoint moves the WAL's pages into the database file and waits for the disk (fsync):
 * a few milliseconds that, run by SQLite's automatic checkpoint, stall the event loop of
 * whichever write crossed the threshold. This runs them on a worker thread, with a connection
 * of its own, every `everyMs`; the caller turns the automatic checkpoint off.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
const checkpoint = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or locked: the next tick tries again.
  }
};
const timer = setInterval(checkpoint, workerData.everyMs);
parentPort.on('message', () => {
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
`;

export interface Checkpointer {
  /** One last checkpoint, then the worker's connection is closed. */
  close(): Promise<void>;
}

/**
 * Starts the checkpoint worker for the database at `path`.
 *
 * @example
 * sqlite.pragma('wal_autocheckpoint = 0');
 * const checkpointer = startCheckpointer(path, 1000);
 */
export function startCheckpointer(path: string, everyMs: number): Checkpointer {
  // Eval'd workers resolve modules from the working directory; hand it the driver's path.
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver, everyMs } });
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.on('error', () => undefined);
  return {
    close: async () => {
      // Held by nothing else at shutdown: keep the process alive for the last checkpoint.
      worker.ref();
      worker.postMessage('close');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
      await worker.terminate();
    },
  };
}

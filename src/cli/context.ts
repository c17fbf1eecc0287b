import { createAuditLog, type AuditLog } from '../audit/index.js';
import { loadConfig, prepareHome, type Config, type FlagValues } from '../config/index.js';
import { loadMasterKey } from '../crypto/index.js';
import { openStore, type Store } from '../store/index.js';

/** What a management command (keys, upstreams, audit, ...) works with. */
export interface CliContext {
  config: Config;
  store: Store;
  masterKey: Buffer;
  audit: AuditLog;
  close(): Promise<void>;
}

/** The global options every command accepts. */
export interface GlobalOptions {
  home?: string;
}

/**
 * Opens the home named by --home / PALISADE_HOME for a management command. Commands run
 * beside a live server: SQLite in WAL mode lets both write, and the server notices changes.
 */
export async function openContext(options: GlobalOptions): Promise<CliContext> {
  const flags: FlagValues = options.home ? { home: options.home } : {};
  const config = loadConfig({ flags, env: process.env });
  prepareHome(config.home);
  const store = await openStore(config.home);
  const masterKey = loadMasterKey(config.home, config.secret);
  const audit = createAuditLog(store, config.home);
  return { config, store, masterKey, audit, close: () => store.close() };
}

/** Runs `body` with an open context and always closes it. */
export async function withContext<T>(
  options: GlobalOptions,
  body: (ctx: CliContext) => Promise<T>,
): Promise<T> {
  const ctx = await openContext(options);
  try {
    return await body(ctx);
  } finally {
    await ctx.close();
  }
}

/** An error the user can fix: printed as one line, exit code 1 (2 for usage). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Prints rows as an aligned table, or JSON with --json. */
export function printRows(rows: Array<Record<string, unknown>>, json: boolean | undefined): void {
  if (json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return;
  }
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  const columns = Object.keys(rows[0] as object);
  const cell = (v: unknown) =>
    v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') : String(v);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  process.stdout.write(
    [
      line(columns.map((c) => c.toUpperCase())),
      ...rows.map((r) => line(columns.map((c) => cell(r[c])))),
    ].join('\n') + '\n',
  );
}

import type { Command } from 'commander';
import { listAuditEntries, verifyAudit } from '../audit/index.js';
import { CliError, printRows, withContext, type GlobalOptions } from './context.js';

interface VerifyOptions extends GlobalOptions {
  json?: boolean;
}

interface ListOptions extends GlobalOptions {
  limit: string;
  json?: boolean;
}

const DEFAULT_LIMIT = '20';

function parseLimit(value: string): number {
  const limit = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new CliError(`--limit must be a positive whole number, not "${value}"`, 2);
  }
  return limit;
}

/**
 * Adds `palisade audit verify` and `palisade audit list`.
 *
 * @example
 * registerAuditCommands(program); // palisade audit verify --json
 */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('check and read the hash-chained audit log');

  audit
    .command('verify')
    .description('check audit.jsonl against its hash chain and the database')
    .option('--json', 'print the result as JSON')
    .action(async (_options: VerifyOptions, command: Command) => {
      const options = command.optsWithGlobals<VerifyOptions>();
      const result = await withContext(options, async (ctx) =>
        verifyAudit(ctx.store, ctx.config.home),
      );
      if (options.json) {
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        if (!result.ok) process.exitCode = 1;
        return;
      }
      if (!result.ok)
        throw new CliError(`audit log broken at line ${result.line}: ${result.reason}`);
      process.stdout.write(`audit log intact: ${result.entries} entries\n`);
    });

  audit
    .command('list')
    .description('show the newest audit entries, newest first')
    .option('--limit <n>', 'how many entries to show', DEFAULT_LIMIT)
    .option('--json', 'print full entries as JSON')
    .action(async (_options: ListOptions, command: Command) => {
      const options = command.optsWithGlobals<ListOptions>();
      const limit = parseLimit(options.limit);
      const entries = await withContext(options, async (ctx) =>
        listAuditEntries(ctx.store, { limit }),
      );
      if (options.json) {
        printRows(
          entries.map((entry) => ({ ...entry })),
          true,
        );
        return;
      }
      printRows(
        entries.map(({ seq, ts, action, actor, target }) => ({
          seq,
          ts,
          action,
          actor,
          target: target ?? null,
        })),
        false,
      );
    });
}

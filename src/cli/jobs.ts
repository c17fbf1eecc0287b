import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { homeFile } from '../config/index.js';
import {
  describeTemplate,
  findRunRow,
  FINAL_STATUSES,
  listRunRows,
  loadTemplates,
  logFileOf,
  ParamsError,
  queueRun,
  readLogChunk,
  requestCancel,
  toRun,
  type JobRun,
} from '../jobs/index.js';
import { HttpError } from '../server/index.js';
import {
  CliError,
  printRows,
  withContext,
  type CliContext,
  type GlobalOptions,
} from './context.js';

const PARAM = /^([a-z][a-z0-9_]{0,63})=([\s\S]*)$/;
const FOLLOW_EVERY_MS = 200;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseParams(pairs: string[]): Record<string, string> {
  const params: Record<string, string> = {};
  for (const pair of pairs) {
    const match = PARAM.exec(pair);
    if (!match) {
      throw new CliError(`--param takes NAME=VALUE (a lower-case name), not "${pair}"`, 2);
    }
    const [, name = '', value = ''] = match;
    if (Object.hasOwn(params, name)) throw new CliError(`--param ${name} is given twice`, 2);
    params[name] = value;
  }
  return params;
}

function parseLimit(value: string): number {
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new CliError(`--limit must be a whole number from 1 to 1000, not "${value}"`, 2);
  }
  return limit;
}

/** True when a server holds this home's pid file (it runs queued jobs). */
function serverRunning(home: string): boolean {
  try {
    const pid = Number.parseInt(readFileSync(homeFile(home, 'palisade.pid'), 'utf8').trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0) return false;
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The store's errors (404 unknown, 409 finished) as one line for the terminal. */
function asCliError(error: unknown): never {
  if (error instanceof ParamsError) {
    throw new CliError(
      ['invalid parameters:', ...error.details.map((d) => `  ${d.param}: ${d.message}`)].join('\n'),
      2,
    );
  }
  if (error instanceof HttpError) throw new CliError(error.message);
  throw error;
}

function requireRun(ctx: CliContext, id: string): JobRun {
  const row = findRunRow(ctx.store, id);
  if (!row) throw new CliError(`no run "${id}" (palisade jobs list shows them)`);
  return toRun(row);
}

function describeEnd(run: JobRun): string {
  return `${run.id} ${run.status}${run.reason ? `: ${run.reason}` : ''}`;
}

/**
 * Prints the run's log from the start, and with `follow` keeps printing as it grows until the
 * run finishes. Sets the exit code: 0 when it succeeded. `warned`: the caller has already said
 * that no server is running.
 */
async function printLog(
  ctx: CliContext,
  id: string,
  follow: boolean,
  warned = false,
): Promise<void> {
  const path = logFileOf(ctx.config.home, id);
  let offset = 0;
  for (;;) {
    const run = requireRun(ctx, id);
    const final = FINAL_STATUSES.has(run.status);
    for (;;) {
      const chunk = readLogChunk(path, offset, 1024 * 1024, !final);
      if (chunk.bytes.length === 0) break;
      process.stdout.write(chunk.bytes);
      offset = chunk.offset + chunk.bytes.length;
    }
    if (!follow || final) {
      if (final) {
        process.stderr.write(`${describeEnd(run)}\n`);
        if (run.status !== 'succeeded') process.exitCode = 1;
      }
      return;
    }
    if (run.status === 'queued' && !warned && !serverRunning(ctx.config.home)) {
      warned = true;
      process.stderr.write('queued; no server is running: it starts when `palisade serve` runs\n');
    }
    await sleep(FOLLOW_EVERY_MS);
  }
}

/**
 * Adds `palisade jobs templates|list|run|logs|cancel`. They work through the store beside a
 * live server, whose runner starts queued runs and acts on cancels within half a second.
 *
 * @example
 * registerJobCommands(program); // palisade jobs run script --param script=demo.mjs --follow
 */
export function registerJobCommands(program: Command): void {
  const jobs = program
    .command('jobs')
    .description('run operator-defined jobs (templates in PALISADE_HOME/jobs.json)');

  jobs
    .command('templates')
    .description('list the job templates: the built-ins and those of jobs.json')
    .option('--json', 'print JSON')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ json?: boolean } & GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const set = loadTemplates({ home: ctx.config.home });
        const templates = set.templates.map(describeTemplate);
        if (flags.json) {
          process.stdout.write(JSON.stringify({ templates, error: set.error }, null, 2) + '\n');
        } else {
          printRows(
            templates.map((t) => ({
              name: t.name,
              builtin: t.builtin ? 'yes' : 'no',
              params: t.params.map(
                (p) => `${p.name}:${p.type}${p.optional || p.default !== undefined ? '?' : ''}`,
              ),
              description: t.description,
            })),
            false,
          );
        }
        if (set.error) {
          process.stderr.write(`palisade: ${set.error}\n`);
          process.exitCode = 1;
        }
      });
    });

  jobs
    .command('list')
    .description('list runs, newest first')
    .option('--json', 'print JSON')
    .option('--limit <n>', 'how many runs to show', '20')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ json?: boolean; limit: string } & GlobalOptions>();
      const limit = parseLimit(flags.limit);
      await withContext(flags, async (ctx) => {
        const runs = listRunRows(ctx.store, { limit }).map(toRun);
        if (flags.json) {
          printRows(
            runs.map((r) => ({ ...r })),
            true,
          );
          return;
        }
        printRows(
          runs.map((r) => ({
            id: r.id,
            template: r.template,
            status: r.status,
            progress: r.progress === null ? null : `${r.progress}%`,
            by: r.created_by,
            created: r.created_at,
            reason: r.reason,
          })),
          false,
        );
      });
    });

  jobs
    .command('run <template>')
    .description('queue a run of a template; prints its id')
    .option('--param <name=value>', 'a parameter value (repeatable)', collect, [])
    .option('--follow', 'print its log as it runs, until it ends')
    .action(async (template: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<
        { param: string[]; follow?: boolean } & GlobalOptions
      >();
      const params = parseParams(flags.param);
      await withContext(flags, async (ctx) => {
        let run: JobRun;
        try {
          run = queueRun(
            ctx.store,
            ctx.audit,
            loadTemplates({ home: ctx.config.home }),
            { template, params },
            'cli',
          );
        } catch (error) {
          asCliError(error);
        }
        process.stdout.write(`${run.id}\n`);
        const running = serverRunning(ctx.config.home);
        if (!flags.follow || !running) {
          process.stderr.write(
            running
              ? `queued ${run.id}; the server starts it shortly (palisade jobs logs ${run.id} --follow)\n`
              : `queued ${run.id}; no server is running: it starts when \`palisade serve\` runs\n`,
          );
        }
        if (flags.follow) await printLog(ctx, run.id, true, !running);
      });
    });

  jobs
    .command('logs <id>')
    .description("print a run's log (stdout and stderr together)")
    .option('--follow', 'keep printing as the log grows, until the run ends')
    .action(async (id: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ follow?: boolean } & GlobalOptions>();
      await withContext(flags, async (ctx) => {
        requireRun(ctx, id);
        await printLog(ctx, id, flags.follow === true);
      });
    });

  jobs
    .command('cancel <id>')
    .description('cancel a run: a queued one at once, a running one with SIGTERM then SIGKILL')
    .action(async (id: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        requireRun(ctx, id);
        let outcome;
        try {
          outcome = requestCancel(ctx.store, ctx.audit, id, 'cli');
        } catch (error) {
          asCliError(error);
        }
        if (outcome.kind === 'cancelled') {
          process.stdout.write(`cancelled ${id} (it had not started)\n`);
        } else if (serverRunning(ctx.config.home)) {
          process.stdout.write(
            `asked the server to stop ${id}: SIGTERM now, SIGKILL if it is still running after PALISADE_JOB_KILL_GRACE\n`,
          );
        } else {
          process.stdout.write(
            `marked ${id} for cancelling, but no server is running; it is marked failed when \`palisade serve\` starts\n`,
          );
        }
      });
    });
}

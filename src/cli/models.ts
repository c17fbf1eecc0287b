import type { Command } from 'commander';
import { loadConfig, parseBytes, prepareHome, type FlagValues } from '../config/index.js';
import {
  createProgressPrinter,
  formatBytes,
  listModels,
  modelsDirOf,
  ModelNameError,
  ModelNotFoundError,
  pullModel,
  PullError,
  removeModel,
  type PullProgress,
} from '../local/index.js';
import { DEFAULT_MAX_BYTES } from '../local/pull.js';
import { CliError, printRows, type GlobalOptions } from './context.js';

/** Models commands need only the home folder: no database, no key. */
function homeOf(options: GlobalOptions): string {
  const flags: FlagValues = options.home ? { home: options.home } : {};
  return prepareHome(loadConfig({ flags, env: process.env }).home);
}

/** `--max-size`: a size in the settings' syntax (`512gb`, `300mb`, a byte count). */
function maxSizeOf(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MAX_BYTES;
  const bytes = parseBytes(text);
  if (bytes === undefined || bytes <= 0) {
    throw new CliError(
      `--max-size expects a size such as 512gb, 300mb or a byte count, not ${JSON.stringify(text.slice(0, 40))}`,
      2,
    );
  }
  return bytes;
}

function asCliError(error: unknown): unknown {
  if (error instanceof PullError) return new CliError(error.message, error.exitCode);
  if (error instanceof ModelNameError) return new CliError(error.message, 2);
  if (error instanceof ModelNotFoundError) return new CliError(error.message, 1);
  return error;
}

export function registerModelCommands(program: Command): void {
  const models = program
    .command('models')
    .description(
      'GGUF models in PALISADE_HOME/models, served by `palisade serve` as upstream local',
    );

  models
    .command('pull <source>')
    .description(
      'download a GGUF model from a URL or hf:owner/repo/file.gguf[@revision]; resumes an interrupted download',
    )
    .option('--name <name>', 'model name to save it as (default: the file name without .gguf)')
    .option('--sha256 <hex>', 'expected SHA-256 of the file; a mismatch deletes the download')
    .option('--force', 'replace an existing model of the same name')
    .option(
      '--max-size <size>',
      'refuse a file larger than this (e.g. 512gb, 300mb; default 256gb)',
    )
    .option('--quiet', 'print no progress')
    .action(async (source: string, _f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<
        {
          name?: string;
          sha256?: string;
          force?: boolean;
          quiet?: boolean;
          maxSize?: string;
        } & GlobalOptions
      >();
      const maxBytes = maxSizeOf(flags.maxSize);
      const home = homeOf(flags);
      const tty = process.stdout.isTTY === true;
      const printer = flags.quiet ? undefined : createProgressPrinter(process.stdout);
      let drawing = false;
      const onProgress = printer
        ? (progress: PullProgress) => {
            drawing = tty && !progress.done;
            printer(progress);
          }
        : undefined;
      const endLine = () => {
        if (drawing) process.stdout.write('\n');
        drawing = false;
      };
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const result = await pullModel({
          home,
          source,
          ...(flags.name !== undefined ? { name: flags.name } : {}),
          ...(flags.sha256 !== undefined ? { sha256: flags.sha256 } : {}),
          force: flags.force === true,
          maxBytes,
          env: process.env,
          signal: stop.signal,
          ...(onProgress ? { onProgress } : {}),
          onNotice: (text) => {
            if (flags.quiet) return;
            endLine();
            process.stdout.write(`${text}\n`);
          },
        });
        const checked =
          result.verified === 'flag'
            ? 'SHA-256 verified'
            : result.verified === 'etag'
              ? 'SHA-256 verified against the Hub'
              : `SHA-256 ${result.sha256}`;
        const about = [
          result.info.architecture,
          result.info.contextLength && `context ${result.info.contextLength}`,
        ]
          .filter(Boolean)
          .join(', ');
        process.stdout.write(
          `pulled model "${result.name}" (${formatBytes(result.size)}${about ? `, ${about}` : ''}; ${checked})\n` +
            `  ${result.path}\n` +
            `  palisade serve serves it as model "${result.name}" of upstream local\n`,
        );
      } catch (error) {
        endLine();
        throw asCliError(error);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });

  models
    .command('list')
    .description('list the models in PALISADE_HOME/models, and partial downloads')
    .option('--json', 'print JSON')
    .action(async (_f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ json?: boolean } & GlobalOptions>();
      const listed = await listModels(modelsDirOf(homeOf(flags)));
      if (flags.json) {
        printRows(
          listed.map((m) => ({
            name: m.name,
            status: m.status,
            size: m.size,
            architecture: m.architecture ?? null,
            context_length: m.contextLength ?? null,
            modified: m.modified.toISOString(),
            path: m.path,
            ...(m.status === 'partial'
              ? { total: m.total ?? null, pull_pid: m.pullPid ?? null }
              : {}),
            ...(m.error !== undefined ? { error: m.error } : {}),
          })),
          true,
        );
        return;
      }
      printRows(
        listed.map((m) => ({
          name: m.name,
          size:
            m.status === 'partial' && m.total !== undefined
              ? `${formatBytes(m.size)} of ${formatBytes(m.total)}`
              : formatBytes(m.size),
          arch: m.architecture ?? null,
          context: m.contextLength ?? null,
          modified: m.modified.toISOString().slice(0, 16).replace('T', ' '),
          status:
            m.status === 'ok'
              ? 'ok'
              : m.status === 'partial'
                ? m.pullPid !== undefined
                  ? `downloading now (pid ${m.pullPid})`
                  : 'partial download (pull again to resume, remove to delete)'
                : `invalid: ${m.error ?? 'not a GGUF file'}`,
        })),
        false,
      );
    });

  models
    .command('remove <name>')
    .description('delete a model (and any partial download of it)')
    .action(async (name: string, _f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      try {
        const removed = await removeModel(modelsDirOf(homeOf(flags)), name);
        process.stdout.write(`removed ${removed.join(', ')}\n`);
      } catch (error) {
        throw asCliError(error);
      }
    });
}

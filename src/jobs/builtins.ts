import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { JobTemplate } from './templates.js';

/** How to start this same CLI: the same Node, its loader flags, and the CLI's entry file. */
export interface CliInvocation {
  command: string;
  /** Node flags and the entry file, before the CLI's own arguments. */
  prefix: string[];
}

/** Node flags whose value is a module to load first (tsx's `--import tsx` under test). */
const LOADER_FLAGS = new Set(['--import', '--loader', '--experimental-loader', '--require', '-r']);

/**
 * A loader flag's module, made absolute: the job runs in another folder, where a bare `tsx`
 * would not resolve.
 */
function absoluteModule(flag: string, specifier: string, cwd: string): string {
  if (specifier.startsWith('file:') || isAbsolute(specifier)) return specifier;
  const relative = specifier.startsWith('./') || specifier.startsWith('../');
  try {
    if (flag === '--require' || flag === '-r') {
      return createRequire(join(cwd, 'noop.js')).resolve(specifier);
    }
    if (relative) return pathToFileURL(resolve(cwd, specifier)).href;
    return import.meta.resolve(specifier);
  } catch {
    return specifier;
  }
}

/**
 * The command line of this CLI: `node [loader flags] dist/cli/index.js`, or under tsx (tests,
 * `npm run palisade`) `node --import <tsx> src/cli/index.ts`. Only loader flags are kept from
 * `execArgv`; the test runner's own flags are not the CLI's.
 *
 * @example
 * cliInvocation(); // { command: '/usr/bin/node', prefix: ['/app/dist/cli/index.js'] }
 */
export function cliInvocation(
  execArgv: readonly string[] = process.execArgv,
  moduleUrl: string = import.meta.url,
  cwd: string = process.cwd(),
): CliInvocation {
  const source = moduleUrl.endsWith('.ts');
  const entry = fileURLToPath(new URL(`../cli/index.${source ? 'ts' : 'js'}`, moduleUrl));
  const flags: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] as string;
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    if (!LOADER_FLAGS.has(name)) continue;
    const value = eq === -1 ? execArgv[++i] : arg.slice(eq + 1);
    if (value === undefined) continue;
    flags.push(name, absoluteModule(name, value, cwd));
  }
  return { command: process.execPath, prefix: [...flags, entry] };
}

/**
 * The templates every home has: a model download through `palisade models pull`, and the
 * example script runner (`node SCRIPT --epochs N` for a script in the `scripts` folder).
 */
export function builtinTemplates(
  home: string,
  cli: CliInvocation = cliInvocation(),
  scripts: string = join(home, 'jobs', 'scripts'),
): JobTemplate[] {
  const work = join(home, 'jobs', 'work');
  return [
    {
      name: 'model-download',
      description:
        'Download a GGUF model into the models folder (palisade models pull), resuming and checking SHA-256 when given.',
      builtin: true,
      command: cli.command,
      args: [
        ...cli.prefix.map((literal) => ({ literal })),
        { literal: '--home' },
        { literal: home },
        { literal: 'models' },
        { literal: 'pull' },
        { param: 'url' },
        { param: 'sha256' },
      ],
      params: [
        {
          name: 'url',
          type: 'string',
          description: 'https:// URL of a .gguf file, or hf:owner/repo/file.gguf',
          pattern: '^(https?://|hf:)\\S+$',
          regex: /^(?:^(https?:\/\/|hf:)\S+$)$/,
          maxLength: 2048,
        },
        {
          name: 'sha256',
          type: 'string',
          description: 'expected SHA-256 of the file (64 hex digits)',
          pattern: '^[0-9a-fA-F]{64}$',
          regex: /^(?:^[0-9a-fA-F]{64}$)$/,
          maxLength: 64,
          optional: true,
          flag: '--sha256',
        },
      ],
      cwd: work,
      timeoutMs: 24 * 3_600_000,
      // Gated Hugging Face files need the token (never written to a log); a mirror, its endpoint.
      env: ['HF_TOKEN', 'HF_ENDPOINT', 'PALISADE_HF_ENDPOINT'],
    },
    {
      name: 'script',
      description:
        'Run a Node.js fine-tune or eval script from the scripts folder: node SCRIPT --epochs N.',
      builtin: true,
      command: process.execPath,
      args: [{ param: 'script' }, { literal: '--epochs' }, { param: 'epochs' }],
      params: [
        {
          name: 'script',
          type: 'path',
          folder: 'scripts',
          description: 'a .mjs or .js file in the scripts folder',
        },
        {
          name: 'epochs',
          type: 'integer',
          min: 1,
          max: 1000,
          default: 3,
          description: 'passed as --epochs',
        },
      ],
      cwd: scripts,
      timeoutMs: 24 * 3_600_000,
      env: [],
    },
  ];
}

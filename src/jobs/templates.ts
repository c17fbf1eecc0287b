import { accessSync, constants, mkdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { parseDuration } from '../config/index.js';
import { builtinTemplates, type CliInvocation } from './builtins.js';

/** A typed parameter of a template, as the operator declared it. */
export type ParamSpec = {
  name: string;
  description?: string;
  /** Absent values leave out the argument element (and its flag). */
  optional?: boolean;
  /** Written before the value, as its own element, whenever the value is there. */
  flag?: string;
} & (
  | {
      type: 'string';
      pattern: string;
      regex: RegExp;
      maxLength: number;
      /** A value may start with `-` (the program could read it as an option). */
      allowLeadingDash?: boolean;
      default?: string;
    }
  | { type: 'integer'; min: number; max: number; default?: number }
  | { type: 'enum'; values: string[]; default?: string }
  | { type: 'path'; folder: string; default?: string }
);

/** One element of a template's argument list: fixed text, or a parameter's value. */
export type ArgPart = { literal: string } | { param: string };

export interface JobTemplate {
  name: string;
  description: string;
  builtin: boolean;
  /** Absolute path of the program. */
  command: string;
  args: ArgPart[];
  params: ParamSpec[];
  /** Absolute working folder. */
  cwd: string;
  timeoutMs: number;
  /** Names copied from the server's environment when set there. */
  env: string[];
}

export interface TemplateSet {
  templates: JobTemplate[];
  /** Named folders (absolute), the built-in `scripts` one included. */
  folders: ReadonlyMap<string, string>;
  /** What is wrong with jobs.json, naming the fix; its templates are then all left out. */
  error: string | null;
}

export const TEMPLATE_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
export const PARAM_NAME = /^[a-z][a-z0-9_]{0,63}$/;
const FOLDER_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const FLAG = /^--?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const PLACEHOLDER = /^\{([a-z][a-z0-9_]{0,63})\}$/;
const EMBEDDED_PLACEHOLDER = /\{[a-z][a-z0-9_]{0,63}\}/;
const BARE_COMMAND = /^[A-Za-z0-9._+-]+$/;
/** Variables every job gets; nothing else passes unless a template lists it. */
export const BASE_ENV = ['PATH', 'HOME', 'LANG'] as const;
export const DEFAULT_TIMEOUT_MS = 24 * 3_600_000;
/** Node runs a longer timer at once (its timers hold at most 2^31-1 ms, about 24.8 days). */
export const MAX_TIMEOUT_MS = 24 * 86_400_000;
const MAX_FILE_BYTES = 1024 * 1024;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Where the launcher keeps its files under the home. */
export function jobsPaths(home: string) {
  const root = join(home, 'jobs');
  return {
    file: join(home, 'jobs.json'),
    root,
    logs: join(root, 'logs'),
    work: join(root, 'work'),
    scripts: join(root, 'scripts'),
  };
}

/** Creates jobs/, jobs/logs, jobs/work and jobs/scripts (mode 0700) when missing. */
export function prepareJobsFolders(home: string): void {
  const paths = jobsPaths(home);
  for (const dir of [paths.root, paths.logs, paths.work, paths.scripts]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
}

const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes('\0'), 'must not contain NUL bytes');

const common = {
  description: text(500).optional(),
  optional: z.boolean().optional(),
  flag: z.string().regex(FLAG, 'must be a flag such as "--tag" or "-t"').optional(),
};

const ParamFile = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('string'),
      pattern: z.string().min(1).max(1000),
      maxLength: z.number().int().min(1).max(65_536).optional(),
      allowLeadingDash: z.boolean().optional(),
      default: text(65_536).optional(),
      ...common,
    })
    .strict(),
  z
    .object({
      type: z.literal('integer'),
      min: z.number().int().min(-MAX_SAFE).max(MAX_SAFE).optional(),
      max: z.number().int().min(-MAX_SAFE).max(MAX_SAFE).optional(),
      default: z.number().int().min(-MAX_SAFE).max(MAX_SAFE).optional(),
      ...common,
    })
    .strict(),
  z
    .object({
      type: z.literal('enum'),
      values: z.array(text(200).min(1)).min(1).max(200),
      default: z.string().optional(),
      ...common,
    })
    .strict(),
  z
    .object({
      type: z.literal('path'),
      folder: z.string().regex(FOLDER_NAME, 'must be a folder name from "folders"'),
      default: text(4096).optional(),
      ...common,
    })
    .strict(),
]);

const TemplateFile = z
  .object({
    name: z
      .string()
      .regex(
        TEMPLATE_NAME,
        'must be 1-64 lower-case letters, digits or dashes, starting with a letter or digit',
      ),
    description: text(500).optional(),
    command: text(4096).min(1),
    args: z.array(text(4096)).max(256).optional(),
    params: z
      .record(
        z.string().regex(PARAM_NAME, 'parameter names are lower-case letters, digits and _'),
        ParamFile,
      )
      .optional(),
    cwd: text(4096).min(1).optional(),
    timeout: z.string().max(32).optional(),
    env: z
      .array(z.string().regex(ENV_NAME, 'must be an environment variable name'))
      .max(100)
      .optional(),
  })
  .strict();

const JobsFile = z
  .object({
    folders: z
      .record(
        z.string().regex(FOLDER_NAME, 'folder names are lower-case letters, digits, _ and -'),
        text(4096).min(1),
      )
      .optional(),
    templates: z.array(TemplateFile).max(200).optional(),
  })
  .strict();

type TemplateInput = z.infer<typeof TemplateFile>;
type ParamInput = z.infer<typeof ParamFile>;

/** Finds `command` on PATH (the server's), or undefined. */
export function findOnPath(command: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue;
    const candidate = join(dir, command);
    try {
      if (statSync(candidate).isFile()) {
        accessSync(candidate, constants.X_OK);
        return candidate;
      }
    } catch {
      // Not here.
    }
  }
  return undefined;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * A named folder must exist and, like jobs.json, be writable by its owner only: anyone who
 * can add or rename entries in it can swap a path between its check and its use.
 */
function folderProblem(absolute: string): string | undefined {
  let stat;
  try {
    stat = statSync(absolute);
  } catch {
    return `${absolute} is not a folder: create it or fix the path`;
  }
  if (!stat.isDirectory()) return `${absolute} is not a folder: create it or fix the path`;
  if ((stat.mode & 0o022) !== 0) {
    return `${absolute} is writable by other users (mode ${(stat.mode & 0o777).toString(8)}), who could swap the files a job is given: chmod go-w ${absolute}`;
  }
  return undefined;
}

function zodProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const where = issue.path.length > 0 ? issue.path.join('.') : 'the file';
    return `${where}: ${issue.message}`;
  });
}

/** Checks a default against its own parameter's rules (a path only for its form). */
function defaultProblem(spec: ParamSpec): string | undefined {
  if (spec.default === undefined) return undefined;
  const value = spec.default;
  switch (spec.type) {
    case 'string':
      if (typeof value === 'string' && value.startsWith('-') && !spec.allowLeadingDash) {
        return 'default starts with "-": set "allowLeadingDash": true if the program must get it';
      }
      return typeof value === 'string' && value.length <= spec.maxLength && spec.regex.test(value)
        ? undefined
        : 'default does not match the pattern';
    case 'integer':
      return typeof value === 'number' && value >= spec.min && value <= spec.max
        ? undefined
        : `default is outside ${spec.min}..${spec.max}`;
    case 'enum':
      return spec.values.includes(value as string) ? undefined : 'default is not one of values';
    case 'path':
      return typeof value === 'string' &&
        value !== '' &&
        !isAbsolute(value) &&
        !value.split('/').includes('..')
        ? undefined
        : 'default must be a path relative to its folder, without ".."';
  }
}

function toSpec(name: string, input: ParamInput, where: string, problems: string[]): ParamSpec {
  const base = {
    name,
    ...(input.description !== undefined && { description: input.description }),
    ...(input.optional !== undefined && { optional: input.optional }),
    ...(input.flag !== undefined && { flag: input.flag }),
  };
  let spec: ParamSpec;
  switch (input.type) {
    case 'string': {
      let regex = /$^/;
      try {
        // Alone first: a pattern such as `a)|(?:.*` is only valid once wrapped, and would
        // then match anything.
        new RegExp(input.pattern, 'u');
        // The whole value must match, anchored or not as written.
        regex = new RegExp(`^(?:${input.pattern})$`, 'u');
      } catch (error) {
        problems.push(
          `${where}.pattern: not a valid regular expression on its own, with the u flag (${(error as Error).message}): fix the pattern`,
        );
      }
      spec = {
        ...base,
        type: 'string',
        pattern: input.pattern,
        regex,
        maxLength: input.maxLength ?? 1024,
        ...(input.allowLeadingDash !== undefined && { allowLeadingDash: input.allowLeadingDash }),
        ...(input.default !== undefined && { default: input.default }),
      };
      break;
    }
    case 'integer': {
      const min = input.min ?? -MAX_SAFE;
      const max = input.max ?? MAX_SAFE;
      if (min > max) problems.push(`${where}: min ${min} is above max ${max}`);
      spec = {
        ...base,
        type: 'integer',
        min,
        max,
        ...(input.default !== undefined && { default: input.default }),
      };
      break;
    }
    case 'enum':
      if (new Set(input.values).size !== input.values.length) {
        problems.push(`${where}.values: a value is listed twice`);
      }
      spec = {
        ...base,
        type: 'enum',
        values: input.values,
        ...(input.default !== undefined && { default: input.default }),
      };
      break;
    case 'path':
      spec = {
        ...base,
        type: 'path',
        folder: input.folder,
        ...(input.default !== undefined && { default: input.default }),
      };
      break;
  }
  const problem = defaultProblem(spec);
  if (problem) problems.push(`${where}: ${problem}`);
  if (spec.default !== undefined && spec.optional) {
    problems.push(`${where}: give either "default" or "optional": true, not both`);
  }
  return spec;
}

function resolveCommand(
  command: string,
  path: string | undefined,
  where: string,
  problems: string[],
): string {
  if (isAbsolute(command)) {
    try {
      if (!statSync(command).isFile()) throw new Error('not a file');
      accessSync(command, constants.X_OK);
    } catch {
      problems.push(`${where}.command: ${command} is not an executable file: fix the path`);
    }
    return command;
  }
  if (!BARE_COMMAND.test(command)) {
    problems.push(
      `${where}.command: "${command}" is neither an absolute path nor a bare program name (such as "python3"); give an absolute path`,
    );
    return command;
  }
  const found = findOnPath(command, path);
  if (found === undefined) {
    problems.push(
      `${where}.command: "${command}" is not on the server's PATH; install it or give its absolute path`,
    );
    return command;
  }
  return found;
}

function toTemplate(
  input: TemplateInput,
  where: string,
  context: { folders: ReadonlyMap<string, string>; path: string | undefined; work: string },
  problems: string[],
): JobTemplate {
  const params = Object.entries(input.params ?? {}).map(([name, spec]) =>
    toSpec(name, spec, `${where}.params.${name}`, problems),
  );
  const declared = new Set(params.map((p) => p.name));
  const used = new Set<string>();
  const args: ArgPart[] = (input.args ?? []).map((element, i) => {
    const placeholder = PLACEHOLDER.exec(element);
    if (placeholder) {
      const name = placeholder[1] as string;
      if (!declared.has(name)) {
        problems.push(
          `${where}.args[${i}]: "${element}" names a parameter that is not declared: add "${name}" under "params"`,
        );
      }
      used.add(name);
      return { param: name };
    }
    if (EMBEDDED_PLACEHOLDER.test(element)) {
      const name = EMBEDDED_PLACEHOLDER.exec(element)?.[0] ?? '';
      problems.push(
        `${where}.args[${i}]: "${element}" puts a placeholder inside other text; values are never spliced into strings: make "${name}" an element of its own (e.g. ["--epochs", "{epochs}"])`,
      );
    }
    return { literal: element };
  });
  for (const spec of params) {
    if (!used.has(spec.name)) {
      problems.push(
        `${where}.params.${spec.name}: not used in args: add "{${spec.name}}" as an element of args, or remove the parameter`,
      );
    }
    if (spec.type === 'path' && !context.folders.has(spec.folder)) {
      problems.push(
        `${where}.params.${spec.name}: unknown folder "${spec.folder}": add it under "folders" (known: ${[...context.folders.keys()].join(', ')})`,
      );
    }
  }
  let cwd = context.work;
  if (input.cwd !== undefined) {
    const named = context.folders.get(input.cwd);
    if (named !== undefined) cwd = named;
    else if (isAbsolute(input.cwd)) cwd = input.cwd;
    else {
      problems.push(
        `${where}.cwd: "${input.cwd}" is neither a folder name from "folders" nor an absolute path`,
      );
    }
    if (!isDirectory(cwd)) {
      problems.push(`${where}.cwd: ${cwd} is not a folder: create it or fix the path`);
    }
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (input.timeout !== undefined) {
    const ms = parseDuration(input.timeout);
    if (ms === undefined || ms < 1000) {
      problems.push(
        `${where}.timeout: "${input.timeout}" is not a duration from 1s to 24d, such as 90s, 15m or 2h`,
      );
    } else if (ms > MAX_TIMEOUT_MS) {
      problems.push(
        `${where}.timeout: "${input.timeout}" is longer than the most a timer can wait (24d): give 24d or less`,
      );
    } else timeoutMs = ms;
  }
  const env = input.env ?? [];
  for (const name of env) {
    if (name.toUpperCase().startsWith('PALISADE_')) {
      problems.push(
        `${where}.env: ${name} is refused: Palisade's own settings and secret are never passed to jobs`,
      );
    }
  }
  return {
    name: input.name,
    description: input.description ?? '',
    builtin: false,
    command: resolveCommand(input.command, context.path, where, problems),
    args,
    params,
    cwd,
    timeoutMs,
    env,
  };
}

export interface LoadOptions {
  home: string;
  /** The server's environment: PATH finds bare commands. */
  env?: NodeJS.ProcessEnv;
  /** How the built-in model download runs the CLI (tests pass their own). */
  cli?: CliInvocation;
}

function readJobsFile(file: string): { data?: unknown; problem?: string } {
  let stat;
  try {
    stat = statSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    return { problem: `cannot read it: ${(error as Error).message}` };
  }
  if (!stat.isFile()) return { problem: 'it is not a regular file' };
  if ((stat.mode & 0o022) !== 0) {
    return {
      problem: `it is writable by other users (mode ${(stat.mode & 0o777).toString(8)}), and it says what the server runs: chmod 600 jobs.json`,
    };
  }
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid()) {
    return {
      problem: `it belongs to another user (uid ${stat.uid}): it must belong to the user the server runs as`,
    };
  }
  if (stat.size > MAX_FILE_BYTES) return { problem: 'it is larger than 1 MB' };
  const raw = readFileSync(file, 'utf8');
  try {
    return { data: JSON.parse(raw) as unknown };
  } catch (error) {
    return { problem: `it is not valid JSON (${(error as Error).message})` };
  }
}

/**
 * Reads PALISADE_HOME/jobs.json and the built-in templates. A broken file never throws: its
 * templates are left out and `error` says what to fix; the built-ins stay.
 *
 * @example
 * const { templates, error } = loadTemplates({ home });
 */
export function loadTemplates(options: LoadOptions): TemplateSet {
  const env = options.env ?? process.env;
  const paths = jobsPaths(options.home);
  const defaults = new Map([['scripts', paths.scripts]]);
  const { data, problem } = readJobsFile(paths.file);
  const fileSet = (): {
    templates: JobTemplate[];
    folders: Map<string, string>;
    problems: string[];
  } => {
    if (problem !== undefined) return { templates: [], folders: defaults, problems: [problem] };
    if (data === undefined) return { templates: [], folders: defaults, problems: [] };
    const parsed = JobsFile.safeParse(data);
    if (!parsed.success)
      return { templates: [], folders: defaults, problems: zodProblems(parsed.error) };
    const problems: string[] = [];
    const folders = new Map(defaults);
    for (const [name, dir] of Object.entries(parsed.data.folders ?? {})) {
      const absolute = resolve(options.home, dir);
      const problem = folderProblem(absolute);
      if (problem) problems.push(`folders.${name}: ${problem}`);
      folders.set(name, absolute);
    }
    const context = { folders, path: env.PATH, work: paths.work };
    const builtinNames = new Set(builtinTemplates(options.home, options.cli).map((t) => t.name));
    const seen = new Set<string>();
    const templates = (parsed.data.templates ?? []).map((input, i) => {
      const where = `templates[${i}] (${input.name})`;
      if (builtinNames.has(input.name)) {
        problems.push(`${where}: "${input.name}" is a built-in template's name: pick another`);
      } else if (seen.has(input.name)) {
        problems.push(`${where}: a second template named "${input.name}": rename one`);
      }
      seen.add(input.name);
      return toTemplate(input, where, context, problems);
    });
    return problems.length > 0
      ? { templates: [], folders: defaults, problems }
      : { templates, folders, problems };
  };
  const loaded = fileSet();
  const shown = loaded.problems.slice(0, 10);
  const more = loaded.problems.length - shown.length;
  const error =
    loaded.problems.length === 0
      ? null
      : `jobs.json is not used, so only the built-in templates are offered: ${shown.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
  const scripts = loaded.folders.get('scripts') ?? paths.scripts;
  return {
    templates: [...builtinTemplates(options.home, options.cli, scripts), ...loaded.templates],
    folders: loaded.folders,
    error,
  };
}

/**
 * The templates as of now: jobs.json is read again whenever it changes on disk, so an
 * operator's edit applies without a restart.
 */
export function createTemplateSource(options: LoadOptions): { current(): TemplateSet } {
  const file = jobsPaths(options.home).file;
  let stamp: string | undefined;
  let set: TemplateSet | undefined;
  const stampOf = () => {
    try {
      const stat = statSync(file);
      return `${stat.mtimeMs}:${stat.size}:${stat.mode}:${stat.ino}`;
    } catch {
      return 'absent';
    }
  };
  return {
    current() {
      const now = stampOf();
      if (set === undefined || now !== stamp) {
        set = loadTemplates(options);
        stamp = now;
      }
      return set;
    },
  };
}

/** A template as the API and `jobs templates` show it (no command: that is the operator's). */
export function describeTemplate(template: JobTemplate) {
  return {
    name: template.name,
    description: template.description,
    builtin: template.builtin,
    params: template.params.map((spec) => ({
      name: spec.name,
      type: spec.type,
      ...(spec.description !== undefined && { description: spec.description }),
      ...(spec.default !== undefined && { default: spec.default }),
      ...(spec.optional && { optional: true }),
      ...(spec.flag !== undefined && { flag: spec.flag }),
      ...(spec.type === 'integer' && {
        ...(spec.min !== -MAX_SAFE && { min: spec.min }),
        ...(spec.max !== MAX_SAFE && { max: spec.max }),
      }),
      ...(spec.type === 'enum' && { values: spec.values }),
      ...(spec.type === 'string' && {
        pattern: spec.pattern,
        maxLength: spec.maxLength,
        ...(spec.allowLeadingDash && { allowLeadingDash: true }),
      }),
      ...(spec.type === 'path' && { folder: spec.folder }),
    })),
  };
}

export type TemplateView = ReturnType<typeof describeTemplate>;

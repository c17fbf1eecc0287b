import { realpathSync } from 'node:fs';
import { isAbsolute, join, sep } from 'node:path';
import type { JobParamValue } from '../store/index.js';
import type { JobTemplate, ParamSpec } from './templates.js';

export interface ParamProblem {
  param: string;
  message: string;
}

/** Parameters that do not fit their template; each problem names the parameter. */
export class ParamsError extends Error {
  constructor(readonly details: ParamProblem[]) {
    super(
      `invalid parameters: ${details.map((d) => `${d.param} ${d.message}`).join('; ')}`.slice(
        0,
        2000,
      ),
    );
  }
}

const INTEGER_TEXT = /^-?\d{1,16}$/;
const MAX_PATH = 4096;
/** Half of a UTF-16 pair: JSON can carry one, UTF-8 (what the process gets) cannot. */
const LONE_SURROGATE = /\p{Cs}/u;

type Checked = { value: JobParamValue } | { problem: string };

function checkString(spec: Extract<ParamSpec, { type: 'string' }>, raw: unknown): Checked {
  if (typeof raw !== 'string') return { problem: 'must be a string' };
  if (raw.includes('\0')) return { problem: 'must not contain NUL bytes' };
  if (LONE_SURROGATE.test(raw)) return { problem: 'is not valid Unicode text' };
  if (raw.length > spec.maxLength) {
    return { problem: `is longer than ${spec.maxLength} characters` };
  }
  if (!spec.regex.test(raw)) return { problem: `does not match the pattern ${spec.pattern}` };
  // It would reach the program as an option (`--output=/etc/x`), not as a value.
  if (raw.startsWith('-') && !spec.allowLeadingDash) {
    return { problem: 'must not start with "-" (the program could read it as an option)' };
  }
  return { value: raw };
}

function checkInteger(spec: Extract<ParamSpec, { type: 'integer' }>, raw: unknown): Checked {
  let value: number;
  if (typeof raw === 'number') value = raw;
  else if (typeof raw === 'string' && INTEGER_TEXT.test(raw)) value = Number(raw);
  else return { problem: 'must be a whole number written in decimal digits' };
  if (!Number.isSafeInteger(value)) return { problem: 'must be a whole number' };
  if (value < spec.min || value > spec.max) {
    return { problem: `must be from ${spec.min} to ${spec.max}` };
  }
  return { value };
}

function checkEnum(spec: Extract<ParamSpec, { type: 'enum' }>, raw: unknown): Checked {
  if (typeof raw !== 'string' || !spec.values.includes(raw)) {
    return { problem: `must be one of: ${spec.values.join(', ')}` };
  }
  return { value: raw };
}

/**
 * A path relative to its folder, resolved with symlinks followed; it must exist and stay
 * inside the folder. The process gets the resolved absolute path.
 */
function checkPath(
  spec: Extract<ParamSpec, { type: 'path' }>,
  raw: unknown,
  folders: ReadonlyMap<string, string>,
): Checked {
  if (typeof raw !== 'string' || raw === '') {
    return { problem: `must be a path inside the folder "${spec.folder}"` };
  }
  if (raw.includes('\0')) return { problem: 'must not contain NUL bytes' };
  if (raw.length > MAX_PATH) return { problem: `is longer than ${MAX_PATH} characters` };
  if (isAbsolute(raw)) {
    return { problem: `must be relative to the folder "${spec.folder}", not an absolute path` };
  }
  if (raw.split('/').includes('..')) return { problem: 'must not contain ".."' };
  const folder = folders.get(spec.folder);
  if (folder === undefined) return { problem: `names an unknown folder "${spec.folder}"` };
  let root: string;
  let resolved: string;
  try {
    root = realpathSync(folder);
  } catch {
    return { problem: `cannot be checked: the folder "${spec.folder}" does not exist` };
  }
  try {
    resolved = realpathSync(join(root, raw));
  } catch {
    return { problem: `does not exist in the folder "${spec.folder}"` };
  }
  if (!resolved.startsWith(root + sep)) {
    return resolved === root
      ? { problem: `names the folder "${spec.folder}" itself; name something in it` }
      : { problem: `leads outside the folder "${spec.folder}" (through a symlink)` };
  }
  return { value: resolved };
}

function check(spec: ParamSpec, raw: unknown, folders: ReadonlyMap<string, string>): Checked {
  switch (spec.type) {
    case 'string':
      return checkString(spec, raw);
    case 'integer':
      return checkInteger(spec, raw);
    case 'enum':
      return checkEnum(spec, raw);
    case 'path':
      return checkPath(spec, raw, folders);
  }
}

/**
 * Checks every value against its template: unknown names refused, required ones present,
 * defaults filled in. An empty string counts as absent for a parameter that may be absent
 * (a form's empty field). Throws a ParamsError listing every problem.
 *
 * @example
 * validateParams(template, { epochs: '3', dataset: 'a.jsonl' }, folders);
 * // { epochs: 3, dataset: '/data/sets/a.jsonl' }
 */
export function validateParams(
  template: JobTemplate,
  input: Record<string, unknown>,
  folders: ReadonlyMap<string, string>,
): Record<string, JobParamValue> {
  const problems: ParamProblem[] = [];
  const known = new Set(template.params.map((p) => p.name));
  for (const name of Object.keys(input)) {
    if (!known.has(name)) {
      problems.push({
        param: name.slice(0, 100),
        message: `is not a parameter of "${template.name}"${known.size > 0 ? ` (it takes: ${[...known].join(', ')})` : ' (it takes none)'}`,
      });
    }
  }
  const values: Record<string, JobParamValue> = {};
  for (const spec of template.params) {
    let raw = Object.hasOwn(input, spec.name) ? input[spec.name] : undefined;
    const mayBeAbsent = spec.optional === true || spec.default !== undefined;
    if (raw === '' && mayBeAbsent) raw = undefined;
    if (raw === undefined || raw === null) {
      if (spec.default !== undefined) raw = spec.default;
      else if (spec.optional) continue;
      else {
        problems.push({ param: spec.name, message: 'is required' });
        continue;
      }
    }
    const result = check(spec, raw, folders);
    if ('problem' in result) problems.push({ param: spec.name, message: result.problem });
    else values[spec.name] = result.value;
  }
  if (problems.length > 0) throw new ParamsError(problems);
  return values;
}

/**
 * The argument list for validated values: each parameter is one whole element, never part
 * of another; an absent optional one is left out together with its flag.
 */
export function buildArgs(template: JobTemplate, values: Record<string, JobParamValue>): string[] {
  const args: string[] = [];
  for (const part of template.args) {
    if ('literal' in part) {
      args.push(part.literal);
      continue;
    }
    const value = values[part.param];
    if (value === undefined) continue;
    const spec = template.params.find((p) => p.name === part.param);
    if (spec?.flag !== undefined) args.push(spec.flag);
    args.push(String(value));
  }
  return args;
}

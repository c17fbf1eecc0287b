/**
 * The models folder, `PALISADE_HOME/models`: where `palisade models pull` puts GGUF files and
 * where `palisade serve` finds them. A model's name is its file name without `.gguf`; every
 * name from a user, a URL or a request goes through `resolveModelPath`, which refuses anything
 * that could reach outside the folder.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { lstat, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import { basename, join, sep } from 'node:path';
import { readGgufHeader, type GgufInfo } from './gguf.js';

export const GGUF_EXTENSION = '.gguf';
export const PART_SUFFIX = '.part';
export const SIDECAR_SUFFIX = '.part.json';
/** Held by a running pull (its pid inside). */
export const LOCK_SUFFIX = '.part.lock';

/** A model name (or file name) that is not allowed, or a path that leaves the models folder. */
export class ModelNameError extends Error {
  override readonly name = 'ModelNameError';
}

/** No model (and no partial download) of that name. */
export class ModelNotFoundError extends Error {
  override readonly name = 'ModelNotFoundError';
}

// Letters, digits and . _ + - only: what model file names on Hugging Face use, and nothing a
// shell, a path or a terminal could read differently.
const NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$/;

/** `PALISADE_HOME/models`, without creating it. */
export function modelsDirOf(home: string): string {
  return join(home, 'models');
}

/** Creates `PALISADE_HOME/models` (mode 0700) if needed and returns its path. */
export function ensureModelsDir(home: string): string {
  const dir = modelsDirOf(home);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stats = statSync(dir);
  if (!stats.isDirectory()) throw new ModelNameError(`${dir} exists but is not a folder`);
  if ((stats.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
  return dir;
}

/**
 * The model name for a name or file name given by a user or taken from a URL, `.gguf` removed.
 * Refuses path separators, `..`, NUL, absolute paths, hidden names and anything outside
 * letters, digits and `. _ + -`.
 *
 * @example
 * modelName('qwen2.5-0.5b-q4_k_m.gguf'); // 'qwen2.5-0.5b-q4_k_m'
 * modelName('../x.gguf'); // throws ModelNameError
 */
export function modelName(input: string): string {
  const why = nameProblem(input);
  if (why !== undefined) {
    throw new ModelNameError(
      `model name ${JSON.stringify(input.slice(0, 120))} is not allowed: ${why}; ` +
        'use letters, digits and . _ + - only',
    );
  }
  return input.endsWith(GGUF_EXTENSION) ? input.slice(0, -GGUF_EXTENSION.length) : input;
}

function nameProblem(input: string): string | undefined {
  if (input.length === 0) return 'it is empty';
  if (input.includes('\0')) return 'it contains a NUL byte';
  if (input.includes('/') || input.includes('\\')) return 'it contains a path separator';
  if (input.includes('..')) return 'it contains ..';
  const bare = input.endsWith(GGUF_EXTENSION) ? input.slice(0, -GGUF_EXTENSION.length) : input;
  if (bare.length === 0) return 'it is empty';
  if (!NAME.test(bare)) return 'it must start with a letter or digit and be at most 200 characters';
  return undefined;
}

/** The file name of a model: `NAME.gguf`. */
export function modelFileName(name: string): string {
  return `${modelName(name)}${GGUF_EXTENSION}`;
}

function isInside(dir: string, path: string): boolean {
  return path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/**
 * The path of model `name` in `dir`, checked: the name is valid and, if the file exists, it
 * is a regular file whose real path (symlinks followed) is inside the folder.
 *
 * @example
 * await resolveModelPath(dir, 'tiny'); // '<dir>/tiny.gguf'
 * await resolveModelPath(dir, 'link-to-etc-passwd'); // throws ModelNameError
 */
export async function resolveModelPath(dir: string, name: string): Promise<string> {
  const path = join(dir, modelFileName(name));
  await assertStaysInside(dir, path);
  return path;
}

/** Refuses `path` if it exists and is not a regular file resolving inside `dir`. */
export async function assertStaysInside(dir: string, path: string): Promise<void> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    // A dangling symlink: it leads somewhere that does not exist yet, refuse it too.
    const link = await lstat(path).catch(() => undefined);
    if (link !== undefined) {
      throw new ModelNameError(
        `${basename(path)} is a symlink that leads outside the models folder`,
      );
    }
    return;
  }
  const realDir = await realpath(dir);
  if (!isInside(realDir, real)) {
    throw new ModelNameError(`${basename(path)} is a symlink that leads outside the models folder`);
  }
  const stats = await stat(real);
  if (!stats.isFile()) throw new ModelNameError(`${basename(path)} is not a regular file`);
}

/** A pull is running on this model: it cannot be removed now. */
export class ModelBusyError extends Error {
  override readonly name = 'ModelBusyError';
}

/** The pid of the live process holding a pull's lock file, if there is one. */
export async function lockOwner(lockPath: string): Promise<number | undefined> {
  const text = await readFile(lockPath, 'utf8').catch(() => '');
  const pid = Number(text.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/** What `.part.json` beside a partial download records, so a rerun can resume it. */
export interface PartSidecar {
  url: string;
  etag?: string;
  lastModified?: string;
  total?: number;
}

export async function readSidecar(path: string): Promise<PartSidecar | undefined> {
  try {
    const data = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    if (typeof data.url !== 'string') return undefined;
    return {
      url: data.url,
      ...(typeof data.etag === 'string' ? { etag: data.etag } : {}),
      ...(typeof data.lastModified === 'string' ? { lastModified: data.lastModified } : {}),
      ...(typeof data.total === 'number' && Number.isSafeInteger(data.total) && data.total >= 0
        ? { total: data.total }
        : {}),
    };
  } catch {
    return undefined;
  }
}

/** One entry of `models list`. */
export interface ListedModel {
  name: string;
  /** `ok`: a valid GGUF; `invalid`: a .gguf that fails the header check; `partial`: a download in progress or interrupted. */
  status: 'ok' | 'invalid' | 'partial';
  path: string;
  size: number;
  modified: Date;
  architecture?: string;
  contextLength?: number;
  info?: GgufInfo;
  /** Why an invalid file was refused. */
  error?: string;
  /** For a partial download: the expected total size and where it came from, when known. */
  total?: number;
  url?: string;
  /** The pid of the pull writing this partial download now, if one is. */
  pullPid?: number;
}

/**
 * Every `.gguf` file in the folder (checked with the GGUF header reader) and every leftover
 * `.gguf.part`, sorted by name. Symlinks that lead outside the folder are listed as invalid.
 */
export async function listModels(dir: string): Promise<ListedModel[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const listed: ListedModel[] = [];
  for (const file of entries.sort()) {
    const path = join(dir, file);
    if (file.toLowerCase().endsWith(GGUF_EXTENSION)) {
      // `palisade serve` also serves `.GGUF` files, so they are listed too.
      const bare = file.slice(0, -GGUF_EXTENSION.length);
      if (nameProblem(bare) !== undefined) continue;
      listed.push(await describeModel(dir, bare, path));
    } else if (file.endsWith(GGUF_EXTENSION + PART_SUFFIX)) {
      const modelFile = file.slice(0, -PART_SUFFIX.length);
      if (nameProblem(modelFile) !== undefined) continue;
      const stats = await lstat(path).catch(() => undefined);
      if (!stats?.isFile()) continue;
      const sidecar = await readSidecar(path.slice(0, -PART_SUFFIX.length) + SIDECAR_SUFFIX);
      const pid = await lockOwner(path.slice(0, -PART_SUFFIX.length) + LOCK_SUFFIX);
      listed.push({
        name: modelName(modelFile),
        status: 'partial',
        path,
        size: stats.size,
        modified: stats.mtime,
        ...(sidecar?.total !== undefined ? { total: sidecar.total } : {}),
        ...(sidecar?.url !== undefined ? { url: sidecar.url } : {}),
        ...(pid !== undefined ? { pullPid: pid } : {}),
      });
    }
  }
  return listed;
}

async function describeModel(dir: string, name: string, path: string): Promise<ListedModel> {
  const stats = await lstat(path);
  const base = { name, path, size: stats.size, modified: stats.mtime };
  try {
    await assertStaysInside(dir, path);
    const real = await stat(path);
    const info = await readGgufHeader(path);
    return {
      ...base,
      size: real.size,
      modified: real.mtime,
      status: 'ok',
      info,
      ...(info.architecture ? { architecture: info.architecture } : {}),
      ...(info.contextLength ? { contextLength: info.contextLength } : {}),
    };
  } catch (error) {
    return { ...base, status: 'invalid', error: (error as Error).message };
  }
}

/**
 * Deletes model `name`: its `.gguf` and any `.gguf.part`, `.part.json` and stale `.part.lock`.
 * Returns the file names removed; throws ModelNotFoundError when there was nothing.
 */
export async function removeModel(dir: string, name: string): Promise<string[]> {
  const file = modelFileName(name);
  const path = join(dir, file);
  const pid = await lockOwner(path + LOCK_SUFFIX);
  if (pid !== undefined) {
    throw new ModelBusyError(
      `a pull of "${modelName(name)}" is running (pid ${pid}); stop it first, then remove the model`,
    );
  }
  // Everything is checked before anything is deleted, so a refusal leaves the model whole.
  const doomed: string[] = [];
  const model = await lstat(path).catch(() => undefined);
  if (model !== undefined) {
    // The file itself is unlinked, never what a symlink points at; still, a link leading out of
    // the folder was not put there by palisade, so it is left for the operator to look at.
    await assertStaysInside(dir, path);
    doomed.push(file);
  }
  for (const leftover of [file + PART_SUFFIX, file + SIDECAR_SUFFIX, file + LOCK_SUFFIX]) {
    const stats = await lstat(join(dir, leftover)).catch(() => undefined);
    if (stats === undefined) continue;
    if (!stats.isFile()) {
      throw new ModelNameError(
        `${leftover} is not a regular file; nothing was removed (look at it and delete it by hand)`,
      );
    }
    doomed.push(leftover);
  }
  const removed: string[] = [];
  for (const name of doomed) {
    await rm(join(dir, name));
    removed.push(name);
  }
  if (removed.length === 0) {
    throw new ModelNotFoundError(
      `no model named "${modelName(name)}" in ${dir} (palisade models list shows them)`,
    );
  }
  return removed;
}

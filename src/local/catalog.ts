import { readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { GgufError, readGgufHeader, type GgufInfo } from './gguf.js';
import { assertStaysInside, modelName } from './models-dir.js';

/** One model the embedded upstream can serve. */
export interface LocalModel {
  /** The model name clients send: the file name without `.gguf`. */
  id: string;
  path: string;
  origin: 'flag' | 'folder';
  info: GgufInfo;
  modifiedMs: number;
}

export interface CatalogOptions {
  /** Files named with --model / PALISADE_MODELS. Each must be valid GGUF. */
  files: string[];
  /** The models folder, scanned on each listing (files appear there after `models pull`). */
  folder?: string;
  /** Told once about each folder file that is not valid GGUF (it is left out). */
  onInvalid?: (path: string, error: Error) => void;
}

/** How long an unchanged folder's listing is reused (a file rewritten in place shows after it). */
const LISTING_MAX_AGE_MS = 2000;

export function modelIdOf(path: string): string {
  return basename(path).replace(/\.gguf$/i, '');
}

/**
 * The set of models the embedded upstream serves: the named files, then the `.gguf` files of
 * the models folder. Headers are checked (and cached by size and mtime) before a file is
 * listed, so nothing that fails the check ever reaches the native loader.
 */
export async function createCatalog(options: CatalogOptions) {
  const checked = new Map<string, { size: number; mtimeMs: number; result: GgufInfo | Error }>();
  const flagged: LocalModel[] = [];
  const refused = new Set<string>();

  async function check(
    path: string,
    fromFolder = true,
  ): Promise<{ info: GgufInfo | Error; modifiedMs: number }> {
    const stat = statSync(path);
    const cached = checked.get(path);
    if (cached && cached.size === stat.size && cached.mtimeMs === stat.mtimeMs) {
      return { info: cached.result, modifiedMs: stat.mtimeMs };
    }
    let result: GgufInfo | Error;
    try {
      result = await readGgufHeader(path);
    } catch (error) {
      result = error instanceof Error ? error : new Error(String(error));
      // A bad --model file stops the start with its own message instead.
      if (fromFolder) options.onInvalid?.(path, result);
    }
    checked.set(path, { size: stat.size, mtimeMs: stat.mtimeMs, result });
    return { info: result, modifiedMs: stat.mtimeMs };
  }

  for (const file of options.files) {
    const path = resolve(file);
    let checkedFile;
    try {
      checkedFile = await check(path, false);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new GgufError(
        code === 'ENOENT'
          ? `--model ${file}: there is no such file; give the path of a .gguf model`
          : `--model ${file}: ${(error as Error).message}`,
      );
    }
    if (checkedFile.info instanceof Error) {
      throw new GgufError(`--model ${file} is refused: ${checkedFile.info.message}`);
    }
    const id = modelIdOf(path);
    if (flagged.some((m) => m.id === id)) {
      throw new GgufError(`two --model files are both named "${id}": rename one of them`);
    }
    flagged.push({
      id,
      path,
      origin: 'flag',
      info: checkedFile.info,
      modifiedMs: checkedFile.modifiedMs,
    });
  }

  // Every request resolves its model through the listing; while the folder is unchanged (its
  // mtime moves when a pull renames a file in or a model is removed) and the listing is recent,
  // it is reused instead of reading and checking every file again.
  let listed: { dirMtimeMs: number; at: number; models: LocalModel[] } | undefined;

  async function folderModels(): Promise<LocalModel[]> {
    if (options.folder === undefined) return [];
    let dirMtimeMs: number;
    let names: string[];
    try {
      dirMtimeMs = statSync(options.folder).mtimeMs;
      if (
        listed &&
        listed.dirMtimeMs === dirMtimeMs &&
        Date.now() - listed.at < LISTING_MAX_AGE_MS
      ) {
        return listed.models;
      }
      names = readdirSync(options.folder);
    } catch {
      return [];
    }
    const models: LocalModel[] = [];
    for (const name of names.sort()) {
      if (!name.toLowerCase().endsWith('.gguf')) continue;
      const path = join(options.folder, name);
      try {
        // The same rules as `palisade models list`: a safe name, and no symlink out of the
        // folder (a file elsewhere is served with --model instead).
        modelName(name);
        await assertStaysInside(options.folder, path);
      } catch (error) {
        if (!refused.has(path)) {
          refused.add(path);
          options.onInvalid?.(path, error as Error);
        }
        continue;
      }
      refused.delete(path);
      try {
        if (!statSync(path).isFile()) continue;
        const { info, modifiedMs } = await check(path);
        if (!(info instanceof Error)) {
          models.push({ id: modelIdOf(name), path, origin: 'folder', info, modifiedMs });
        }
      } catch {
        // Removed while listing: simply not there.
      }
    }
    listed = { dirMtimeMs, at: Date.now(), models };
    return models;
  }

  return {
    /** Named files first; a folder file with the same name as one is left out. */
    async list(): Promise<LocalModel[]> {
      const ids = new Set(flagged.map((m) => m.id));
      return [...flagged, ...(await folderModels()).filter((m) => !ids.has(m.id))];
    },
  };
}

export type Catalog = Awaited<ReturnType<typeof createCatalog>>;

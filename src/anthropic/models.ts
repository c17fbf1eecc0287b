import { compileGlob, type Glob } from '../auth/index.js';

/**
 * Maps the model names Anthropic clients ask for (`claude-sonnet-4-5`, ...) to local models.
 *
 * `resolve(name, isLocal)` tries, in order:
 * 1. an exact entry (case-insensitive): explicit configuration wins;
 * 2. the name itself when `isLocal(name)` says a local model has that name, so a client can
 *    ask for `qwen3:8b` directly even when a catch-all glob exists;
 * 3. glob entries (`*` any run, `?` one character), in the order given;
 * 4. the fallback.
 * `undefined` means the name is unknown: answer Anthropic's `not_found_error` (404).
 *
 * @example
 * const map = createModelMap({ 'claude-*-haiku-*': 'llama3.2:3b', 'claude-*': 'qwen3:8b' });
 * map.resolve('claude-sonnet-4-5', (m) => registry.candidates(m).length > 0); // 'qwen3:8b'
 */
export interface ModelMap {
  resolve(name: string, isLocal?: (name: string) => boolean): string | undefined;
  readonly entries: ReadonlyArray<readonly [pattern: string, model: string]>;
  readonly fallback: string | undefined;
}

export type ModelMapEntries = Record<string, string> | Iterable<readonly [string, string]>;

const isGlob = (pattern: string) => pattern.includes('*') || pattern.includes('?');

function entriesOf(entries: ModelMapEntries): Array<readonly [string, string]> {
  if (Symbol.iterator in entries) return [...(entries as Iterable<readonly [string, string]>)];
  return Object.entries(entries);
}

export function createModelMap(entries: ModelMapEntries, fallback?: string): ModelMap {
  const list = entriesOf(entries);
  const exact = new Map<string, string>();
  const globs: Array<{ pattern: Glob; model: string }> = [];
  for (const [pattern, model] of list) {
    if (isGlob(pattern)) globs.push({ pattern: compileGlob(pattern), model });
    else if (!exact.has(pattern.toLowerCase())) exact.set(pattern.toLowerCase(), model);
  }
  return {
    entries: list,
    fallback,
    resolve(name, isLocal) {
      const mapped = exact.get(name.toLowerCase());
      if (mapped !== undefined) return mapped;
      if (isLocal?.(name)) return name;
      return globs.find((g) => g.pattern.test(name))?.model ?? fallback;
    },
  };
}

export interface ModelMapSpec {
  entries: Array<[string, string]>;
  fallback?: string;
}

/**
 * Parses `PALISADE_ANTHROPIC_MODELS`: comma-separated `NAME=MODEL` entries, NAME an exact
 * model name or a glob, e.g. `claude-3-haiku*=llama3.2:3b,claude-*=qwen3:8b`. One entry
 * without `=` is the fallback for every other name. Throws an Error naming the bad entry.
 */
export function parseModelMapSpec(spec: string): ModelMapSpec {
  const result: ModelMapSpec = { entries: [] };
  for (const item of spec.split(',')) {
    const entry = item.trim();
    if (entry === '') continue;
    const at = entry.indexOf('=');
    if (at === -1) {
      if (result.fallback !== undefined) {
        throw new Error(
          `PALISADE_ANTHROPIC_MODELS: "${entry}" is a second fallback model (the first is "${result.fallback}"); write NAME=MODEL`,
        );
      }
      checkModel(entry, entry);
      result.fallback = entry;
      continue;
    }
    const name = entry.slice(0, at).trim();
    const model = entry.slice(at + 1).trim();
    if (name === '' || model === '') {
      throw new Error(`PALISADE_ANTHROPIC_MODELS: "${entry}" must be NAME=MODEL`);
    }
    checkModel(name, entry);
    checkModel(model, entry);
    result.entries.push([name, model]);
  }
  return result;
}

function checkModel(value: string, entry: string) {
  if (value.length > 256 || /\s|[^ -\uffff]/.test(value)) {
    throw new Error(
      `PALISADE_ANTHROPIC_MODELS: "${entry}" holds a name with spaces, control characters or over 256 characters`,
    );
  }
}

export interface AnthropicModelInfo {
  type: 'model';
  id: string;
  display_name: string;
  created_at: string;
}

export interface AnthropicModelList {
  data: AnthropicModelInfo[];
  has_more: false;
  first_id: string | null;
  last_id: string | null;
}

/** `GET /v1/models` in Anthropic's list format (answered when the request has `anthropic-version`). */
export function toAnthropicModelList(
  models: ReadonlyArray<{ id: string; created?: number }>,
): AnthropicModelList {
  const data = models.map((m): AnthropicModelInfo => {
    const created = typeof m.created === 'number' && Number.isFinite(m.created) ? m.created : 0;
    const date = new Date(Math.max(0, Math.min(created, 253402300799)) * 1000);
    return { type: 'model', id: m.id, display_name: m.id, created_at: date.toISOString() };
  });
  return {
    data,
    has_more: false,
    first_id: data[0]?.id ?? null,
    last_id: data[data.length - 1]?.id ?? null,
  };
}

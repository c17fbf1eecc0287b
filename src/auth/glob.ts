/**
 * Compiles a model-name glob (`*` any run of characters, `?` one character) to a RegExp.
 * Model names hold `/` and `:` (`meta-llama/Llama-3`, `qwen3:8b`), so path-style glob
 * libraries, where `*` stops at `/`, would give the wrong answer here.
 */
export function compileGlob(glob: string): RegExp {
  const source = glob
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, 'i');
}

/** True when `name` matches any of the globs. */
export function matchesAny(name: string, globs: RegExp[]): boolean {
  return globs.some((g) => g.test(name));
}

/** A compiled model-name glob: `*` any run of characters, `?` one character, case-insensitive. */
export interface Glob {
  readonly source: string;
  test(name: string): boolean;
}

/**
 * Compiles a model-name glob. Model names hold `/` and `:` (`meta-llama/Llama-3`,
 * `qwen3:8b`), so path-style glob libraries, where `*` stops at `/`, give the wrong answer
 * here. Matching is linear-time (no regular expression): a key holder chooses the model
 * name, and a backtracking regex turned `*-*-*-*x` into seconds of CPU per request.
 */
export function compileGlob(glob: string): Glob {
  const pattern = glob.toLowerCase().replace(/\*+/g, '*');
  return { source: glob, test: (name) => wildcardMatch(pattern, name.toLowerCase()) };
}

/** Classic two-pointer wildcard match: O(pattern x name) at worst, no recursion. */
function wildcardMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    const c = pattern[p];
    if (c === '?' || (c !== undefined && c !== '*' && c === name[n])) {
      p += 1;
      n += 1;
    } else if (c === '*') {
      star = p;
      resume = n;
      p += 1;
    } else if (star !== -1) {
      p = star + 1;
      resume += 1;
      n = resume;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p += 1;
  return p === pattern.length;
}

/** True when `name` matches any of the globs. */
export function matchesAny(name: string, globs: readonly Glob[]): boolean {
  return globs.some((g) => g.test(name));
}

const MAX_AUTO_TITLE = 60;

/**
 * A conversation title from its first user message: the first non-blank line, whitespace
 * collapsed, at most 60 characters, cut at a word boundary with "…" when longer.
 * Undefined when the message holds no text to make a title of.
 *
 * @example
 * autoTitle('How do I\n  reverse a list?'); // 'How do I'
 */
export function autoTitle(content: string): string | undefined {
  const line = content
    .split(/\r\n|\r|\n/)
    .map((l) => l.replace(/\s+/g, ' ').trim())
    .find((l) => l !== '');
  if (line === undefined) return undefined;
  const chars = [...line];
  if (chars.length <= MAX_AUTO_TITLE) return line;
  // Room for the "…"; the head ends on a word boundary when the next character is a space.
  const head = chars.slice(0, MAX_AUTO_TITLE - 1).join('');
  const space = chars[MAX_AUTO_TITLE - 1] === ' ' ? head.length : head.lastIndexOf(' ');
  // One long word: cut inside it rather than leave almost nothing.
  const cut = space >= MAX_AUTO_TITLE / 3 ? head.slice(0, space) : head;
  return `${cut.trimEnd()}…`;
}

/**
 * Prints the configuration table of the docs, built from SETTINGS in src/config/settings.ts,
 * so the docs cannot drift from the code (src/config/docs.test.ts checks them).
 *
 *   npx tsx scripts/config-table.ts          # print the Markdown table
 *   npx tsx scripts/config-table.ts --write  # replace it in README.md and docs/configuration.md
 *
 * The table sits between `<!-- config-table:start -->` and `<!-- config-table:end -->`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SETTINGS } from '../src/config/settings.js';
import { formatDuration } from '../src/config/units.js';

export const TABLE_START = '<!-- config-table:start -->';
export const TABLE_END = '<!-- config-table:end -->';

/** The files that hold the table, relative to the repository root. */
export const TABLE_FILES = ['README.md', 'docs/configuration.md'] as const;

const HEADER = ['Environment variable', 'Flag', 'Default', 'Meaning'];

/** 10485760 -> `10mb`, 16384 -> `16kb`; a plain count when no unit divides it. */
function formatBytes(bytes: number): string {
  for (const [unit, size] of [
    ['gb', 1024 ** 3],
    ['mb', 1024 ** 2],
    ['kb', 1024],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/**
 * Writes a default the way a user would type it. For numbers, the first spelling that the
 * setting's own parser reads back as the same value wins: `5m` for a duration, `10mb` for
 * a size, `8642` for a count.
 */
function formatDefault(value: unknown, parse: (text: string) => unknown): string {
  if (value === undefined || value === '' || (Array.isArray(value) && value.length === 0)) {
    return '(none)';
  }
  if (typeof value === 'number') {
    for (const text of [formatDuration(value), formatBytes(value), String(value)]) {
      try {
        if (parse(text) === value) return `\`${text}\``;
      } catch {
        // Not this spelling; try the next.
      }
    }
    return `\`${value}\``;
  }
  if (typeof value === 'string') {
    const home = homedir();
    const shown = value.startsWith(home) ? `~${value.slice(home.length)}` : value;
    return `\`${shown}\``;
  }
  return `\`${String(value)}\``;
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The rows of the table, one per setting, in the order of SETTINGS. */
export function configRows(): string[][] {
  return Object.values(SETTINGS).map((setting) => {
    const fallback: unknown =
      typeof setting.default === 'function'
        ? (setting.default as () => unknown)()
        : setting.default;
    const flag = 'flag' in setting ? `\`${setting.flag}\`` : '';
    return [
      `\`${setting.env}\``,
      flag,
      formatDefault(fallback, setting.parse as (text: string) => unknown),
      setting.help,
    ].map(escapeCell);
  });
}

/** The Markdown table, columns padded the way Prettier pads them, ending with a newline. */
export function configTable(): string {
  const rows = [HEADER, ...configRows()];
  const widths = HEADER.map((_, i) => Math.max(3, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i] as number)).join(' | ')} |`;
  const rule = `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`;
  return [line(HEADER), rule, ...rows.slice(1).map(line)].join('\n') + '\n';
}

/** The text between the markers in a document, or undefined when the markers are missing. */
export function tableIn(document: string): string | undefined {
  const start = document.indexOf(TABLE_START);
  const end = document.indexOf(TABLE_END);
  if (start === -1 || end === -1 || end < start) return undefined;
  return document.slice(start + TABLE_START.length, end).trim() + '\n';
}

/** Replaces the text between the markers with the current table. */
export function withTable(document: string): string {
  const start = document.indexOf(TABLE_START);
  const end = document.indexOf(TABLE_END);
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`the markers ${TABLE_START} and ${TABLE_END} are missing`);
  }
  return (
    document.slice(0, start + TABLE_START.length) +
    '\n\n' +
    configTable() +
    '\n' +
    document.slice(end)
  );
}

function runDirectly(): boolean {
  const script = process.argv[1];
  return script !== undefined && resolve(script) === fileURLToPath(import.meta.url);
}

if (runDirectly()) {
  if (process.argv.includes('--write')) {
    const root = fileURLToPath(new URL('..', import.meta.url));
    for (const file of TABLE_FILES) {
      const path = resolve(root, file);
      writeFileSync(path, withTable(readFileSync(path, 'utf8')));
      process.stdout.write(`updated ${file}\n`);
    }
  } else {
    process.stdout.write(configTable());
  }
}

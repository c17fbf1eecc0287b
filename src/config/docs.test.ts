import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { TABLE_FILES, configTable, tableIn } from '../../scripts/config-table.js';
import { SETTINGS } from './settings.js';

const root = new URL('../../', import.meta.url);
const read = (file: string) => readFileSync(new URL(file, root), 'utf8');

/** A Markdown table as rows of trimmed cells, so column padding does not matter. */
function cells(table: string): string[][] {
  return table
    .trim()
    .split('\n')
    .map((line) =>
      line
        .trim()
        .replace(/^\||\|$/g, '')
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim().replace(/^-{3,}$/, '---')),
    );
}

describe('the docs match the code', () => {
  for (const file of TABLE_FILES) {
    test(`${file} holds the configuration table generated from SETTINGS`, () => {
      const table = tableIn(read(file));
      assert.ok(table, `${file} has no <!-- config-table:start/end --> markers`);
      assert.deepEqual(
        cells(table),
        cells(configTable()),
        `${file} is out of date: run npx tsx scripts/config-table.ts --write`,
      );
    });
  }

  test('the table has one row per setting', () => {
    const rows = cells(configTable()).slice(2);
    assert.equal(rows.length, Object.keys(SETTINGS).length);
    for (const setting of Object.values(SETTINGS)) {
      assert.ok(
        rows.some((row) => row[0] === `\`${setting.env}\``),
        `${setting.env} is missing from the table`,
      );
    }
  });

  test("the README's first code block installs, then starts and tests", () => {
    const readme = read('README.md');
    const block = /```[^\n]*\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(block, 'README.md has no code block');
    assert.match(block, /^npm install && npm start\b/m);
    assert.match(block, /^npm install && npm test\b/m);
  });
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeJobFixtures } from '../../test/fixtures/jobs.js';
import { createAuditLog, listAuditEntries } from '../audit/index.js';
import { openStore } from '../store/index.js';
import {
  findRunRow,
  listRunRows,
  maskUrl,
  queueRun,
  requestCancel,
  shownParams,
  toRun,
} from './runs.js';
import { loadTemplates } from './templates.js';

test('maskUrl drops userinfo and masks the query and fragment; other text is unchanged', () => {
  const cases: Array<[string, string]> = [
    ['https://host/m.gguf?X-Amz-Signature=abc&Expires=1', 'https://host/m.gguf?…'],
    ['https://user:p@ss@host:8443/a/b.gguf?sig=1#frag', 'https://host:8443/a/b.gguf?…#…'],
    ['http://host/m.gguf', 'http://host/m.gguf'],
    ['http://host/m.gguf?', 'http://host/m.gguf?'],
    ['hf:owner/repo/file.gguf', 'hf:owner/repo/file.gguf'],
    ['not a url?x=1', 'not a url?x=1'],
    ['/abs/path?x', '/abs/path?x'],
  ];
  for (const [value, shown] of cases) assert.equal(maskUrl(value), shown, value);
});

test('a signed download URL is masked in the run shown and the audit log, kept whole in the row', async () => {
  const home = writeJobFixtures();
  const store = await openStore(home);
  try {
    const audit = createAuditLog(store, home);
    const set = loadTemplates({ home });
    const url = 'https://me:hunter2@cdn.example/m.gguf?X-Amz-Signature=s3cr3t&X-Amz-Expires=60';
    const run = queueRun(store, audit, set, { template: 'model-download', params: { url } }, 'cli');
    assert.deepEqual(run.params, { url: 'https://cdn.example/m.gguf?…' });
    const row = findRunRow(store, run.id);
    assert.equal(JSON.parse(row?.params ?? '{}').url, url, 'the process needs it whole');
    assert.equal(JSON.parse(row?.input ?? '{}').url, url);
    assert.deepEqual(toRun(listRunRows(store, { limit: 1 })[0]!).params, run.params);
    requestCancel(store, audit, run.id, 'cli');
    const entries = listAuditEntries(store, { limit: 10 });
    assert.deepEqual(
      entries.map((e) => e.details?.params),
      [['url=https://cdn.example/m.gguf?…'], ['url=https://cdn.example/m.gguf?…']],
    );
    const file = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.ok(!/s3cr3t|hunter2|X-Amz-Expires/.test(file), file);
  } finally {
    await store.close();
  }
});

test('runs show a path as it was given, relative to its folder, not where it resolved', () => {
  assert.deepEqual(
    shownParams(
      { input: '/srv/data/sample.txt', url: 'https://host/m.gguf?sig=abc', epochs: 2 },
      { input: 'sample.txt', url: 'https://host/m.gguf?sig=abc', epochs: 2 },
    ),
    { input: 'sample.txt', url: 'https://host/m.gguf?…', epochs: 2 },
  );
  // Without what was given (the audit log), the resolved path is kept.
  assert.deepEqual(shownParams({ input: '/srv/data/sample.txt' }), {
    input: '/srv/data/sample.txt',
  });
});

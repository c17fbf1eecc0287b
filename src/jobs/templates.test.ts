import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { buildArgs } from './params.js';
import { describeTemplate, loadTemplates, prepareJobsFolders } from './templates.js';

const env = { PATH: dirname(process.execPath) };

function home(): string {
  const dir = mkdtempSync(join(tmpdir(), 'palisade-jobs-tpl-'));
  prepareJobsFolders(dir);
  return dir;
}

function withFile(dir: string, content: unknown): void {
  writeFileSync(
    join(dir, 'jobs.json'),
    typeof content === 'string' ? content : JSON.stringify(content),
    { mode: 0o600 },
  );
}

const finetune = {
  name: 'finetune',
  description: 'Fine-tune a LoRA',
  command: 'node',
  args: ['train.mjs', '--epochs', '{epochs}', '--mode', '{mode}', '{tag}', '--data', '{dataset}'],
  params: {
    epochs: { type: 'integer', min: 1, max: 100, default: 3 },
    mode: { type: 'enum', values: ['lora', 'full'], default: 'lora' },
    tag: { type: 'string', pattern: '[a-z0-9-]{1,32}', optional: true, flag: '--tag' },
    dataset: { type: 'path', folder: 'datasets' },
  },
  cwd: 'scripts',
  timeout: '2h',
  env: ['HF_TOKEN'],
};

test('with no jobs.json, the built-ins are offered and nothing is wrong', () => {
  const set = loadTemplates({ home: home(), env });
  assert.equal(set.error, null);
  assert.deepEqual(
    set.templates.map((t) => [t.name, t.builtin]),
    [
      ['model-download', true],
      ['script', true],
    ],
  );
});

test('a good jobs.json loads: bare commands found on PATH, folders, timeout, flags', () => {
  const dir = home();
  mkdirSync(join(dir, 'data'), { mode: 0o755 });
  withFile(dir, { folders: { datasets: 'data' }, templates: [finetune] });
  const set = loadTemplates({ home: dir, env });
  assert.equal(set.error, null);
  const template = set.templates.find((t) => t.name === 'finetune');
  assert.ok(template);
  assert.equal(template.builtin, false);
  assert.equal(template.command, process.execPath.replace(/\/[^/]+$/, '/node'));
  assert.equal(template.cwd, join(dir, 'jobs', 'scripts'));
  assert.equal(template.timeoutMs, 2 * 3_600_000);
  assert.deepEqual(template.env, ['HF_TOKEN']);
  assert.equal(set.folders.get('datasets'), join(dir, 'data'));
  // An absent optional value drops its element and its flag; present, the flag comes first.
  const values = { epochs: 3, mode: 'lora', dataset: '/d/a' };
  assert.deepEqual(buildArgs(template, values), [
    'train.mjs',
    '--epochs',
    '3',
    '--mode',
    'lora',
    '--data',
    '/d/a',
  ]);
  assert.deepEqual(buildArgs(template, { ...values, tag: 'x1' }).slice(4, 8), [
    'lora',
    '--tag',
    'x1',
    '--data',
  ]);
  const view = describeTemplate(template);
  assert.deepEqual(view.params[0], {
    name: 'epochs',
    type: 'integer',
    default: 3,
    min: 1,
    max: 100,
  });
  assert.deepEqual(view.params[2], {
    name: 'tag',
    type: 'string',
    optional: true,
    flag: '--tag',
    pattern: '[a-z0-9-]{1,32}',
    maxLength: 1024,
  });
  assert.ok(!JSON.stringify(view).includes('train.mjs'), 'the command line is not shown');
});

/** Loads a file holding `template` (and the datasets folder) and returns its error. */
function errorFor(template: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const dir = home();
  mkdirSync(join(dir, 'data'), { mode: 0o755 });
  withFile(dir, { folders: { datasets: 'data' }, templates: [template], ...extra });
  const set = loadTemplates({ home: dir, env });
  // Whatever is wrong, the built-ins stay and the file's templates go.
  assert.deepEqual(
    set.templates.map((t) => t.name),
    ['model-download', 'script'],
  );
  assert.ok(set.error, 'an error');
  return set.error;
}

test('a placeholder inside other text is refused, naming the fix', () => {
  const error = errorFor({ ...finetune, args: [...finetune.args, '--epochs={epochs}'] });
  assert.match(error, /puts a placeholder inside other text/);
  assert.match(error, /make "\{epochs\}" an element of its own/);
  assert.match(errorFor({ ...finetune, args: ['run {tag} now', ...finetune.args] }), /args\[0\]/);
});

test('jobs.json problems are named with their fix', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [
      { ...finetune, params: { ...finetune.params, dataset: { type: 'path', folder: 'nope' } } },
      /unknown folder "nope": add it under "folders"/,
    ],
    [{ ...finetune, name: 'Fine Tune' }, /name: must be 1-64 lower-case letters/],
    [{ ...finetune, name: 'script' }, /built-in template's name: pick another/],
    [{ ...finetune, command: 'no-such-program-qx' }, /not on the server's PATH/],
    [{ ...finetune, command: './train.sh' }, /give an absolute path/],
    [{ ...finetune, command: '/nonexistent/bin/x' }, /not an executable file/],
    [{ ...finetune, args: [...finetune.args, '{ghost}'] }, /add "ghost" under "params"/],
    [
      { ...finetune, params: { ...finetune.params, extra: { type: 'integer' } } },
      /extra: not used in args/,
    ],
    [{ ...finetune, timeout: 'forever' }, /timeout: "forever" is not a duration/],
    // Node would fire a longer timer at once.
    [{ ...finetune, timeout: '30d' }, /timeout: "30d" is longer than .* \(24d\): give 24d or less/],
    [{ ...finetune, timeout: '25d' }, /give 24d or less/],
    [
      {
        ...finetune,
        params: { ...finetune.params, tag: { type: 'string', pattern: '[a-z]+)|(?:.*' } },
      },
      /tag\.pattern: not a valid regular expression on its own/,
    ],
    [
      {
        ...finetune,
        params: { ...finetune.params, tag: { type: 'string', pattern: '.+', default: '-x' } },
      },
      /default starts with "-": set "allowLeadingDash": true/,
    ],
    [{ ...finetune, cwd: 'relative/dir' }, /neither a folder name from "folders" nor an absolute/],
    [{ ...finetune, env: ['PALISADE_SECRET'] }, /PALISADE_SECRET is refused/],
    [{ ...finetune, env: ['A B'] }, /environment variable name/],
    [
      { ...finetune, params: { ...finetune.params, epochs: { type: 'integer', min: 5, max: 1 } } },
      /min 5 is above max 1/,
    ],
    [
      {
        ...finetune,
        params: { ...finetune.params, epochs: { type: 'integer', max: 10, default: 11 } },
      },
      /default is outside/,
    ],
    [
      {
        ...finetune,
        params: { ...finetune.params, mode: { type: 'enum', values: ['a'], default: 'b' } },
      },
      /default is not one of values/,
    ],
    [
      { ...finetune, params: { ...finetune.params, tag: { type: 'string', pattern: '(' } } },
      /not a valid regular expression/,
    ],
    [{ ...finetune, params: { ...finetune.params, tag: { type: 'string' } } }, /pattern/],
    [{ ...finetune, shell: true }, /Unrecognized key/i],
    [
      {
        ...finetune,
        params: {
          ...finetune.params,
          tag: { type: 'string', pattern: 'x', optional: true, default: 'x' },
        },
      },
      /either "default" or "optional"/,
    ],
  ];
  for (const [template, expected] of cases) {
    assert.match(errorFor(template), expected, JSON.stringify(template).slice(0, 200));
  }
  assert.match(
    errorFor(finetune, { folders: { datasets: 'no-such-dir' } }),
    /folders\.datasets: .* is not a folder: create it/,
  );
});

test('a broken file is reported, never thrown: JSON errors, loose modes, duplicates', () => {
  const dir = home();
  withFile(dir, '{"templates": [');
  assert.match(loadTemplates({ home: dir, env }).error ?? '', /not valid JSON/);

  withFile(dir, { templates: [finetune], folders: { datasets: '.' } });
  chmodSync(join(dir, 'jobs.json'), 0o666);
  const loose = loadTemplates({ home: dir, env });
  assert.match(loose.error ?? '', /writable by other users .* chmod 600 jobs\.json/);
  assert.equal(loose.templates.length, 2);

  withFile(dir, { templates: [finetune, finetune], folders: { datasets: '.' } });
  chmodSync(join(dir, 'jobs.json'), 0o600);
  assert.match(loadTemplates({ home: dir, env }).error ?? '', /a second template named/);

  withFile(dir, { templates: 'none' });
  assert.match(loadTemplates({ home: dir, env }).error ?? '', /templates: /);
});

test('a "scripts" folder in jobs.json is the built-in script runner’s folder too', () => {
  const dir = home();
  mkdirSync(join(dir, 'mine'), { mode: 0o755 });
  withFile(dir, { folders: { scripts: 'mine' } });
  const set = loadTemplates({ home: dir, env });
  assert.equal(set.error, null);
  assert.equal(set.folders.get('scripts'), join(dir, 'mine'));
  assert.equal(set.templates.find((t) => t.name === 'script')?.cwd, join(dir, 'mine'));
});

test('a 24d timeout loads; a pattern is applied whole and with the u flag', () => {
  const dir = home();
  mkdirSync(join(dir, 'data'), { mode: 0o755 });
  const tag = { type: 'string', pattern: '\\p{L}+', optional: true, flag: '--tag' };
  withFile(dir, {
    folders: { datasets: 'data' },
    templates: [{ ...finetune, timeout: '24d', params: { ...finetune.params, tag } }],
  });
  const set = loadTemplates({ home: dir, env });
  assert.equal(set.error, null);
  const template = set.templates.find((t) => t.name === 'finetune');
  assert.equal(template?.timeoutMs, 24 * 86_400_000);
  const spec = template?.params.find((p) => p.name === 'tag');
  assert.ok(spec?.type === 'string');
  assert.ok(spec.regex.test('été'));
  assert.ok(!spec.regex.test('été!'));
});

test('a named folder writable by group or others is refused: chmod go-w', () => {
  const dir = home();
  mkdirSync(join(dir, 'data'), { mode: 0o755 });
  chmodSync(join(dir, 'data'), 0o775);
  withFile(dir, { folders: { datasets: 'data' }, templates: [finetune] });
  const set = loadTemplates({ home: dir, env });
  assert.match(
    set.error ?? '',
    /folders\.datasets: .*data is writable by other users \(mode 775\).*chmod go-w .*data/,
  );
  assert.ok(!set.templates.some((t) => t.name === 'finetune'));
  chmodSync(join(dir, 'data'), 0o1777);
  assert.match(loadTemplates({ home: dir, env }).error ?? '', /chmod go-w/);
  chmodSync(join(dir, 'data'), 0o755);
  assert.equal(loadTemplates({ home: dir, env }).error, null);
});

test('a string parameter may allow a leading dash; the templates list says so', () => {
  const dir = home();
  mkdirSync(join(dir, 'data'), { mode: 0o755 });
  const tag = { type: 'string', pattern: '-?[a-z]+', optional: true, allowLeadingDash: true };
  withFile(dir, {
    folders: { datasets: 'data' },
    templates: [{ ...finetune, params: { ...finetune.params, tag } }],
  });
  const set = loadTemplates({ home: dir, env });
  assert.equal(set.error, null);
  const template = set.templates.find((t) => t.name === 'finetune');
  assert.ok(template);
  assert.equal(describeTemplate(template).params[2]?.allowLeadingDash, true);
});

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { builtinTemplates, cliInvocation } from './builtins.js';
import { buildArgs, ParamsError, validateParams } from './params.js';
import type { JobTemplate } from './templates.js';

const root = realpathSync(mkdtempSync(join(tmpdir(), 'palisade-jobs-params-')));
const data = join(root, 'data');
mkdirSync(join(data, 'sets'), { recursive: true });
writeFileSync(join(data, 'sets', 'a.jsonl'), '{}\n');
writeFileSync(join(root, 'secret.txt'), 'outside\n');
symlinkSync(join(root, 'secret.txt'), join(data, 'escape'));
symlinkSync(root, join(data, 'up'));
symlinkSync(join(data, 'sets', 'a.jsonl'), join(data, 'inside-link'));
const folders = new Map([['data', data]]);

const template: JobTemplate = {
  name: 'test',
  description: '',
  builtin: false,
  command: process.execPath,
  args: [{ param: 'tag' }, { param: 'text' }, { param: 'n' }, { param: 'mode' }, { param: 'file' }],
  params: [
    {
      name: 'tag',
      type: 'string',
      pattern: '^[a-z0-9-]{1,32}$',
      regex: /^(?:^[a-z0-9-]{1,32}$)$/,
      maxLength: 200,
      optional: true,
      flag: '--tag',
    },
    // A pattern that lets anything through: the value still reaches the process as one element.
    {
      name: 'text',
      type: 'string',
      pattern: '.*',
      regex: /^(?:[\s\S]*)$/,
      maxLength: 100,
      default: 'x',
    },
    { name: 'n', type: 'integer', min: 1, max: 100, default: 3 },
    { name: 'mode', type: 'enum', values: ['lora', 'full'], default: 'lora' },
    { name: 'file', type: 'path', folder: 'data' },
  ],
  cwd: root,
  timeoutMs: 1000,
  env: [],
};

const good = { file: 'sets/a.jsonl' };

function problems(input: Record<string, unknown>): Array<{ param: string; message: string }> {
  try {
    validateParams(template, input, folders);
  } catch (error) {
    assert.ok(error instanceof ParamsError, String(error));
    return error.details;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

function problemOf(param: string, value: unknown): string {
  const found = problems({ ...good, [param]: value });
  assert.equal(found.length, 1, JSON.stringify(found));
  assert.equal(found[0]?.param, param);
  return found[0]?.message as string;
}

test('defaults are filled in, a good path becomes its resolved absolute path', () => {
  assert.deepEqual(validateParams(template, good, folders), {
    text: 'x',
    n: 3,
    mode: 'lora',
    file: join(data, 'sets', 'a.jsonl'),
  });
  // A symlink that stays inside the folder is followed to its target.
  assert.equal(
    validateParams(template, { file: 'inside-link' }, folders).file,
    join(data, 'sets', 'a.jsonl'),
  );
  assert.equal(
    validateParams(template, { file: './sets//a.jsonl' }, folders).file,
    join(data, 'sets', 'a.jsonl'),
  );
  // Decimal text (from the CLI or a form) is an integer too; an empty optional is absent.
  assert.deepEqual(validateParams(template, { ...good, n: '42', tag: '' }, folders).n, 42);
});

test('strings: the pattern must match the whole value; shell text is refused by it', () => {
  for (const hostile of [
    '; rm -rf /',
    '$(id)',
    '`id`',
    'a | b',
    'a && b',
    'a\nb',
    'ok\0',
    'x'.repeat(33),
    'ok; id',
  ]) {
    const message = problemOf('tag', hostile);
    assert.match(message, /does not match the pattern|NUL/, hostile);
  }
  assert.match(problemOf('tag', 42), /must be a string/);
  assert.match(problemOf('tag', ['a']), /must be a string/);
  assert.match(problemOf('text', 'x'.repeat(101)), /longer than 100/);
  assert.match(problemOf('text', 'a\0b'), /NUL/);
  assert.match(problemOf('text', 'half \ud800 pair'), /not valid Unicode/);
});

test('strings the pattern allows stay one literal argument each', () => {
  const text = '; rm -rf / $(id) `id` | a && b\nnext';
  const values = validateParams(template, { ...good, text, tag: 'run-1' }, folders);
  const args = buildArgs(template, values);
  assert.deepEqual(args, ['--tag', 'run-1', text, '3', 'lora', join(data, 'sets', 'a.jsonl')]);
});

test('integers: only whole decimal numbers within the bounds', () => {
  for (const value of ['1e3', '0x10', '1.5', 1.5, ' 3', '+3', '3 ', 'three', true, {}, '١٢']) {
    assert.match(problemOf('n', value), /whole number/, JSON.stringify(value));
  }
  for (const value of [0, 101, -1, '101', 1e21, '99999999999999999', Number.MAX_SAFE_INTEGER + 2]) {
    assert.match(problemOf('n', value), /from 1 to 100|whole number/, String(value));
  }
  assert.equal(validateParams(template, { ...good, n: 100 }, folders).n, 100);
});

test('enums: only the listed values, exactly', () => {
  for (const value of ['LORA', 'lora ', 'other', 1, ['lora']]) {
    assert.match(problemOf('mode', value), /must be one of: lora, full/, String(value));
  }
  assert.equal(validateParams(template, { ...good, mode: 'full' }, folders).mode, 'full');
});

test('paths: no escape by .., absolute paths, symlinks or NUL; the file must exist', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['../secret.txt', /must not contain "\.\."/],
    ['sets/../../secret.txt', /must not contain "\.\."/],
    ['a/../../x', /must not contain "\.\."/],
    [join(root, 'secret.txt'), /not an absolute path/],
    ['/etc/passwd', /not an absolute path/],
    ['escape', /leads outside the folder "data"/],
    ['up/secret.txt', /leads outside the folder "data"/],
    ['sets/a.jsonl\0', /NUL/],
    ['missing.jsonl', /does not exist in the folder "data"/],
    ['.', /names the folder "data" itself/],
    ['', /must be a path/],
    [7, /must be a path/],
  ];
  for (const [value, expected] of cases) {
    assert.match(problemOf('file', value), expected, String(value));
  }
});

test('unknown names are refused, required ones must be there, every problem is listed', () => {
  const found = problems({ nope: 1, __proto__x: 2, n: 'x' });
  assert.deepEqual(
    found.map((p) => p.param),
    ['nope', '__proto__x', 'n', 'file'],
  );
  assert.match(
    found[0]?.message ?? '',
    /is not a parameter of "test" \(it takes: tag, text, n, mode, file\)/,
  );
  assert.equal(found[3]?.message, 'is required');
  // JSON's own "__proto__" key arrives as an own property; it is just an unknown name.
  const parsed = JSON.parse('{"__proto__": {"n": 1}, "file": "sets/a.jsonl"}') as Record<
    string,
    unknown
  >;
  assert.deepEqual(
    problems(parsed).map((p) => p.param),
    ['__proto__'],
  );
});

test('the built-in model download runs this CLI’s `models pull` with the same Node', () => {
  const home = '/srv/palisade-home';
  const cli = cliInvocation(['--import', 'tsx', '--test-reporter=spec', '--enable-source-maps']);
  assert.equal(cli.command, process.execPath);
  assert.equal(cli.prefix[0], '--import');
  assert.match(cli.prefix[1] as string, /^file:\/\/.*tsx/, 'the loader is absolute');
  assert.match(cli.prefix[2] as string, /\/src\/cli\/index\.ts$/, 'the source entry under tsx');
  assert.equal(cli.prefix.length, 3, 'only loader flags are kept');

  const [download] = builtinTemplates(home, cli);
  assert.ok(download);
  assert.equal(download.name, 'model-download');
  assert.equal(download.command, process.execPath);
  const url = 'https://example.com/models/tiny.gguf?x=1';
  const sha = 'ab'.repeat(32);
  const values = validateParams(download, { url, sha256: sha }, new Map());
  assert.deepEqual(buildArgs(download, values), [
    ...cli.prefix,
    '--home',
    home,
    'models',
    'pull',
    url,
    '--sha256',
    sha,
  ]);
  assert.deepEqual(
    buildArgs(download, validateParams(download, { url: 'hf:o/r/f.gguf' }, new Map())).slice(-3),
    ['models', 'pull', 'hf:o/r/f.gguf'],
  );
  for (const bad of [
    'file:///etc/passwd',
    '--help',
    'https://x/a b',
    'ftp://x',
    `https://x/${'a'.repeat(2048)}`,
  ]) {
    assert.throws(() => validateParams(download, { url: bad }, new Map()), ParamsError, bad);
  }
  assert.throws(() => validateParams(download, { url, sha256: 'abc' }, new Map()), ParamsError);

  // Built (dist/), the entry is the compiled CLI and no loader is needed.
  const built = cliInvocation([], 'file:///opt/palisade/dist/jobs/builtins.js');
  assert.deepEqual(built.prefix, ['/opt/palisade/dist/cli/index.js']);
  const inline = cliInvocation(['--import=tsx'], 'file:///opt/p/src/jobs/builtins.ts');
  assert.match(inline.prefix[1] as string, /^file:.*tsx/);
  assert.equal(inline.prefix[2], '/opt/p/src/cli/index.ts');
});

test('the built-in script runner takes a script from its folder and --epochs 1..1000', () => {
  const scripts = join(root, 'scripts');
  mkdirSync(scripts);
  writeFileSync(join(scripts, 'demo.mjs'), '');
  const script = builtinTemplates(root, cliInvocation([]), scripts)[1] as JobTemplate;
  const map = new Map([['scripts', scripts]]);
  assert.deepEqual(buildArgs(script, validateParams(script, { script: 'demo.mjs' }, map)), [
    join(scripts, 'demo.mjs'),
    '--epochs',
    '3',
  ]);
  assert.throws(
    () => validateParams(script, { script: 'demo.mjs', epochs: 1001 }, map),
    ParamsError,
  );
  assert.throws(() => validateParams(script, { script: '../params' }, map), ParamsError);
  assert.equal(script.command, process.execPath);
  assert.equal(script.cwd, scripts);
});

test('a string starting with "-" is refused unless the parameter allows it', () => {
  for (const value of ['-rf', '--output=/etc/passwd', '-']) {
    assert.match(problemOf('text', value), /must not start with "-"/, value);
  }
  // Inside the value a dash is only text.
  assert.equal(validateParams(template, { ...good, text: 'a --b' }, folders).text, 'a --b');
  const dashed: JobTemplate = {
    ...template,
    params: template.params.map((spec) =>
      spec.name === 'text' && spec.type === 'string' ? { ...spec, allowLeadingDash: true } : spec,
    ),
  };
  assert.equal(validateParams(dashed, { ...good, text: '--x' }, folders).text, '--x');
});

test('integers and enums are unaffected by the leading-dash rule', () => {
  const signed: JobTemplate = {
    ...template,
    params: template.params.map((spec) =>
      spec.name === 'n' && spec.type === 'integer'
        ? { ...spec, min: -10 }
        : spec.name === 'mode' && spec.type === 'enum'
          ? { ...spec, values: ['-v', 'lora'] }
          : spec,
    ),
  };
  const values = validateParams(signed, { ...good, n: '-3', mode: '-v' }, folders);
  assert.equal(values.n, -3);
  assert.equal(values.mode, '-v');
});

test('the model download gets HF_TOKEN and the Hugging Face endpoint variables', () => {
  const [download] = builtinTemplates('/srv/h', cliInvocation([]));
  assert.deepEqual(download?.env, ['HF_TOKEN', 'HF_ENDPOINT', 'PALISADE_HF_ENDPOINT']);
});

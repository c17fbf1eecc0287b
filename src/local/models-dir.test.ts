import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tinyGguf } from '../../test/fixtures/gguf.js';
import {
  ensureModelsDir,
  listModels,
  ModelBusyError,
  modelName,
  ModelNameError,
  ModelNotFoundError,
  removeModel,
  resolveModelPath,
} from './models-dir.js';

function newHome(): string {
  return mkdtempSync(join(tmpdir(), 'palisade-models-'));
}

describe('model names', () => {
  test('a file name or a bare name gives the name without .gguf', () => {
    assert.equal(modelName('qwen2.5-0.5b-instruct-q4_k_m.gguf'), 'qwen2.5-0.5b-instruct-q4_k_m');
    assert.equal(modelName('tiny'), 'tiny');
    assert.equal(modelName('Llama-3.2-1B+Q8_0'), 'Llama-3.2-1B+Q8_0');
  });

  test('names that could leave the folder, or mean something else, are refused', () => {
    for (const hostile of [
      '',
      '.gguf',
      '..',
      '../x.gguf',
      '../../etc/passwd',
      'a/b.gguf',
      'a\\b.gguf',
      '/etc/passwd',
      'x\0.gguf',
      '.hidden.gguf',
      '-rf.gguf',
      'a..b',
      '%2e%2e%2fx.gguf',
      'sp ace.gguf',
      'new\nline.gguf',
      'x'.repeat(201),
    ]) {
      assert.throws(() => modelName(hostile), ModelNameError, JSON.stringify(hostile));
    }
  });
});

describe('the models folder', () => {
  test('is created with mode 0700, and tightened if it was looser', () => {
    const home = newHome();
    const dir = ensureModelsDir(home);
    assert.equal(dir, join(home, 'models'));
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const loose = newHome();
    mkdirSync(join(loose, 'models'), { mode: 0o777 });
    ensureModelsDir(loose);
    assert.equal(statSync(join(loose, 'models')).mode & 0o777, 0o700);
  });

  test('resolveModelPath stays inside the folder and refuses symlinks leading out', async () => {
    const dir = ensureModelsDir(newHome());
    assert.equal(await resolveModelPath(dir, 'tiny'), join(dir, 'tiny.gguf'));
    assert.equal(await resolveModelPath(dir, 'tiny.gguf'), join(dir, 'tiny.gguf'));
    await assert.rejects(resolveModelPath(dir, '../tiny'), ModelNameError);

    const outside = join(newHome(), 'secret.gguf');
    writeFileSync(outside, 'not yours');
    symlinkSync(outside, join(dir, 'escape.gguf'));
    await assert.rejects(resolveModelPath(dir, 'escape'), /symlink that leads outside/);
    symlinkSync(join(newHome(), 'nothing-here'), join(dir, 'dangling.gguf'));
    await assert.rejects(resolveModelPath(dir, 'dangling'), /symlink/);
    mkdirSync(join(dir, 'folder.gguf'));
    await assert.rejects(resolveModelPath(dir, 'folder'), /not a regular file/);

    // A link to another model in the same folder is fine.
    writeFileSync(join(dir, 'real.gguf'), tinyGguf());
    symlinkSync(join(dir, 'real.gguf'), join(dir, 'alias.gguf'));
    assert.equal(await resolveModelPath(dir, 'alias'), join(dir, 'alias.gguf'));
  });

  test('listModels shows valid models with header facts, invalid files and partial downloads', async () => {
    const dir = ensureModelsDir(newHome());
    assert.deepEqual(await listModels(join(dir, 'missing')), []);
    const model = tinyGguf({ contextLength: 256 });
    writeFileSync(join(dir, 'tiny.gguf'), model);
    utimesSync(
      join(dir, 'tiny.gguf'),
      new Date('2024-01-02T03:04:05Z'),
      new Date('2024-01-02T03:04:05Z'),
    );
    writeFileSync(join(dir, 'broken.gguf'), '<html>404</html>'.repeat(10));
    writeFileSync(join(dir, 'half.gguf.part'), model.subarray(0, 1000));
    writeFileSync(
      join(dir, 'half.gguf.part.json'),
      JSON.stringify({ url: 'http://example.test/half.gguf', total: model.length }),
    );
    writeFileSync(join(dir, 'notes.txt'), 'ignored');
    const outside = join(newHome(), 'outside.gguf');
    writeFileSync(outside, model);
    symlinkSync(outside, join(dir, 'escape.gguf'));

    const listed = await listModels(dir);
    assert.deepEqual(
      listed.map((m) => [m.name, m.status]),
      [
        ['broken', 'invalid'],
        ['escape', 'invalid'],
        ['half', 'partial'],
        ['tiny', 'ok'],
      ],
    );
    const [broken, escape, half, tiny] = listed;
    assert.match(broken?.error ?? '', /GGUF/);
    assert.match(escape?.error ?? '', /outside the models folder/);
    assert.equal(half?.size, 1000);
    assert.equal(half?.total, model.length);
    assert.equal(tiny?.size, model.length);
    assert.equal(tiny?.architecture, 'llama');
    assert.equal(tiny?.contextLength, 256);
    assert.equal(tiny?.modified.toISOString(), '2024-01-02T03:04:05.000Z');
  });

  test('removeModel deletes the model and its partial download, and nothing else', async () => {
    const dir = ensureModelsDir(newHome());
    writeFileSync(join(dir, 'tiny.gguf'), tinyGguf());
    writeFileSync(join(dir, 'tiny.gguf.part'), 'x');
    writeFileSync(join(dir, 'tiny.gguf.part.json'), '{}');
    writeFileSync(join(dir, 'other.gguf'), tinyGguf());
    assert.deepEqual(await removeModel(dir, 'tiny'), [
      'tiny.gguf',
      'tiny.gguf.part',
      'tiny.gguf.part.json',
    ]);
    assert.ok(!existsSync(join(dir, 'tiny.gguf')));
    assert.ok(existsSync(join(dir, 'other.gguf')));

    writeFileSync(join(dir, 'half.gguf.part'), 'x');
    assert.deepEqual(await removeModel(dir, 'half.gguf'), ['half.gguf.part']);

    await assert.rejects(removeModel(dir, 'tiny'), ModelNotFoundError);
    await assert.rejects(removeModel(dir, '../other'), ModelNameError);
    await assert.rejects(removeModel(dir, '/etc/passwd'), ModelNameError);
  });

  test('a partial download with a running pull is shown as such and cannot be removed', async () => {
    const dir = ensureModelsDir(newHome());
    writeFileSync(join(dir, 'busy.gguf.part'), 'x');
    writeFileSync(join(dir, 'busy.gguf.part.lock'), `${process.pid}\n`);
    const [busy] = await listModels(dir);
    assert.equal(busy?.status, 'partial');
    assert.equal(busy?.pullPid, process.pid);
    await assert.rejects(removeModel(dir, 'busy'), ModelBusyError);
    assert.ok(existsSync(join(dir, 'busy.gguf.part')));
    // A lock whose process is gone is stale: remove takes it with the rest.
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(dir, 'busy.gguf.part.lock'), `${gone}\n`);
    assert.equal((await listModels(dir))[0]?.pullPid, undefined);
    assert.deepEqual(await removeModel(dir, 'busy'), ['busy.gguf.part', 'busy.gguf.part.lock']);
  });

  test('removeModel refuses a symlink leading out and leaves its target alone', async () => {
    const dir = ensureModelsDir(newHome());
    const outside = join(newHome(), 'keep.gguf');
    writeFileSync(outside, 'precious');
    symlinkSync(outside, join(dir, 'link.gguf'));
    await assert.rejects(removeModel(dir, 'link'), /outside the models folder/);
    assert.equal(readFileSync(outside, 'utf8'), 'precious');
  });

  test('removeModel refuses a leftover that is not a regular file, and then removes nothing', async () => {
    const dir = ensureModelsDir(newHome());
    writeFileSync(join(dir, 'tiny.gguf'), tinyGguf());
    mkdirSync(join(dir, 'tiny.gguf.part'));
    await assert.rejects(
      removeModel(dir, 'tiny'),
      (error: unknown) =>
        error instanceof ModelNameError &&
        /tiny\.gguf\.part is not a regular file; nothing was removed/.test(error.message),
    );
    assert.ok(existsSync(join(dir, 'tiny.gguf')), 'the model is still there');
    assert.ok(existsSync(join(dir, 'tiny.gguf.part')));

    mkdirSync(join(dir, 'folder.gguf'));
    await assert.rejects(removeModel(dir, 'folder'), ModelNameError);
    assert.ok(existsSync(join(dir, 'folder.gguf')));
  });
});

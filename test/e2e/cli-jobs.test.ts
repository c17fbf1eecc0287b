import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { once } from 'node:events';
import {
  runCli,
  spawnCli,
  startPalisade,
  tempHome,
  waitForOutput,
  type TestPalisade,
} from '../support/palisade.js';
import { eventually, withStore } from '../support/web.js';
import { writeJobFixtures } from '../fixtures/jobs.js';

/*
 * `palisade jobs ...` as its own process beside a live server (and without one): runs are
 * queued through the store and started by the server's runner; cancel asks it to stop one.
 */

interface Run {
  id: string;
  template: string;
  status: string;
  reason: string | null;
  created_by: string;
}

describe('palisade jobs', () => {
  let home: string;
  let palisade: TestPalisade | undefined;
  const cli = (...args: string[]) => runCli(['jobs', ...args], { env: { PALISADE_HOME: home } });

  async function statusOf(id: string): Promise<Run> {
    return withStore({ home }, (store) => {
      const row = store.sqlite
        .prepare('select id, template, status, reason, created_by from job_run where id = ?')
        .get(id) as Run | undefined;
      assert.ok(row, `a run ${id}`);
      return row;
    });
  }

  before(async () => {
    home = writeJobFixtures(tempHome());
    copyFileSync(
      join(import.meta.dirname, '..', '..', 'examples', 'jobs', 'finetune-demo.mjs'),
      join(home, 'jobs', 'scripts', 'finetune-demo.mjs'),
    );
    palisade = await startPalisade({
      home,
      env: { PALISADE_MAX_JOBS: '2', PALISADE_JOB_KILL_GRACE: '300ms' },
    });
  });
  after(async () => {
    await palisade?.close();
  });

  test('run prints the id; the server runs it; logs --follow prints it to its end', async () => {
    const text = '$(id); rm -rf / `id` | x';
    const started = await cli('run', 'argv', '--param', `text=${text}`);
    assert.equal(started.code, 0, started.stderr);
    const id = started.stdout.trim();
    assert.match(id, /^run_[0-9a-f]{20}$/);
    assert.match(started.stderr, /the server starts it shortly/);
    const logs = await cli('logs', id, '--follow');
    assert.equal(logs.code, 0, logs.stderr);
    assert.deepEqual(JSON.parse(logs.stdout.split('\n')[0] as string), [text]);
    assert.match(logs.stderr, new RegExp(`${id} succeeded`));
    assert.equal((await statusOf(id)).created_by, 'cli');
  });

  test('run --follow streams the example fine-tune; list and templates show the rest', async () => {
    const run = await cli(
      'run',
      'script',
      '--param',
      'script=finetune-demo.mjs',
      '--param',
      'epochs=1',
      '--follow',
    );
    assert.equal(run.code, 0, run.stderr);
    const [id, ...rest] = run.stdout.split('\n');
    assert.match(id ?? '', /^run_/);
    assert.match(rest.join('\n'), /progress: 100%/);
    const list = await cli('list', '--json', '--limit', '5');
    assert.equal(list.code, 0, list.stderr);
    const runs = JSON.parse(list.stdout) as Run[];
    assert.equal(runs[0]?.id, id, 'newest first');
    assert.equal(runs[0]?.status, 'succeeded');
    const templates = await cli('templates', '--json');
    assert.equal(templates.code, 0, templates.stderr);
    const body = JSON.parse(templates.stdout) as {
      templates: Array<{ name: string }>;
      error: null;
    };
    assert.equal(body.error, null);
    assert.ok(body.templates.some((t) => t.name === 'model-download'));
    const table = await cli('list');
    assert.match(table.stdout, /^ID\s+TEMPLATE\s+STATUS/);
  });

  test('bad parameters: exit 2, each problem named, nothing stored', async () => {
    const before = await withStore({ home }, (store) =>
      store.sqlite.prepare('select count(*) as n from job_run').get(),
    );
    const bad = await cli(
      'run',
      'script',
      '--param',
      'script=../../palisade.db',
      '--param',
      'epochs=1e3',
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /script: must not contain "\.\."/);
    assert.match(bad.stderr, /epochs: must be a whole number/);
    const unknown = await cli('run', 'no-such-template');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no template "no-such-template"/);
    const malformed = await cli('run', 'argv', '--param', 'no equals sign');
    assert.equal(malformed.code, 2);
    const after = await withStore({ home }, (store) =>
      store.sqlite.prepare('select count(*) as n from job_run').get(),
    );
    assert.deepEqual(after, before);
    const missing = await cli('logs', 'run_0123456789abcdef0123');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no run "run_0123456789abcdef0123"/);
  });

  test('cancel asks the server to stop a running job; a second cancel is refused', async () => {
    const started = await cli('run', 'stubborn');
    const id = started.stdout.trim();
    await eventually(async () => ((await statusOf(id)).status === 'running' ? true : undefined));
    const cancelled = await cli('cancel', id);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, /asked the server to stop/);
    const done = await eventually(async () => {
      const run = await statusOf(id);
      return run.status === 'running' ? undefined : run;
    });
    assert.equal(done.status, 'cancelled');
    assert.equal(done.reason, 'cancelled by cli');
    const again = await cli('cancel', id);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already finished \(cancelled\)/);
  });

  test('without a server, run says it waits for `palisade serve`; cancel of it is at once', async () => {
    await palisade?.close();
    palisade = undefined;
    const queued = await cli('run', 'argv', '--param', 'text=later');
    assert.equal(queued.code, 0, queued.stderr);
    assert.match(queued.stderr, /no server is running: it starts when `palisade serve` runs/);
    const id = queued.stdout.trim();
    const other = (await cli('run', 'argv', '--param', 'text=kept')).stdout.trim();
    const cancelled = await cli('cancel', id);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, /cancelled .* \(it had not started\)/);
    assert.equal((await statusOf(id)).status, 'cancelled');
    // The next server starts what is still queued.
    palisade = await startPalisade({ home, env: { PALISADE_JOB_KILL_GRACE: '300ms' } });
    const done = await eventually(async () => {
      const run = await statusOf(other);
      return run.status === 'succeeded' ? run : undefined;
    });
    assert.equal(done.status, 'succeeded');
    assert.equal((await statusOf(id)).status, 'cancelled');
  });

  test('run --follow without a server says once that none is running', async () => {
    await palisade?.close();
    palisade = undefined;
    const child = spawnCli(['jobs', 'run', 'argv', '--param', 'text=waits', '--follow'], {
      PALISADE_HOME: home,
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, 'exit');
    child.stdin?.end();
    await waitForOutput(child, /no server is running/);
    const id = (await eventually(() => /run_[0-9a-f]{20}/.exec(stdout) ?? undefined))[0];
    // The follow loop's first look comes straight after the notice (no await between).
    const cancelled = await cli('cancel', id);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    const [code] = await exited;
    assert.equal(code, 1, 'the run did not succeed');
    assert.equal(stderr.split('no server is running').length - 1, 1, stderr);
    assert.match(stderr, new RegExp(`${id} cancelled: cancelled by cli`));
  });
});

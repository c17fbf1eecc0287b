import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { writeJobFixtures } from '../../test/fixtures/jobs.js';
import { createAuditLog, listAuditEntries } from '../audit/index.js';
import { isoNow, openStore, type Store } from '../store/index.js';
import { livingGroupMembers, processExists, processStart, signalGroup } from './process-group.js';
import { createJobRunner, type JobRunner, type RunnerOptions } from './runner.js';
import { queueRun, requestCancel, type JobRun } from './runs.js';
import { loadTemplates } from './templates.js';

const silent = pino({ level: 'silent' });

async function setup(extra: Partial<RunnerOptions> = {}) {
  const home = writeJobFixtures();
  const store = await openStore(home);
  const audit = createAuditLog(store, home);
  const runner = createJobRunner({
    home,
    store,
    audit,
    logger: silent,
    maxJobs: 2,
    killGraceMs: 200,
    pollMs: 20,
    env: { PATH: process.env.PATH, HOME: '/home/test', JOBS_TEST_ALLOWED: 'yes', SECRET_X: 'hush' },
    ...extra,
  });
  runner.start();
  return {
    home,
    store,
    audit,
    runner,
    async close() {
      await runner.close();
      await store.close();
    },
  };
}

async function until<T>(probe: () => T | undefined): Promise<T> {
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function finished(runner: JobRunner, id: string): Promise<JobRun> {
  return until(() => {
    const run = runner.get(id);
    return run && ['succeeded', 'failed', 'cancelled'].includes(run.status) ? run : undefined;
  });
}

function logOf(runner: JobRunner, id: string): string {
  try {
    return readFileSync(runner.logFile(id), 'utf8');
  } catch {
    return '';
  }
}

const alice = { username: 'alice' };

test('a run goes queued -> running -> succeeded, its log 0600, with audit entries', async () => {
  const t = await setup();
  try {
    const queued = t.runner.submit({ template: 'argv', params: { text: 'hello' } }, alice);
    assert.match(queued.id, /^run_[0-9a-f]{20}$/);
    assert.equal(queued.created_by, 'alice');
    const run = await finished(t.runner, queued.id);
    assert.equal(run.status, 'succeeded', JSON.stringify(run));
    assert.equal(run.exit_code, 0);
    assert.equal(run.reason, null);
    assert.ok(run.started_at && run.finished_at);
    assert.equal(statSync(t.runner.logFile(run.id)).mode & 0o777, 0o600);
    assert.equal(run.log_bytes, statSync(t.runner.logFile(run.id)).size);
    assert.match(logOf(t.runner, run.id), /^\["hello"\]\n\[palisade\] exited with code 0\n$/);
    const entries = listAuditEntries(t.store, { limit: 10 }).reverse();
    assert.deepEqual(
      entries.map((e) => [e.action, e.actor, e.target]),
      [
        ['job.started', 'user:alice', run.id],
        ['job.finished', 'system', run.id],
      ],
    );
    assert.equal(entries[0]?.details?.template, 'argv');
    // The validated values, as `name=value` (the optional tag was not given).
    assert.deepEqual(entries[0]?.details?.params, ['text=hello']);
    assert.deepEqual(entries[1]?.details?.params, ['text=hello']);
    assert.equal(entries[1]?.details?.status, 'succeeded');
    assert.equal(entries[1]?.details?.user, 'alice');
  } finally {
    await t.close();
  }
});

test('hostile text the pattern allows reaches the process as one literal element', async () => {
  const t = await setup();
  try {
    const text = '; rm -rf / $(id) `id` | cat && echo pwned\nnext line \'"\\ *';
    const run = t.runner.submit({ template: 'argv', params: { text, tag: 'a-1' } }, alice);
    await finished(t.runner, run.id);
    const line = logOf(t.runner, run.id).split('\n')[0] as string;
    assert.deepEqual(JSON.parse(line), [text, '--tag', 'a-1']);
    assert.throws(
      () => t.runner.submit({ template: 'argv', params: { text: 'a\0b' } }, alice),
      /NUL/,
    );
  } finally {
    await t.close();
  }
});

test('the environment is exactly the allowlist: PATH, HOME, LANG, PALISADE_JOB_ID and listed names', async () => {
  const t = await setup();
  try {
    const run = t.runner.submit({ template: 'env', params: {} }, alice);
    await finished(t.runner, run.id);
    const env = JSON.parse(logOf(t.runner, run.id).split('\n')[0] as string) as Record<
      string,
      string
    >;
    assert.equal(env.JOBS_TEST_ALLOWED, 'yes');
    assert.equal(env.PALISADE_JOB_ID, run.id);
    assert.equal(env.HOME, '/home/test');
    assert.equal(env.SECRET_X, undefined, 'not allowlisted: not passed');
    assert.equal(env.JOBS_TEST_UNSET, undefined, 'listed but unset: absent');
    assert.deepEqual(
      Object.keys(env)
        .filter((k) => !['PATH', 'HOME', 'JOBS_TEST_ALLOWED', 'PALISADE_JOB_ID'].includes(k))
        // Node and the C library may add a few of their own to what they show.
        .filter((k) => !/^(LC_|_$|PWD$|SHLVL$|OLDPWD$)/.test(k)),
      [],
    );
    const audit = readFileSync(join(t.home, 'audit.jsonl'), 'utf8');
    assert.ok(!audit.includes('hush') && !logOf(t.runner, run.id).includes('hush'));
  } finally {
    await t.close();
  }
});

test('a timeout ends the run failed with "timed out after 1s"', async () => {
  const t = await setup();
  try {
    const run = t.runner.submit({ template: 'sleep', params: {} }, alice);
    const done = await finished(t.runner, run.id);
    assert.equal(done.status, 'failed');
    assert.equal(done.reason, 'timed out after 1s');
    assert.equal(done.exit_code, 143);
    assert.match(logOf(t.runner, run.id), /timed out after 1s: sending SIGTERM\ngot SIGTERM/);
  } finally {
    await t.close();
  }
});

test('cancel: SIGTERM, then SIGKILL after the grace for a job that ignores it', async () => {
  const t = await setup();
  try {
    const run = t.runner.submit({ template: 'stubborn', params: {} }, alice);
    await until(() => (logOf(t.runner, run.id).includes('started') ? true : undefined));
    const cancelling = t.runner.cancel(run.id, alice);
    assert.equal(cancelling.status, 'running', 'still running until it exits');
    const done = await finished(t.runner, run.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.reason, 'cancelled by alice');
    assert.equal(done.signal, 'SIGKILL');
    assert.equal(done.exit_code, null);
    const log = logOf(t.runner, run.id);
    assert.match(log, /cancelled by alice: sending SIGTERM\nignoring SIGTERM\n/);
    assert.match(log, /after SIGTERM: sending SIGKILL/);
    assert.throws(() => t.runner.cancel(run.id, alice), /already finished \(cancelled\)/);
    const actions = listAuditEntries(t.store, { limit: 10 }).map((e) => e.action);
    assert.deepEqual(actions, ['job.finished', 'job.cancelled', 'job.started']);
  } finally {
    await t.close();
  }
});

test('concurrency: with maxJobs 1 the second run waits queued; a queued cancel is at once', async () => {
  const t = await setup({ maxJobs: 1 });
  try {
    const flag = join(t.home, 'go');
    const first = t.runner.submit({ template: 'wait-file', params: { file: flag } }, alice);
    const second = t.runner.submit({ template: 'argv', params: { text: 'two' } }, alice);
    const third = t.runner.submit({ template: 'argv', params: { text: 'three' } }, alice);
    await until(() => (logOf(t.runner, first.id).includes('waiting') ? true : undefined));
    assert.equal(t.runner.activeCount(), 1);
    assert.equal(t.runner.get(second.id)?.status, 'queued');
    const cancelled = t.runner.cancel(third.id, 'cli');
    assert.equal(cancelled.status, 'cancelled');
    assert.equal(cancelled.reason, 'cancelled by cli');
    assert.equal(cancelled.started_at, null);
    writeFileSync(flag, '');
    assert.equal((await finished(t.runner, first.id)).status, 'succeeded');
    assert.equal((await finished(t.runner, second.id)).status, 'succeeded');
    assert.equal(t.runner.get(third.id)?.status, 'cancelled');
    assert.equal(t.runner.activeCount(), 0);
  } finally {
    await t.close();
  }
});

test('progress lines set the progress; a failing job has its exit code as reason', async () => {
  const t = await setup();
  try {
    const seen: number[] = [];
    const run = t.runner.submit({ template: 'progress', params: {} }, alice);
    t.runner.watch(run.id, (event) => {
      if (event.type === 'run' && event.run.progress !== null) seen.push(event.run.progress);
    });
    const done = await finished(t.runner, run.id);
    assert.equal(done.status, 'succeeded');
    assert.equal(done.progress, 100, 'a success ends at 100');
    assert.ok(
      seen.every((p) => p >= 0 && p <= 100),
      `${seen}`,
    );
    assert.ok(!seen.includes(250));

    const failing = t.runner.submit({ template: 'fail', params: {} }, alice);
    const failed = await finished(t.runner, failing.id);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.exit_code, 3);
    assert.equal(failed.reason, 'exited with code 3');
    assert.equal(failed.progress, null);
    assert.match(logOf(t.runner, failing.id), /something broke/);
  } finally {
    await t.close();
  }
});

test('the log stops at its cap with a note; the job still runs to its end', async () => {
  const t = await setup({ maxLogBytes: 10_000 });
  try {
    const run = t.runner.submit({ template: 'spam', params: {} }, alice);
    const done = await finished(t.runner, run.id);
    assert.equal(done.status, 'succeeded');
    const log = logOf(t.runner, run.id);
    assert.match(log, /\[palisade\] the log reached its cap of 0 MB; later output is discarded/);
    assert.ok(Buffer.byteLength(log) < 10_300, `${Buffer.byteLength(log)} bytes`);
    assert.equal(done.log_bytes, Buffer.byteLength(log));
  } finally {
    await t.close();
  }
});

test('runs queued and cancels asked by another connection (the CLI) are picked up', async () => {
  const t = await setup();
  const cli = await openStore(t.home);
  try {
    const cliAudit = createAuditLog(cli, t.home);
    const set = loadTemplates({ home: t.home });
    const queued = queueRun(cli, cliAudit, set, { template: 'sleep-long', params: {} }, 'cli');
    assert.equal(queued.created_by, 'cli');
    await until(() => (logOf(t.runner, queued.id).includes('sleeping') ? true : undefined));
    const outcome = requestCancel(cli, cliAudit, queued.id, 'cli');
    assert.equal(outcome.kind, 'requested');
    const done = await finished(t.runner, queued.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.reason, 'cancelled by cli');
    assert.equal(done.exit_code, 143);
  } finally {
    await cli.close();
    await t.close();
  }
});

test('on start, a run left running is marked failed: "server restarted while the job ran"', async () => {
  const home = writeJobFixtures();
  const store: Store = await openStore(home);
  store.sqlite
    .prepare(
      `insert into job_run (id, template, params, input, status, created_by, created_at, started_at, log_bytes, pid)
       values ('run_00000000000000000001', 'sleep-long', '{}', '{}', 'running', 'alice', ?, ?, 0, 999999)`,
    )
    .run(isoNow(), isoNow());
  const audit = createAuditLog(store, home);
  const runner = createJobRunner({
    home,
    store,
    audit,
    logger: silent,
    maxJobs: 1,
    killGraceMs: 100,
  });
  try {
    runner.start();
    const run = runner.get('run_00000000000000000001');
    assert.equal(run?.status, 'failed');
    assert.equal(run?.reason, 'server restarted while the job ran');
    assert.ok(run?.finished_at);
    assert.equal(runner.activeCount(), 0);
    const [entry] = listAuditEntries(store, { limit: 1 });
    assert.equal(entry?.action, 'job.finished');
    assert.equal(entry?.details?.reason, 'server restarted while the job ran');
  } finally {
    await runner.close();
    await store.close();
  }
});

test('closing the runner stops running jobs and records why', async () => {
  const t = await setup();
  const run = t.runner.submit({ template: 'sleep-long', params: {} }, alice);
  await until(() => (logOf(t.runner, run.id).includes('sleeping') ? true : undefined));
  await t.runner.close();
  const done = t.runner.get(run.id);
  assert.equal(done?.status, 'failed');
  assert.equal(done?.reason, 'server stopped while the job ran');
  await t.store.close();
});

test('a run whose template left jobs.json fails with the reason, not a crash', async () => {
  const t = await setup({ maxJobs: 1 });
  try {
    const flag = join(t.home, 'go');
    const blocker = t.runner.submit({ template: 'wait-file', params: { file: flag } }, alice);
    const later = t.runner.submit({ template: 'argv', params: { text: 'x' } }, alice);
    writeFileSync(join(t.home, 'jobs.json'), JSON.stringify({ templates: [] }), { mode: 0o600 });
    writeFileSync(flag, '');
    await finished(t.runner, blocker.id);
    const done = await finished(t.runner, later.id);
    assert.equal(done.status, 'failed');
    assert.match(done.reason ?? '', /the template "argv" is no longer offered/);
  } finally {
    await t.close();
  }
});

const linuxOnly = { skip: process.platform !== 'linux' && 'needs /proc', timeout: 60_000 };

function pgidOf(store: Store, id: string): number {
  const row = store.sqlite
    .prepare<[string], { pgid: number | null }>('select pgid from job_run where id = ?')
    .get(id);
  assert.ok(row?.pgid, `run ${id} has a process group`);
  return row.pgid;
}

function groupGone(pgid: number): Promise<true> {
  return until(() => (livingGroupMembers(pgid).length === 0 ? true : undefined));
}

test('a run stores its process group and its leader’s start time', linuxOnly, async () => {
  const t = await setup();
  try {
    const run = t.runner.submit({ template: 'sleep-long', params: {} }, alice);
    await until(() => (logOf(t.runner, run.id).includes('sleeping') ? true : undefined));
    const row = t.store.sqlite
      .prepare<[string], { pid: number; pgid: number; process_start: string }>(
        'select pid, pgid, process_start from job_run where id = ?',
      )
      .get(run.id);
    assert.ok(row);
    assert.equal(row.pgid, row.pid, 'each job leads its own group');
    assert.equal(row.process_start, processStart(row.pid));
    t.runner.cancel(run.id, alice);
    await finished(t.runner, run.id);
  } finally {
    await t.close();
  }
});

test(
  'cancel ends the processes left in the group, even once its leader has exited',
  linuxOnly,
  async () => {
    const t = await setup();
    const flag = join(t.home, 'trap-set');
    let pgid: number | undefined;
    try {
      const run = t.runner.submit({ template: 'group-stubborn', params: { file: flag } }, alice);
      await until(() => (existsSync(flag) ? true : undefined));
      pgid = pgidOf(t.store, run.id);
      assert.equal(livingGroupMembers(pgid).length, 2, 'the leader and the one ignoring SIGTERM');
      t.runner.cancel(run.id, alice);
      const done = await finished(t.runner, run.id);
      assert.equal(done.status, 'cancelled');
      assert.equal(done.signal, 'SIGTERM', 'the leader ended on SIGTERM');
      await groupGone(pgid);
      assert.match(logOf(t.runner, run.id), /still running in its group: sending SIGKILL/);
    } finally {
      if (pgid !== undefined) signalGroup(pgid, 'SIGKILL');
      await t.close();
    }
  },
);

test('a job that exits leaving background processes: they end with it', linuxOnly, async () => {
  const t = await setup();
  let pgid: number | undefined;
  try {
    const run = t.runner.submit({ template: 'group-leftover', params: {} }, alice);
    const done = await finished(t.runner, run.id);
    pgid = pgidOf(t.store, run.id);
    assert.equal(done.status, 'succeeded', 'the job itself succeeded');
    await groupGone(pgid);
  } finally {
    if (pgid !== undefined) signalGroup(pgid, 'SIGKILL');
    await t.close();
  }
});

test('closing the runner ends the processes left in a group too', linuxOnly, async () => {
  const t = await setup();
  const flag = join(t.home, 'trap-set');
  const run = t.runner.submit({ template: 'group-stubborn', params: { file: flag } }, alice);
  await until(() => (existsSync(flag) ? true : undefined));
  const pgid = pgidOf(t.store, run.id);
  try {
    await t.runner.close();
    assert.equal(t.runner.get(run.id)?.reason, 'server stopped while the job ran');
    await groupGone(pgid);
  } finally {
    signalGroup(pgid, 'SIGKILL');
    await t.store.close();
  }
});

/** A detached process as a crashed server's job would be: its own group, still running. */
async function orphan(script: string): Promise<ChildProcess> {
  const child = spawn('sh', ['-c', script], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let seen = '';
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    seen += chunk.toString();
    if (seen.includes('ready')) break;
  }
  return child;
}

function insertRunning(store: Store, id: string, pid: number, start: string | null): void {
  store.sqlite
    .prepare(
      `insert into job_run (id, template, params, input, status, created_by, created_at, started_at, log_bytes, pid, pgid, process_start)
       values (?, 'sleep-long', '{}', '{}', 'running', 'alice', ?, ?, 0, ?, ?, ?)`,
    )
    .run(id, isoNow(), isoNow(), pid, pid, start);
}

test(
  'on start, a crashed server’s job still running is stopped: SIGTERM, then SIGKILL',
  linuxOnly,
  async () => {
    const home = writeJobFixtures();
    const store = await openStore(home);
    const polite = await orphan('echo ready; exec sleep 300');
    const stubborn = await orphan('trap "" TERM; echo ready; exec sleep 300');
    const reused = await orphan('echo ready; exec sleep 300');
    const unknown = await orphan('echo ready; exec sleep 300');
    const children = [polite, stubborn, reused, unknown];
    try {
      const pids = children.map((c) => c.pid as number);
      insertRunning(store, 'run_00000000000000000001', pids[0]!, processStart(pids[0]!));
      insertRunning(store, 'run_00000000000000000002', pids[1]!, processStart(pids[1]!));
      // Another start time: the id was reused by another process, which must be left alone.
      insertRunning(store, 'run_00000000000000000003', pids[2]!, '1@another-boot');
      insertRunning(store, 'run_00000000000000000004', pids[3]!, null);
      const exits = [polite, stubborn].map((c) => once(c, 'exit'));
      const runner = createJobRunner({
        home,
        store,
        audit: createAuditLog(store, home),
        logger: silent,
        maxJobs: 1,
        killGraceMs: 200,
      });
      runner.start();
      try {
        for (const id of ['run_00000000000000000001', 'run_00000000000000000002']) {
          const run = runner.get(id);
          assert.equal(run?.status, 'failed');
          assert.match(
            run?.reason ?? '',
            /^server restarted while the job ran; its processes were still running and were stopped/,
          );
        }
        const signals = (await Promise.all(exits)).map((args) => args[1] as string | null);
        assert.deepEqual(signals, ['SIGTERM', 'SIGKILL'], 'SIGKILL after the grace');
        assert.match(
          runner.get('run_00000000000000000003')?.reason ?? '',
          /was not stopped: it started at another time/,
        );
        assert.match(
          runner.get('run_00000000000000000004')?.reason ?? '',
          /was not stopped: its start time is unknown/,
        );
        assert.equal(runner.get('run_00000000000000000003')?.status, 'failed');
        assert.ok(processExists(pids[2]!) && processExists(pids[3]!), 'left running');
        const entries = listAuditEntries(store, { limit: 10 });
        assert.equal(entries.filter((e) => e.action === 'job.finished').length, 4);
      } finally {
        await runner.close();
      }
    } finally {
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      await store.close();
    }
  },
);

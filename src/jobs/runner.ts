import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fchmodSync, fstatSync, openSync, writeSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from 'pino';
import type { AuditLog, AuditRequest } from '../audit/index.js';
import { formatDuration } from '../config/index.js';
import {
  isoNow,
  toJsonText,
  type JobParamValue,
  type JobRunRow,
  type Store,
} from '../store/index.js';
import type { CliInvocation } from './builtins.js';
import { buildArgs, ParamsError, validateParams } from './params.js';
import { processExists, processStart, signalGroup } from './process-group.js';
import {
  auditParams,
  findRunRow,
  FINAL_STATUSES,
  listRunRows,
  logFileOf,
  queueRun,
  requestCancel,
  toRun,
  type JobActor,
  type JobRun,
} from './runs.js';
import {
  BASE_ENV,
  createTemplateSource,
  prepareJobsFolders,
  type JobTemplate,
  type TemplateSet,
} from './templates.js';

export interface RunnerOptions {
  home: string;
  store: Store;
  audit: AuditLog;
  logger: Logger;
  /** Runs at once (PALISADE_MAX_JOBS); later ones wait queued. */
  maxJobs: number;
  /** After SIGTERM, how long before SIGKILL (PALISADE_JOB_KILL_GRACE). */
  killGraceMs: number;
  /** The server's environment, which allowlisted names are copied from. */
  env?: NodeJS.ProcessEnv;
  /** How often the store is read for runs queued and cancels asked by the CLI. */
  pollMs?: number;
  /** A run's log stops growing here (a note says so); the job keeps running. */
  maxLogBytes?: number;
  /** How the built-in model download starts the CLI. */
  cli?: CliInvocation;
  /** Told when a run has ended and been stored (a finished download refreshes the models). */
  onFinish?: (run: { id: string; template: string; status: JobRun['status'] }) => void;
}

/** What a watcher of one run hears: its row changed, its log grew, or it finished. */
export type RunEvent =
  { type: 'run'; run: JobRun } | { type: 'log'; size: number } | { type: 'end'; run: JobRun };

export interface JobRunner {
  /**
   * Marks runs left `running` by a previous server as failed (stopping their process groups
   * that still run: SIGTERM, SIGKILL after the grace), then starts queued runs.
   */
  start(): void;
  /** Stops every running job (SIGTERM, SIGKILL after the grace) and waits for them. */
  close(): Promise<void>;
  /** The store the runs are in (the routes re-check a watcher's session there). */
  readonly store: Store;
  /** Runs in status running in this process. */
  activeCount(): number;
  templates(): TemplateSet;
  submit(
    input: { template: string; params: Record<string, unknown> },
    actor: JobActor,
    request?: AuditRequest,
  ): JobRun;
  cancel(id: string, actor: JobActor, request?: AuditRequest): JobRun;
  get(id: string): JobRun | undefined;
  list(options: { limit: number; before?: string }): JobRun[];
  /** Calls `listener` on each change of the run until the returned function is called. */
  watch(id: string, listener: (event: RunEvent) => void): () => void;
  /** Listeners now attached (for tests: a closed stream leaves none). */
  watcherCount(): number;
  logFile(id: string): string;
}

export const DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024;
const PROGRESS = /^progress:?\s+(\d{1,3}(?:\.\d+)?)%/i;
/** Longest line kept for progress matching; the log gets every byte regardless. */
const MAX_LINE = 4096;
/** Progress and log size reach the store at most this often while a job runs. */
const PERSIST_EVERY_MS = 250;
/** After the job's process exits, how long its output pipes may stay open (a straggler). */
const DRAIN_MS = 2000;
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

interface Active {
  id: string;
  row: JobRunRow;
  template: JobTemplate;
  params: Record<string, JobParamValue>;
  child?: ChildProcess;
  /** The job's own process group (detached: its leader's pid). */
  pgid?: number;
  fd: number;
  bytes: number;
  capped: boolean;
  /** The log's last byte is not a newline: Palisade's own note starts on a line of its own. */
  midLine?: boolean;
  progress: number | null;
  startedAt: number;
  lastPersist: number;
  persistTimer?: NodeJS.Timeout;
  timeoutTimer?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
  drainTimer?: NodeJS.Timeout;
  /** Why it is being stopped, once it is. */
  stop?: { status: 'cancelled' | 'failed'; reason: string };
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  spawnError?: string;
  closed: boolean;
  finished: boolean;
  lines: { stdout: LineState; stderr: LineState };
}

interface LineState {
  decoder: StringDecoder;
  partial: string;
}

function newLineState(): LineState {
  return { decoder: new StringDecoder('utf8'), partial: '' };
}

/**
 * The job runner of a server: the `job_run` table is its queue. Runs start in order, at
 * most `maxJobs` at once, each as its own process group (`shell: false`, an allowlisted
 * environment), with stdout and stderr in one log file per run (mode 0600, capped).
 *
 * @example
 * const runner = createJobRunner({ home, store, audit, logger, maxJobs: 2, killGraceMs: 10_000 });
 * runner.start();
 * runner.submit({ template: 'script', params: { script: 'demo.mjs' } }, { username: 'alice' });
 */
export function createJobRunner(options: RunnerOptions): JobRunner {
  const { store, audit, logger, home } = options;
  const sourceEnv = options.env ?? process.env;
  const maxLogBytes = options.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES;
  const source = createTemplateSource({
    home,
    env: sourceEnv,
    ...(options.cli ? { cli: options.cli } : {}),
  });
  const active = new Map<string, Active>();
  const watchers = new Map<string, Set<(event: RunEvent) => void>>();
  /** The last status told to watchers of a run this process does not run (CLI changes). */
  const seenStatus = new Map<string, string>();
  const finishedWaiters = new Set<() => void>();
  /** SIGKILLs due to the groups of runs a crashed server left, after the grace. */
  const recoveryKills = new Map<NodeJS.Timeout, () => void>();
  let poll: NodeJS.Timeout | undefined;
  let started = false;
  let closing = false;

  const nextQueued = store.sqlite.prepare<[], JobRunRow>(
    "select * from job_run where status = 'queued' order by seq limit 1",
  );
  const claim = store.sqlite.prepare<[string, string]>(
    "update job_run set status = 'running', started_at = ? where id = ? and status = 'queued'",
  );
  const cancelAsked = store.sqlite.prepare<[], { id: string; by: string | null }>(
    `select id, cancel_requested_by as "by" from job_run
     where status = 'running' and cancel_requested_at is not null`,
  );
  const persistProgress = store.sqlite.prepare<[number | null, number, string]>(
    'update job_run set progress = ?, log_bytes = ? where id = ?',
  );

  function emit(id: string, event: RunEvent): void {
    for (const listener of watchers.get(id) ?? []) {
      try {
        listener(event);
      } catch (error) {
        logger.warn({ err: error, job_id: id }, 'a job watcher failed');
      }
    }
  }

  /** A status change, told to the run's watchers and remembered for the poll's comparison. */
  function tell(id: string, event: Extract<RunEvent, { run: JobRun }>): void {
    if (!watchers.has(id)) return;
    seenStatus.set(id, event.run.status);
    emit(id, event);
  }

  function current(id: string): JobRun | undefined {
    const row = findRunRow(store, id);
    if (!row) return undefined;
    const run = toRun(row);
    const live = active.get(id);
    if (live && !live.finished) {
      run.progress = live.progress;
      run.log_bytes = live.bytes;
    }
    return run;
  }

  function note(run: Active, text: string): void {
    // Palisade's own lines in the log, past the cap too: they say why the run ended.
    const line = Buffer.from(`${run.midLine ? '\n' : ''}[palisade] ${text}\n`);
    try {
      writeSync(run.fd, line);
      run.bytes += line.length;
      run.midLine = false;
      emit(run.id, { type: 'log', size: run.bytes });
    } catch (error) {
      logger.warn({ err: error, job_id: run.id }, 'could not write to a job log');
    }
  }

  function openLog(id: string): number {
    const fd = openSync(logFileOf(home, id), 'a', 0o600);
    if ((fstatSync(fd).mode & 0o777) !== 0o600) fchmodSync(fd, 0o600);
    return fd;
  }

  function buildEnv(template: JobTemplate, id: string): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of [...BASE_ENV, ...template.env]) {
      const value = sourceEnv[name];
      if (value !== undefined) env[name] = value;
    }
    env.PATH ??= DEFAULT_PATH;
    env.PALISADE_JOB_ID = id;
    return env;
  }

  function schedulePersist(run: Active): void {
    if (run.persistTimer || run.finished) return;
    const wait = Math.max(0, PERSIST_EVERY_MS - (Date.now() - run.lastPersist));
    run.persistTimer = setTimeout(() => {
      run.persistTimer = undefined;
      if (run.finished) return;
      run.lastPersist = Date.now();
      try {
        persistProgress.run(run.progress, run.bytes, run.id);
      } catch (error) {
        logger.warn({ err: error, job_id: run.id }, 'could not store job progress');
      }
    }, wait);
    run.persistTimer.unref();
  }

  function readLines(run: Active, stream: 'stdout' | 'stderr', chunk: Buffer): void {
    const state = run.lines[stream];
    const text = state.partial + state.decoder.write(chunk);
    const lines = text.split(/\r\n|\r|\n/);
    state.partial = (lines.pop() ?? '').slice(0, MAX_LINE);
    let progress: number | undefined;
    for (const line of lines) {
      const match = PROGRESS.exec(line);
      if (!match) continue;
      const value = Number(match[1]);
      if (value >= 0 && value <= 100) progress = value;
    }
    if (progress !== undefined && progress !== run.progress) {
      run.progress = progress;
      const view = current(run.id);
      if (view) emit(run.id, { type: 'run', run: view });
    }
  }

  function onOutput(run: Active, stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (!run.capped) {
      const room = maxLogBytes - run.bytes;
      const kept = chunk.length <= room ? chunk : chunk.subarray(0, Math.max(0, room));
      try {
        if (kept.length > 0) {
          writeSync(run.fd, kept);
          run.midLine = kept[kept.length - 1] !== 0x0a;
        }
        run.bytes += kept.length;
      } catch (error) {
        logger.warn({ err: error, job_id: run.id }, 'could not write to a job log');
      }
      if (kept.length < chunk.length) {
        run.capped = true;
        note(
          run,
          `the log reached its cap of ${Math.round(maxLogBytes / 1024 / 1024)} MB; later output is discarded (the job keeps running)`,
        );
      } else {
        emit(run.id, { type: 'log', size: run.bytes });
      }
    }
    readLines(run, stream, chunk);
    schedulePersist(run);
  }

  /** Signals the job's whole process group (its children too); false when none is left. */
  function killGroup(run: Active, signal: NodeJS.Signals | 0): boolean {
    if (run.pgid === undefined) return false;
    if (signalGroup(run.pgid, signal)) return true;
    if (signal === 0 || run.exit) return false;
    try {
      return run.child?.kill(signal) ?? false;
    } catch {
      return false;
    }
  }

  /** After the leader's exit, waits a moment for processes outside the group holding its pipes. */
  function drainThenFinalize(run: Active): void {
    if (run.drainTimer || run.finished) return;
    run.drainTimer = setTimeout(() => {
      killGroup(run, 'SIGKILL');
      run.child?.stdout?.destroy();
      run.child?.stderr?.destroy();
      run.closed = true;
      finalize(run);
    }, DRAIN_MS);
  }

  function stopRun(run: Active, stop: NonNullable<Active['stop']>): void {
    if (run.stop || run.finished || run.exit) return;
    run.stop = stop;
    if (!run.child) return;
    note(run, `${stop.reason}: sending SIGTERM`);
    killGroup(run, 'SIGTERM');
    // Kept when the leader exits first: what it started may ignore SIGTERM.
    run.killTimer = setTimeout(() => {
      run.killTimer = undefined;
      if (run.finished) return;
      const grace = formatDuration(options.killGraceMs);
      if (!run.exit) {
        note(run, `still running ${grace} after SIGTERM: sending SIGKILL`);
        killGroup(run, 'SIGKILL');
      } else if (killGroup(run, 0)) {
        note(run, `processes of its group still running ${grace} after SIGTERM: sending SIGKILL`);
        killGroup(run, 'SIGKILL');
      }
      if (run.exit) drainThenFinalize(run);
    }, options.killGraceMs);
  }

  function finalize(run: Active): void {
    if (run.finished) return;
    run.finished = true;
    for (const timer of [run.persistTimer, run.timeoutTimer, run.killTimer, run.drainTimer]) {
      if (timer) clearTimeout(timer);
    }
    // A job's processes end with it: what it left in its group (in the background) too.
    if (killGroup(run, 0)) {
      note(run, 'processes it started were still running in its group: sending SIGKILL');
      killGroup(run, 'SIGKILL');
    }
    const exit = run.exit ?? { code: null, signal: null };
    let status: JobRun['status'];
    let reason: string | null;
    if (run.spawnError !== undefined) {
      status = 'failed';
      reason = run.spawnError;
    } else if (run.stop) {
      status = run.stop.status;
      reason = run.stop.reason;
    } else if (exit.code === 0) {
      status = 'succeeded';
      reason = null;
    } else {
      status = 'failed';
      reason =
        exit.code !== null ? `exited with code ${exit.code}` : `killed by signal ${exit.signal}`;
    }
    if (status === 'succeeded' && run.progress !== null) run.progress = 100;
    note(
      run,
      exit.code !== null
        ? `exited with code ${exit.code}${reason && status !== 'failed' ? ` (${reason})` : ''}`
        : exit.signal !== null
          ? `ended by signal ${exit.signal}${reason ? ` (${reason})` : ''}`
          : `${reason ?? 'ended'}`,
    );
    try {
      closeSync(run.fd);
    } catch {
      // Already closed.
    }
    const finishedAt = isoNow();
    try {
      store.sqlite
        .prepare(
          `update job_run set status = ?, reason = ?, exit_code = ?, signal = ?, finished_at = ?,
             progress = ?, log_bytes = ?
           where id = ?`,
        )
        .run(status, reason, exit.code, exit.signal, finishedAt, run.progress, run.bytes, run.id);
    } catch (error) {
      logger.error({ err: error, job_id: run.id }, 'could not store the end of a job');
    }
    try {
      audit.record({
        action: 'job.finished',
        actor: 'system',
        target: run.id,
        details: {
          job_id: run.id,
          template: run.template.name,
          params: auditParams(run.params),
          user: run.row.created_by,
          status,
          exit_code: exit.code,
          signal: exit.signal,
          reason,
          duration_ms: Date.now() - run.startedAt,
        },
      });
    } catch (error) {
      logger.error({ err: error, job_id: run.id }, 'could not audit the end of a job');
    }
    logger.info(
      { job_id: run.id, template: run.template.name, status, exit_code: exit.code, reason },
      'job finished',
    );
    active.delete(run.id);
    const view = current(run.id);
    if (view) tell(run.id, { type: 'end', run: view });
    for (const waiter of finishedWaiters) waiter();
    options.onFinish?.({ id: run.id, template: run.template.name, status });
    pump();
  }

  /** Ends a claimed run that cannot start (its template or values no longer fit). */
  function failBeforeStart(row: JobRunRow, template: JobTemplate | undefined, reason: string) {
    const run: Active = {
      id: row.id,
      row,
      template: template ?? { ...placeholderTemplate, name: row.template },
      params: JSON.parse(row.params) as Record<string, JobParamValue>,
      fd: openLog(row.id),
      bytes: 0,
      capped: false,
      progress: null,
      startedAt: Date.now(),
      lastPersist: 0,
      spawnError: reason,
      closed: true,
      finished: false,
      lines: { stdout: newLineState(), stderr: newLineState() },
    };
    active.set(run.id, run);
    finalize(run);
  }

  function launch(row: JobRunRow): void {
    const set = source.current();
    const template = set.templates.find((t) => t.name === row.template);
    if (!template) {
      failBeforeStart(
        row,
        undefined,
        `the template "${row.template}" is no longer offered${set.error ? ` (${set.error})` : ''}`,
      );
      return;
    }
    let params: Record<string, JobParamValue>;
    try {
      params = validateParams(
        template,
        JSON.parse(row.input) as Record<string, JobParamValue>,
        set.folders,
      );
    } catch (error) {
      if (!(error instanceof ParamsError)) throw error;
      failBeforeStart(row, template, `the parameters no longer fit the template: ${error.message}`);
      return;
    }
    const run: Active = {
      id: row.id,
      row,
      template,
      params,
      fd: openLog(row.id),
      bytes: 0,
      capped: false,
      progress: null,
      startedAt: Date.now(),
      lastPersist: 0,
      closed: false,
      finished: false,
      lines: { stdout: newLineState(), stderr: newLineState() },
    };
    active.set(run.id, run);
    let child: ChildProcess;
    try {
      child = spawn(template.command, buildArgs(template, params), {
        cwd: template.cwd,
        env: buildEnv(template, row.id),
        shell: false,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        windowsHide: true,
      });
    } catch (error) {
      run.spawnError = `could not start ${template.command}: ${(error as Error).message}`;
      run.closed = true;
      finalize(run);
      return;
    }
    run.child = child;
    run.pgid = child.pid;
    child.on('error', (error) => {
      if (child.pid !== undefined && run.exit === undefined && !run.closed) {
        logger.warn({ err: error, job_id: run.id }, 'job process error');
        return;
      }
      if (child.pid === undefined) {
        run.spawnError = `could not start ${template.command}: ${error.message}`;
        run.closed = true;
        finalize(run);
      }
    });
    if (child.pid === undefined) return;
    store.sqlite
      .prepare('update job_run set pid = ?, pgid = ?, process_start = ?, params = ? where id = ?')
      .run(child.pid, child.pid, processStart(child.pid), toJsonText(params), row.id);
    logger.info({ job_id: row.id, template: template.name, pid: child.pid }, 'job started');
    child.stdout?.on('data', (chunk: Buffer) => onOutput(run, 'stdout', chunk));
    child.stderr?.on('data', (chunk: Buffer) => onOutput(run, 'stderr', chunk));
    child.once('exit', (code, signal) => {
      run.exit = { code, signal };
      if (run.closed) {
        finalize(run);
        return;
      }
      // A process it started may still hold the pipes: end the group after a moment (being
      // stopped, once the grace has passed).
      if (!run.killTimer) drainThenFinalize(run);
    });
    child.once('close', () => {
      run.closed = true;
      if (run.exit) finalize(run);
    });
    run.timeoutTimer = setTimeout(
      () =>
        stopRun(run, {
          status: 'failed',
          reason: `timed out after ${formatDuration(template.timeoutMs)}`,
        }),
      template.timeoutMs,
    );
    const view = current(row.id);
    if (view) tell(row.id, { type: 'run', run: view });
  }

  function pump(): void {
    if (!started || closing) return;
    while (active.size < options.maxJobs) {
      const row = nextQueued.get();
      if (!row) return;
      if (claim.run(isoNow(), row.id).changes === 0) continue;
      try {
        launch({ ...row, status: 'running' });
      } catch (error) {
        logger.error({ err: error, job_id: row.id }, 'could not start a job');
        const run = active.get(row.id);
        if (run) {
          run.spawnError ??= `could not start: ${(error as Error).message}`;
          run.closed = true;
          finalize(run);
        } else {
          failBeforeStart(row, undefined, `could not start: ${(error as Error).message}`);
        }
      }
    }
  }

  /** Acts on what other processes wrote: cancels asked by the CLI, runs it queued or cancelled. */
  let seenVersion = -1;
  function tick(): void {
    try {
      // Only other connections (the CLI) change what this looks for; this process's own
      // changes act at once. Nothing changed and nobody watching: nothing to read.
      const version = store.dataVersion();
      if (version === seenVersion && watchers.size === 0) return;
      seenVersion = version;
      for (const { id, by } of cancelAsked.all()) {
        const run = active.get(id);
        if (run) stopRun(run, { status: 'cancelled', reason: `cancelled by ${by ?? 'cli'}` });
      }
      for (const id of watchers.keys()) {
        if (active.has(id)) continue;
        const run = current(id);
        if (!run || seenStatus.get(id) === run.status) continue;
        seenStatus.set(id, run.status);
        emit(id, FINAL_STATUSES.has(run.status) ? { type: 'end', run } : { type: 'run', run });
      }
      pump();
    } catch (error) {
      logger.error({ err: error }, 'job runner poll failed');
    }
  }

  /**
   * What to do with a run a crashed server left: stop its group when its leader is still the
   * process that server started (same start time), leave it alone when the id may have been
   * reused. Returns the reason to record.
   */
  function stopLeftover(row: JobRunRow): string {
    const base = 'server restarted while the job ran';
    const pgid = row.pgid ?? row.pid;
    if (pgid === null || !processExists(pgid)) return base;
    const now = processStart(pgid);
    if (row.process_start === null || now === null) {
      return `${base}; process ${pgid} exists but was not stopped: its start time is unknown, so its id may belong to another process now`;
    }
    if (now !== row.process_start) {
      return `${base}; process ${pgid} was not stopped: it started at another time, so its id now belongs to another process`;
    }
    signalGroup(pgid, 'SIGTERM');
    const kill = () => {
      // Only while that same process leads the group, or the group outlives it.
      const start = processStart(pgid);
      if (start === row.process_start || (start === null && !processExists(pgid))) {
        signalGroup(pgid, 'SIGKILL');
      }
    };
    const timer = setTimeout(() => {
      recoveryKills.delete(timer);
      kill();
    }, options.killGraceMs);
    timer.unref();
    recoveryKills.set(timer, kill);
    return `${base}; its processes were still running and were stopped (SIGTERM, then SIGKILL after ${formatDuration(options.killGraceMs)})`;
  }

  function recover(): void {
    const stale = store.sqlite
      .prepare<[], JobRunRow>("select * from job_run where status = 'running' order by seq")
      .all();
    for (const row of stale) {
      const reason = stopLeftover(row);
      const changed = store.sqlite
        .prepare(
          "update job_run set status = 'failed', reason = ?, finished_at = ? where id = ? and status = 'running'",
        )
        .run(reason, isoNow(), row.id);
      if (changed.changes === 0) continue;
      try {
        const fd = openLog(row.id);
        writeSync(fd, `[palisade] ${reason}; marked failed\n`);
        closeSync(fd);
      } catch {
        // The log is a courtesy here; the row and the audit entry say it.
      }
      audit.record({
        action: 'job.finished',
        actor: 'system',
        target: row.id,
        details: {
          job_id: row.id,
          template: row.template,
          params: auditParams(JSON.parse(row.params) as Record<string, JobParamValue>),
          user: row.created_by,
          status: 'failed',
          reason,
        },
      });
      logger.warn({ job_id: row.id, template: row.template, pid: row.pid }, reason);
    }
  }

  return {
    start() {
      if (started) return;
      started = true;
      prepareJobsFolders(home);
      recover();
      const { error } = source.current();
      if (error) logger.warn(error);
      poll = setInterval(tick, options.pollMs ?? 300);
      poll.unref();
      pump();
    },

    async close() {
      closing = true;
      if (poll) clearInterval(poll);
      for (const run of active.values()) {
        stopRun(run, { status: 'failed', reason: 'server stopped while the job ran' });
      }
      // The groups a crashed server left get their SIGKILL now rather than never.
      for (const [timer, kill] of recoveryKills) {
        clearTimeout(timer);
        recoveryKills.delete(timer);
        kill();
      }
      while (active.size > 0) {
        await new Promise<void>((resolve) => {
          const done = () => {
            finishedWaiters.delete(done);
            resolve();
          };
          finishedWaiters.add(done);
        });
      }
    },

    activeCount: () => active.size,

    store,

    templates: () => source.current(),

    submit(input, actor, request) {
      const run = queueRun(store, audit, source.current(), input, actor, request);
      pump();
      return current(run.id) ?? run;
    },

    cancel(id, actor, request) {
      const outcome = requestCancel(store, audit, id, actor, request);
      const live = active.get(outcome.run.id);
      if (outcome.kind === 'requested' && live) {
        stopRun(live, {
          status: 'cancelled',
          reason: `cancelled by ${actor === 'cli' ? 'cli' : actor.username}`,
        });
      }
      const view = current(id) ?? outcome.run;
      if (outcome.kind === 'cancelled') tell(id, { type: 'end', run: view });
      return view;
    },

    get: (id) => current(id),

    list(options) {
      return listRunRows(store, options).map((row) => current(row.id) ?? toRun(row));
    },

    watch(id, listener) {
      let set = watchers.get(id);
      if (!set) {
        set = new Set();
        watchers.set(id, set);
        const run = current(id);
        if (run) seenStatus.set(id, run.status);
      }
      set.add(listener);
      return () => {
        const listeners = watchers.get(id);
        if (!listeners) return;
        listeners.delete(listener);
        if (listeners.size === 0) {
          watchers.delete(id);
          seenStatus.delete(id);
        }
      };
    },

    watcherCount: () => [...watchers.values()].reduce((sum, set) => sum + set.size, 0),

    logFile: (id) => logFileOf(home, id),
  };
}

/** Stands in for a template that is gone, so the end of its run can still be recorded. */
const placeholderTemplate: JobTemplate = {
  name: '',
  description: '',
  builtin: false,
  command: '',
  args: [],
  params: [],
  cwd: '',
  timeoutMs: 0,
  env: [],
};

import { randomBytes } from 'node:crypto';
import { isAbsolute, join } from 'node:path';
import { recordRequest, type AuditLog, type AuditRequest } from '../audit/index.js';
import { HttpError } from '../server/errors.js';
import {
  isoNow,
  toJsonText,
  type JobParamValue,
  type JobRunRow,
  type JobStatus,
  type Store,
} from '../store/index.js';
import { validateParams } from './params.js';
import { jobsPaths, type TemplateSet } from './templates.js';

/** A run as the API, the CLI and the dashboard see it. */
export interface JobRun {
  id: string;
  template: string;
  params: Record<string, JobParamValue>;
  status: JobStatus;
  progress: number | null;
  exit_code: number | null;
  signal: string | null;
  reason: string | null;
  created_by: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  log_bytes: number;
}

/** Who asks: a signed-in admin (by username) or the CLI on this machine. */
export type JobActor = { username: string } | 'cli';

export const RUN_ID = /^run_[0-9a-f]{20}$/;
export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled']);

export function actorName(actor: JobActor): string {
  return actor === 'cli' ? 'cli' : actor.username;
}

/** The audit log's actor: `user:alice` as the other admin changes, or `cli`. */
export function auditActor(actor: JobActor): string {
  return actor === 'cli' ? 'cli' : `user:${actor.username}`;
}

// scheme://[userinfo@]rest[?query][#fragment]; userinfo greedy up to the last '@' before the
// path, the way the WHATWG URL parser reads an unencoded '@' in a password.
const URL_PARTS = /^([a-z][a-z0-9+.-]*:\/\/)(?:[^/?#]*@)?([^?#]*)(\?[^#]*)?(#[\s\S]*)?$/i;

/**
 * A URL as runs are shown and audited: without userinfo, its query and fragment masked as
 * `?…` and `#…` (a signed download URL's grant is in its query). Other text is unchanged.
 *
 * @example
 * maskUrl('https://u:p@host/m.gguf?X-Amz-Signature=abc'); // 'https://host/m.gguf?…'
 */
export function maskUrl(value: string): string {
  const parts = URL_PARTS.exec(value);
  if (!parts) return value;
  const [, scheme = '', rest = '', query, fragment] = parts;
  return `${scheme}${rest}${query && query.length > 1 ? '?…' : (query ?? '')}${fragment && fragment.length > 1 ? '#…' : (fragment ?? '')}`;
}

/**
 * Values as runs show them: URLs masked (the stored row keeps them whole for the process),
 * and a path as it was given, relative to its folder (with `given`), rather than where it
 * resolved on the server.
 */
export function shownParams(
  values: Record<string, JobParamValue>,
  given: Record<string, JobParamValue> = {},
): Record<string, JobParamValue> {
  const shown: Record<string, JobParamValue> = {};
  for (const [name, value] of Object.entries(values)) {
    const asGiven = given[name];
    shown[name] =
      typeof value !== 'string'
        ? value
        : isAbsolute(value) && typeof asGiven === 'string' && asGiven !== '' && !isAbsolute(asGiven)
          ? asGiven
          : maskUrl(value);
  }
  return shown;
}

/** Validated values as the audit log keeps them: `name=value`, in declaration order. */
export function auditParams(values: Record<string, JobParamValue>): string[] {
  return Object.entries(shownParams(values)).map(([name, value]) => `${name}=${value}`);
}

export function logFileOf(home: string, id: string): string {
  if (!RUN_ID.test(id)) throw new Error(`not a run id: ${id}`);
  return join(jobsPaths(home).logs, `${id}.log`);
}

export function toRun(row: JobRunRow): JobRun {
  return {
    id: row.id,
    template: row.template,
    params: shownParams(
      JSON.parse(row.params) as Record<string, JobParamValue>,
      JSON.parse(row.input) as Record<string, JobParamValue>,
    ),
    status: row.status,
    progress: row.progress,
    exit_code: row.exit_code,
    signal: row.signal,
    reason: row.reason,
    created_by: row.created_by,
    created_at: row.created_at,
    started_at: row.started_at,
    finished_at: row.finished_at,
    log_bytes: row.log_bytes,
  };
}

export function findRunRow(store: Store, id: string): JobRunRow | undefined {
  if (!RUN_ID.test(id)) return undefined;
  return store.sqlite.prepare<[string], JobRunRow>('select * from job_run where id = ?').get(id);
}

export function runNotFound(id: string): HttpError {
  return new HttpError(
    404,
    'run_not_found',
    `no run ${JSON.stringify(id.slice(0, 64))} (the runs list shows them)`,
  );
}

/** Runs newest first; `before` (a run id) pages back from that run. */
export function listRunRows(
  store: Store,
  options: { limit: number; before?: string },
): JobRunRow[] {
  let beforeSeq = Number.MAX_SAFE_INTEGER;
  if (options.before !== undefined) {
    const row = findRunRow(store, options.before);
    if (!row) {
      throw new HttpError(
        400,
        'invalid_request',
        `invalid query field "before": no run ${options.before.slice(0, 64)}`,
      );
    }
    beforeSeq = row.seq;
  }
  return store.sqlite
    .prepare<[number, number], JobRunRow>(
      'select * from job_run where seq < ? order by seq desc limit ?',
    )
    .all(beforeSeq, options.limit);
}

/**
 * Validates a request against the templates, stores it as a queued run and audits it
 * (`job.started`). Nothing is stored when it is refused. Throws a ParamsError (400) or a
 * 404 for an unknown template.
 */
export function queueRun(
  store: Store,
  audit: AuditLog,
  set: TemplateSet,
  input: { template: string; params: Record<string, unknown> },
  actor: JobActor,
  request?: AuditRequest,
): JobRun {
  const template = set.templates.find((t) => t.name === input.template);
  if (!template) {
    throw new HttpError(
      404,
      'template_not_found',
      `no template "${input.template.slice(0, 64)}"${set.error ? ' (jobs.json has a problem: see the templates list)' : ''}; the templates list shows what can run`,
    );
  }
  const params = validateParams(template, input.params, set.folders);
  // What was given (types checked), validated again against the template when the run starts.
  const given: Record<string, JobParamValue> = {};
  for (const spec of template.params) {
    const value = input.params[spec.name];
    if (typeof value === 'string' || typeof value === 'number') given[spec.name] = value;
    // A path taken from its default is kept as given too, so runs show it relative.
    if (
      spec.type === 'path' &&
      spec.default !== undefined &&
      (value === undefined || value === '')
    ) {
      given[spec.name] = spec.default;
    }
  }
  const id = `run_${randomBytes(10).toString('hex')}`;
  store.sqlite
    .prepare(
      `insert into job_run (id, template, params, input, status, created_by, created_at, log_bytes)
       values (?, ?, ?, ?, 'queued', ?, ?, 0)`,
    )
    .run(id, template.name, toJsonText(params), toJsonText(given), actorName(actor), isoNow());
  recordRequest(audit, request, {
    action: 'job.started',
    actor: auditActor(actor),
    target: id,
    details: { job_id: id, template: template.name, params: auditParams(params), status: 'queued' },
  });
  return toRun(findRunRow(store, id) as JobRunRow);
}

export type CancelOutcome =
  /** A queued run, cancelled at once. */
  | { kind: 'cancelled'; run: JobRun }
  /** A running run: the runner sends SIGTERM (then SIGKILL after the grace). */
  | { kind: 'requested'; run: JobRun };

/**
 * Cancels a queued run at once, or marks a running one for the runner to stop, and audits
 * it (`job.cancelled`). A finished run gets 409, an unknown id 404.
 */
export function requestCancel(
  store: Store,
  audit: AuditLog,
  id: string,
  actor: JobActor,
  request?: AuditRequest,
): CancelOutcome {
  const row = findRunRow(store, id);
  if (!row) throw runNotFound(id);
  const by = actorName(actor);
  const now = isoNow();
  const cancelled = store.sqlite
    .prepare(
      `update job_run set status = 'cancelled', reason = ?, finished_at = ?,
         cancel_requested_at = ?, cancel_requested_by = ?
       where id = ? and status = 'queued'`,
    )
    .run(`cancelled by ${by}`, now, now, by, id);
  let kind: CancelOutcome['kind'] = 'cancelled';
  if (cancelled.changes === 0) {
    const marked = store.sqlite
      .prepare(
        `update job_run set cancel_requested_at = coalesce(cancel_requested_at, ?),
           cancel_requested_by = coalesce(cancel_requested_by, ?)
         where id = ? and status = 'running'`,
      )
      .run(now, by, id);
    if (marked.changes === 0) {
      const current = findRunRow(store, id) as JobRunRow;
      throw new HttpError(
        409,
        'run_finished',
        `run ${id} has already finished (${current.status}); there is nothing to cancel`,
      );
    }
    kind = 'requested';
  }
  const params = JSON.parse(row.params) as Record<string, JobParamValue>;
  recordRequest(audit, request, {
    action: 'job.cancelled',
    actor: auditActor(actor),
    target: id,
    details: {
      job_id: id,
      template: row.template,
      params: auditParams(params),
      status: kind === 'cancelled' ? 'queued' : 'running',
    },
  });
  return { kind, run: toRun(findRunRow(store, id) as JobRunRow) };
}

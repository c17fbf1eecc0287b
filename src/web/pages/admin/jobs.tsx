/**
 * The Jobs tab of the Admin page: the job templates (the built-ins and the operator's jobs.json),
 * a form generated from a template's parameters, the runs, and one run with its live log.
 * The form only hints at each parameter's rules: the server checks them, and its words are
 * shown next to the field they concern.
 */
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import {
  api,
  ApiError,
  JobParamsError,
  type JobParam,
  type JobRun,
  type JobRunEvent,
  type JobRunStatus,
  type JobTemplate,
} from '../../api.js';
import { isAbort } from '../../components/errors.js';
import {
  errorMessage,
  Feedback,
  Loading,
  LoadedView,
  ScrollTable,
  Section,
  SubmitRow,
  TableHead,
  Time,
  useAction,
  useLoad,
} from '../settings/ui.js';
import './jobs.css';

const PAGE = 50;
/** How often the runs table is refreshed while a run is queued or running. */
const POLL_MS = 2000;
/** The log view keeps the end of a long log; the whole file stays on the server. */
const LOG_KEEP_CHARS = 1_000_000;
const NEAR_BOTTOM_PX = 24;

const STATUS_LABEL: Record<JobRunStatus, string> = {
  queued: 'Queued',
  running: 'Running',
  succeeded: 'Succeeded',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

const STATUS_CLASS: Record<JobRunStatus, string> = {
  queued: 'badge',
  running: 'badge adm-job-running',
  succeeded: 'badge badge-ok',
  failed: 'badge badge-danger',
  cancelled: 'badge badge-warn',
};

export function isActive(run: Pick<JobRun, 'status'>): boolean {
  return run.status === 'queued' || run.status === 'running';
}

/** `12 s`, `3 min 05 s`, `2 h 03 min`. */
export function durationText(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(seconds % 60).padStart(2, '0')} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** How long the run ran (so far, while running), or null before it started. */
function runDuration(run: JobRun, now: number): string | null {
  if (!run.started_at) return null;
  const start = Date.parse(run.started_at);
  const end = run.finished_at
    ? Date.parse(run.finished_at)
    : run.status === 'running'
      ? now
      : Number.NaN;
  if (!Number.isFinite(start) || !Number.isFinite(end)) return null;
  return durationText(end - start);
}

/** Parameters as `key=value` pairs; values with spaces, quotes or `=` are quoted. */
export function paramsText(params: JobRun['params']): string {
  return Object.entries(params)
    .map(([key, value]) => {
      const text = String(value);
      return `${key}=${text === '' || /[\s"=]/.test(text) ? JSON.stringify(text) : text}`;
    })
    .join(' ');
}

function percentText(value: number): string {
  return Number.isInteger(value) ? `${value}%` : `${value.toFixed(1)}%`;
}

/** The current time, ticking every second while `active`. */
function useNow(active: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

function StatusBadge(props: { status: JobRunStatus }): JSX.Element {
  return (
    <span class={STATUS_CLASS[props.status]} data-testid="job-status">
      {STATUS_LABEL[props.status]}
    </span>
  );
}

/** A bar for `progress` (indeterminate while running without any); a dash when there is none. */
function Progress(props: { run: JobRun; label: string }): JSX.Element {
  const { progress, status } = props.run;
  if (progress === null) {
    if (status !== 'running') return <span class="muted">—</span>;
    return (
      <span class="adm-job-progress">
        <progress aria-label={props.label} />
        <span class="adm-job-percent muted">…</span>
      </span>
    );
  }
  const value = Math.min(100, Math.max(0, progress));
  return (
    <span class="adm-job-progress">
      <progress max={100} value={value} aria-label={props.label} data-testid="job-progress" />
      <span class="adm-job-percent">{percentText(value)}</span>
    </span>
  );
}

// ---------- Templates and the run form ----------

function fieldId(template: string, param: string): string {
  return `adm-job-${template}-${param}`.replace(/[^A-Za-z0-9_-]/g, '_');
}

function initialValues(template: JobTemplate): Record<string, string> {
  return Object.fromEntries(
    template.params.map((param) => [
      param.name,
      param.default === undefined ? '' : String(param.default),
    ]),
  );
}

/**
 * What the form sends: empty fields are left out (an optional parameter is then absent; the
 * server names a missing required one), whole numbers go as numbers, anything else as typed.
 */
export function requestParams(
  params: readonly JobParam[],
  values: Record<string, string>,
): Record<string, string | number> {
  const body: Record<string, string | number> = {};
  for (const param of params) {
    const raw = values[param.name] ?? '';
    if (param.type === 'integer') {
      const text = raw.trim();
      if (text !== '') body[param.name] = /^-?\d{1,15}$/.test(text) ? Number(text) : text;
    } else if (raw !== '') {
      body[param.name] = raw;
    }
  }
  return body;
}

/** The rules of a parameter, in words; the server applies them. */
function paramHint(param: JobParam): ComponentChildren[] {
  const parts: ComponentChildren[] = [];
  if (param.description) parts.push(param.description);
  if (param.type === 'integer') {
    if (param.min !== undefined && param.max !== undefined) {
      parts.push(`A whole number from ${param.min} to ${param.max}.`);
    } else if (param.min !== undefined) parts.push(`A whole number, at least ${param.min}.`);
    else if (param.max !== undefined) parts.push(`A whole number, at most ${param.max}.`);
    else parts.push('A whole number.');
  } else if (param.type === 'string') {
    if (param.pattern !== undefined) {
      parts.push(
        <>
          Must match <code>{param.pattern}</code>
          {param.maxLength !== undefined ? `, up to ${param.maxLength} characters.` : '.'}
        </>,
      );
    } else if (param.maxLength !== undefined) {
      parts.push(`Up to ${param.maxLength} characters.`);
    }
  } else if (param.type === 'path') {
    parts.push(
      `A path inside the ${param.folder ?? 'named'} folder; absolute paths and .. are refused.`,
    );
  }
  if (param.flag !== undefined) parts.push(`Passed after ${param.flag}.`);
  if (param.default !== undefined) parts.push(`Default: ${String(param.default)}.`);
  return parts;
}

/** The server's words for a field, as a sentence ("must be from 1 to 5" → "Must be …"). */
function sentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function ParamField(props: {
  template: string;
  param: JobParam;
  value: string;
  problem: string | undefined;
  onValue: (value: string) => void;
}): JSX.Element {
  const { param, problem } = props;
  const id = fieldId(props.template, param.name);
  const hint = paramHint(param);
  const describedBy =
    [hint.length > 0 ? `${id}-hint` : '', problem ? `${id}-error` : ''].join(' ').trim() ||
    undefined;
  const shared = {
    id,
    name: param.name,
    'aria-describedby': describedBy,
    'aria-invalid': problem ? ('true' as const) : undefined,
    'aria-required': param.optional ? undefined : ('true' as const),
  };
  let control: JSX.Element;
  if (param.type === 'enum') {
    const values = param.values ?? [];
    control = (
      <select
        {...shared}
        class="input"
        value={props.value}
        onChange={(event) => props.onValue(event.currentTarget.value)}
      >
        {param.optional || !values.includes(props.value) ? (
          <option value="">{param.optional ? '(none)' : 'Choose…'}</option>
        ) : null}
        {values.map((value) => (
          <option key={value} value={value}>
            {value}
          </option>
        ))}
      </select>
    );
  } else if (param.type === 'integer') {
    control = (
      <input
        {...shared}
        class="input adm-job-number"
        type="number"
        inputMode="numeric"
        step={1}
        min={param.min}
        max={param.max}
        value={props.value}
        onInput={(event) => props.onValue(event.currentTarget.value)}
      />
    );
  } else {
    const input = (
      <input
        {...shared}
        class="input"
        type="text"
        autocomplete="off"
        autocapitalize="off"
        spellcheck={false}
        maxLength={param.maxLength}
        value={props.value}
        onInput={(event) => props.onValue(event.currentTarget.value)}
      />
    );
    control =
      param.type === 'path' ? (
        <div class="adm-job-path">
          <span class="adm-job-path-folder" aria-hidden="true">
            {param.folder ?? ''}/
          </span>
          {input}
        </div>
      ) : (
        input
      );
  }
  return (
    <div
      class={problem ? 'field adm-job-field adm-job-field--invalid' : 'field adm-job-field'}
      data-testid="job-param"
      data-param={param.name}
    >
      <label for={id}>
        {param.name}
        {param.type === 'path' ? (
          <span class="adm-job-label-note">{` in folder ${param.folder ?? '?'}`}</span>
        ) : null}
        {param.optional ? <span class="adm-job-label-note"> (optional)</span> : null}
      </label>
      {control}
      {hint.length > 0 ? (
        <small class="hint adm-job-hint" id={`${id}-hint`}>
          {hint.map((part, index) => (
            <>
              {index > 0 ? ' ' : null}
              {part}
            </>
          ))}
        </small>
      ) : null}
      {problem ? (
        <p class="adm-field-error" id={`${id}-error`} data-testid="job-param-error">
          {sentence(problem)}
        </p>
      ) : null}
    </div>
  );
}

function verb(run: JobRun): string {
  return run.status === 'queued' ? 'queued' : 'started';
}

function RunForm(props: { template: JobTemplate; onStarted: (run: JobRun) => void }): JSX.Element {
  const { template } = props;
  const [values, setValues] = useState<Record<string, string>>(() => initialValues(template));
  const [problems, setProblems] = useState<Record<string, string>>({});
  const action = useAction();
  const formRef = useRef<HTMLFormElement>(null);

  // After a refusal, focus the first field the server named.
  useEffect(() => {
    const first = template.params.find((param) => problems[param.name] !== undefined);
    if (!first) return;
    formRef.current?.querySelector<HTMLElement>(`#${fieldId(template.name, first.name)}`)?.focus();
  }, [problems]);

  const submit = (event: Event) => {
    event.preventDefault();
    setProblems({});
    let started: JobRun | null = null;
    void action.run(
      async () => {
        try {
          const { run } = await api.adminStartJob({
            template: template.name,
            params: requestParams(template.params, values),
          });
          started = run;
          props.onStarted(run);
        } catch (error) {
          if (!(error instanceof JobParamsError)) throw error;
          const known = new Set(template.params.map((param) => param.name));
          const byField: Record<string, string> = {};
          let unknown = false;
          for (const detail of error.details) {
            if (!known.has(detail.param)) unknown = true;
            else {
              const previous = byField[detail.param];
              byField[detail.param] = previous ? `${previous} ${detail.message}` : detail.message;
            }
          }
          setProblems(byField);
          // When every problem is shown at its field, a summary; otherwise the server's list.
          const fields = Object.keys(byField).length;
          const summary =
            unknown || fields === 0
              ? error.message
              : `The server refused ${fields === 1 ? 'a parameter' : `${fields} parameters`}: see the marked ${fields === 1 ? 'field' : 'fields'}.`;
          throw new ApiError(error.status, error.code, summary, error.requestId, undefined);
        }
      },
      () => (started ? `Run ${started.id} ${verb(started)}; its log is below.` : null),
    );
  };

  return (
    <form
      ref={formRef}
      class="ui-form adm-job-form"
      onSubmit={submit}
      noValidate
      aria-label={`Run ${template.name}`}
      data-testid="job-form"
    >
      {template.params.length === 0 ? (
        <p class="muted">This template takes no parameters.</p>
      ) : (
        template.params.map((param) => (
          <ParamField
            key={param.name}
            template={template.name}
            param={param}
            value={values[param.name] ?? ''}
            problem={problems[param.name]}
            onValue={(value) => {
              setValues((current) => ({ ...current, [param.name]: value }));
            }}
          />
        ))
      )}
      <SubmitRow label="Run" busyLabel="Starting…" busy={action.busy}>
        <button
          type="button"
          class="btn"
          disabled={action.busy}
          onClick={() => {
            setValues(initialValues(template));
            setProblems({});
            action.clear();
          }}
        >
          Reset
        </button>
      </SubmitRow>
      <Feedback error={action.error} notice={action.notice} />
    </form>
  );
}

function TemplateList(props: {
  templates: JobTemplate[];
  selected: string | null;
  onSelect: (name: string) => void;
}): JSX.Element {
  return (
    <ul class="adm-job-templates" aria-label="Job templates">
      {props.templates.map((template) => (
        <li key={template.name}>
          <button
            type="button"
            class="adm-job-template"
            aria-pressed={props.selected === template.name ? 'true' : 'false'}
            data-testid="job-template"
            data-template={template.name}
            onClick={() => props.onSelect(template.name)}
          >
            <span class="adm-job-template-head">
              <code class="adm-job-template-name">{template.name}</code>
              {template.builtin ? <span class="badge">built-in</span> : null}
            </span>
            {template.description ? (
              <span class="adm-job-template-desc">{template.description}</span>
            ) : null}
          </button>
        </li>
      ))}
    </ul>
  );
}

/** jobs.json could not be used: the server's reason, which names the fix. */
function JobsFileError(props: { error: string }): JSX.Element {
  return (
    <div class="adm-job-file-error" role="alert" data-testid="jobs-file-error">
      <p>
        <strong>Problem in jobs.json</strong>
      </p>
      <p>{props.error}</p>
      <p class="hint">
        Fix jobs.json in the Palisade home folder and press Refresh: the server reads it again
        whenever it changes.
      </p>
    </div>
  );
}

// ---------- One run ----------

type StreamState = 'connecting' | 'live' | 'reconnecting' | 'ended' | 'failed';

const STREAM_TEXT: Record<StreamState, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Connection lost; reconnecting…',
  ended: 'Complete',
  failed: '',
};

/** The log, following new lines unless the reader scrolled up. */
function LiveLog(props: { text: string; cut: boolean; state: StreamState }): JSX.Element {
  const ref = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  const [atBottom, setAtBottom] = useState(true);

  useLayoutEffect(() => {
    const element = ref.current;
    if (element && stick.current) element.scrollTop = element.scrollHeight;
  }, [props.text]);

  const onScroll = () => {
    const element = ref.current;
    if (!element) return;
    const bottom = element.scrollHeight - element.scrollTop - element.clientHeight < NEAR_BOTTOM_PX;
    stick.current = bottom;
    setAtBottom(bottom);
  };

  const jump = () => {
    const element = ref.current;
    stick.current = true;
    setAtBottom(true);
    if (element) element.scrollTop = element.scrollHeight;
  };

  return (
    <div class="adm-job-log-wrap">
      <div class="adm-job-log-bar">
        <h3 id="adm-job-log-title">Log</h3>
        <span class="muted" role="status" data-testid="job-log-state">
          {STREAM_TEXT[props.state]}
        </span>
      </div>
      {props.cut ? (
        <p class="hint">
          Showing the last part of a long log; <code>palisade jobs logs ID</code> prints all of it.
        </p>
      ) : null}
      <pre
        ref={ref}
        class="adm-job-log"
        role="log"
        aria-live="off"
        aria-labelledby="adm-job-log-title"
        tabIndex={0}
        data-testid="job-log"
        onScroll={onScroll}
      >
        {props.text === '' ? (
          <span class="muted">{props.state === 'ended' ? 'No output.' : 'No output yet.'}</span>
        ) : (
          props.text
        )}
      </pre>
      {atBottom ? null : (
        <button type="button" class="btn btn-sm adm-job-log-jump" onClick={jump}>
          Jump to the end
        </button>
      )}
    </div>
  );
}

function RunFacts(props: { run: JobRun; now: number }): JSX.Element {
  const { run } = props;
  const duration = runDuration(run, props.now);
  const params = paramsText(run.params);
  const finished = !isActive(run);
  return (
    <dl class="adm-job-facts">
      <dt>Template</dt>
      <dd>
        <code>{run.template}</code>
      </dd>
      <dt>Parameters</dt>
      <dd>{params === '' ? <span class="muted">None</span> : <code>{params}</code>}</dd>
      <dt>Progress</dt>
      <dd>
        <Progress run={run} label={`Progress of run ${run.id}`} />
      </dd>
      <dt>Created by</dt>
      <dd>{run.created_by}</dd>
      <dt>Created</dt>
      <dd>
        <Time value={run.created_at} seconds />
      </dd>
      <dt>Started</dt>
      <dd>
        <Time value={run.started_at} seconds empty={run.status === 'queued' ? 'Not yet' : '—'} />
      </dd>
      {finished ? (
        <>
          <dt>Finished</dt>
          <dd>
            <Time value={run.finished_at} seconds />
          </dd>
        </>
      ) : null}
      <dt>Duration</dt>
      <dd>{duration ?? <span class="muted">—</span>}</dd>
      {finished && (run.exit_code !== null || run.signal !== null) ? (
        <>
          <dt>Exit</dt>
          <dd data-testid="job-exit">
            {run.exit_code !== null ? `code ${run.exit_code}` : `signal ${run.signal ?? ''}`}
          </dd>
        </>
      ) : null}
      {run.reason ? (
        <>
          <dt>Reason</dt>
          <dd data-testid="job-reason">{run.reason}</dd>
        </>
      ) : null}
    </dl>
  );
}

function RunDetail(props: {
  id: string;
  initial: JobRun | undefined;
  /** Changes when the view is asked to take the focus (opened from the table). */
  focusToken: number;
  onRun: (run: JobRun) => void;
  onClose: () => void;
}): JSX.Element {
  const [run, setRun] = useState<JobRun | null>(props.initial ?? null);
  const [log, setLog] = useState<{ text: string; cut: boolean }>({ text: '', cut: false });
  const [stream, setStream] = useState<StreamState>('connecting');
  const [error, setError] = useState<string | null>(null);
  const cancel = useAction();
  const onRun = useRef(props.onRun);
  onRun.current = props.onRun;
  const sectionRef = useRef<HTMLElement>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);
  const now = useNow(run?.status === 'running');

  // Answers can arrive out of order (the cancel request's reply after the stream's `end`):
  // a finished run never goes back to an earlier state.
  const latest = useRef(run);
  const update = (next: JobRun) => {
    const previous = latest.current;
    const kept = previous !== null && !isActive(previous) && isActive(next) ? previous : next;
    latest.current = kept;
    setRun(kept);
    onRun.current(kept);
  };

  useEffect(() => {
    if (props.focusToken === 0) return;
    sectionRef.current?.scrollIntoView({ block: 'start' });
    headingRef.current?.focus({ preventScroll: true });
  }, [props.focusToken]);

  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    // Where a new connection resumes the log, and the end of the last chunk shown: a chunk
    // sent again after a reconnect is not shown twice.
    let resumeAt: string | undefined;
    let shownUpTo = -1;
    let finished = false;

    const append = (text: string) =>
      setLog((previous) => {
        const all = previous.text + text;
        return all.length > LOG_KEEP_CHARS
          ? { text: all.slice(all.length - LOG_KEEP_CHARS), cut: true }
          : { text: all, cut: previous.cut };
      });

    const onEvent = (event: JobRunEvent) => {
      if (event.type === 'log') {
        if (event.id !== null && /^\d+$/.test(event.id)) {
          const end = Number(event.id);
          if (end <= shownUpTo) return;
          shownUpTo = end;
          resumeAt = event.id;
        }
        setStream('live');
        append(event.text);
        return;
      }
      update(event.run);
      if (event.type === 'end') finished = true;
      else setStream('live');
    };

    const follow = async () => {
      try {
        update((await api.adminJobRun(props.id)).run);
      } catch (failure) {
        if (signal.aborted) return;
        setError(errorMessage(failure));
        setStream('failed');
        return;
      }
      // Connections in a row that ended without news: each waits twice as long before the next.
      let failures = 0;
      while (!signal.aborted && !finished) {
        const before = shownUpTo;
        try {
          await api.adminFollowJob(props.id, { lastEventId: resumeAt, signal, onEvent });
          failures = shownUpTo > before ? 0 : failures + 1;
        } catch (failure) {
          if (signal.aborted || isAbort(failure)) return;
          if (failure instanceof ApiError && failure.status >= 400 && failure.status < 500) {
            // The stream is refused: show what the plain log has.
            try {
              if (shownUpTo < 0) append((await api.adminJobLog(props.id)).text);
            } catch {
              // The refusal below says enough.
            }
            setError(errorMessage(failure));
            setStream('failed');
            return;
          }
          failures += 1;
        }
        if (finished || signal.aborted) break;
        // The stream closed before the run ended (a proxy's timeout, a lost connection).
        setStream('reconnecting');
        await sleep(Math.min(10_000, 500 * 2 ** failures), signal);
      }
      if (finished) setStream('ended');
    };
    void follow();
    return () => controller.abort();
  }, [props.id]);

  const active = run !== null && isActive(run);
  const cancelRun = () => {
    void cancel.run(
      async () => {
        try {
          update((await api.adminCancelJob(props.id)).run);
        } catch (failure) {
          // 409: it finished meanwhile; show how.
          if (failure instanceof ApiError && failure.status === 409) {
            void api.adminJobRun(props.id).then(
              (answer) => update(answer.run),
              () => undefined,
            );
          }
          throw failure;
        }
      },
      () => 'Cancel requested: the process is asked to stop (SIGTERM, then SIGKILL).',
    );
  };

  return (
    <section
      ref={sectionRef}
      class="card ui-section adm-job-detail"
      aria-labelledby="adm-job-detail-title"
      data-testid="job-run"
      data-run={props.id}
      data-status={run?.status}
    >
      <div class="adm-job-detail-head">
        <h2 id="adm-job-detail-title" ref={headingRef} tabIndex={-1}>
          Run <code>{props.id}</code>
        </h2>
        {run ? <StatusBadge status={run.status} /> : null}
        <div class="ui-actions adm-job-detail-actions">
          {active ? (
            <button
              type="button"
              class="btn btn-sm btn-danger"
              disabled={cancel.busy}
              onClick={cancelRun}
            >
              {cancel.busy ? 'Cancelling…' : 'Cancel run'}
            </button>
          ) : null}
          <button type="button" class="btn btn-sm" onClick={props.onClose}>
            Close
          </button>
        </div>
      </div>
      {run ? <RunFacts run={run} now={now} /> : error ? null : <Loading what="the run" />}
      <Feedback error={cancel.error} notice={active ? cancel.notice : null} />
      <Feedback error={error} />
      <LiveLog text={log.text} cut={log.cut} state={stream} />
    </section>
  );
}

// ---------- The runs ----------

function RunsTable(props: {
  runs: JobRun[];
  now: number;
  selected: string | null;
  onOpen: (run: JobRun) => void;
}): JSX.Element {
  return (
    <ScrollTable label="Job runs">
      <TableHead
        columns={[
          'Status',
          'Template',
          'Parameters',
          'Progress',
          'Created by',
          'Started',
          'Duration',
        ]}
        actions
      />
      <tbody>
        {props.runs.map((run) => {
          const duration = runDuration(run, props.now);
          const params = paramsText(run.params);
          return (
            <tr
              key={run.id}
              class={props.selected === run.id ? 'adm-job-row--selected' : undefined}
              data-testid="job-run-row"
              data-run={run.id}
              data-status={run.status}
            >
              <td>
                <StatusBadge status={run.status} />
              </td>
              <th scope="row">
                <code>{run.template}</code>
              </th>
              <td class="ui-wrap">
                {params === '' ? <span class="muted">—</span> : <code>{params}</code>}
              </td>
              <td>
                <Progress run={run} label={`Progress of run ${run.id}`} />
              </td>
              <td>{run.created_by}</td>
              <td>
                <Time
                  value={run.started_at}
                  seconds
                  empty={run.status === 'queued' ? 'Not yet' : '—'}
                />
              </td>
              <td>{duration ?? <span class="muted">—</span>}</td>
              <td>
                <button
                  type="button"
                  class="btn btn-sm"
                  aria-label={`${isActive(run) ? 'Follow' : 'Open'} run ${run.id}`}
                  onClick={() => props.onOpen(run)}
                >
                  {isActive(run) ? 'Follow' : 'Open'}
                </button>
              </td>
            </tr>
          );
        })}
      </tbody>
    </ScrollTable>
  );
}

export function JobsPanel(): JSX.Element {
  const templates = useLoad(() => api.adminJobTemplates());
  const runs = useLoad(() => api.adminJobRuns({ limit: PAGE }).then((answer) => answer.runs));
  const [selected, setSelected] = useState<string | null>(null);
  const [open, setOpen] = useState<{ id: string; initial?: JobRun; focus: number } | null>(null);
  const focusCount = useRef(0);

  const active = runs.data?.some(isActive) ?? false;
  const now = useNow(active);

  // While a run is queued or running, refresh the table a moment after each answer.
  useEffect(() => {
    if (!active || runs.loading) return;
    const timer = setTimeout(runs.reload, POLL_MS);
    return () => clearTimeout(timer);
  }, [active, runs.loading, runs.data]);

  const mergeRun = (run: JobRun) =>
    runs.setData((list) =>
      list === undefined
        ? [run]
        : list.some((item) => item.id === run.id)
          ? list.map((item) => (item.id === run.id ? run : item))
          : [run, ...list],
    );

  const list = templates.data?.templates;
  const template = list?.find((item) => item.name === selected);

  return (
    <>
      <Section
        id="adm-jobs"
        title="Jobs"
        intro="Run the built-in jobs and the templates defined in jobs.json in the Palisade home folder. Every start and cancel goes to the audit log."
      >
        {templates.data?.error ? <JobsFileError error={templates.data.error} /> : null}
        <LoadedView
          loaded={{ data: list, error: templates.error }}
          what="job templates"
          empty="No job templates."
        >
          {(items) => (
            <TemplateList
              templates={items}
              selected={template ? template.name : null}
              onSelect={setSelected}
            />
          )}
        </LoadedView>
        <div class="ui-actions">
          <button
            type="button"
            class="btn"
            disabled={templates.loading}
            onClick={() => templates.reload()}
          >
            {templates.loading && templates.data !== undefined ? 'Refreshing…' : 'Refresh'}
          </button>
          {list && !template ? (
            <span class="muted">Choose a template to fill in its parameters.</span>
          ) : null}
        </div>
      </Section>
      {template ? (
        <Section
          id="adm-jobs-form"
          title={`Run ${template.name}`}
          intro={template.description || undefined}
        >
          <RunForm
            key={template.name}
            template={template}
            onStarted={(run) => {
              mergeRun(run);
              setOpen({ id: run.id, initial: run, focus: 0 });
              runs.reload();
            }}
          />
        </Section>
      ) : null}
      {open ? (
        <RunDetail
          key={open.id}
          id={open.id}
          initial={open.initial}
          focusToken={open.focus}
          onRun={mergeRun}
          onClose={() => setOpen(null)}
        />
      ) : null}
      <Section
        id="adm-jobs-runs"
        title="Runs"
        intro="Newest first; refreshed every few seconds while a run is queued or running."
      >
        <LoadedView loaded={runs} what="job runs" empty="No runs yet.">
          {(items) => (
            <RunsTable
              runs={items}
              now={now}
              selected={open?.id ?? null}
              onOpen={(run) => {
                focusCount.current += 1;
                setOpen({ id: run.id, initial: run, focus: focusCount.current });
              }}
            />
          )}
        </LoadedView>
      </Section>
    </>
  );
}

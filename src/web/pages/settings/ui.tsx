export { downloadText } from '../../components/download.js';
export { Field, TextField } from '../../components/form.js';
/**
 * Small building blocks shared by the Settings and Admin pages: loading and action state,
 * error and success messages, labelled fields, dates, scrolling tables, two-step confirmations,
 * copy and download. Everything the server sends is rendered as text, never as HTML.
 */
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../../api.js';
import '../settings.css';

/** A message for a failed call: the server's own words, a retry hint and the request id. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    let text = error.message;
    if (error.status === 429 && error.retryAfter !== undefined && error.retryAfter > 0) {
      text += ` Try again in ${error.retryAfter} s.`;
    }
    if (error.requestId) text += ` (request ${error.requestId})`;
    return text;
  }
  if (error instanceof TypeError) return 'Palisade could not be reached. Check your connection.';
  if (error instanceof Error && error.message) return error.message;
  return 'Something went wrong.';
}

export interface Action {
  busy: boolean;
  error: string | null;
  notice: string | null;
  /**
   * Runs `work` with the busy flag set; answers true when it succeeded. A failure becomes
   * `error`; success sets `notice` to `success` (nothing when it is omitted).
   */
  run: (work: () => Promise<void>, success?: string | (() => string | null)) => Promise<boolean>;
  /** Shows a client-side error (a check that failed before any request). */
  fail: (message: string) => void;
  /** Clears the messages. */
  clear: () => void;
}

/** The state of a form or button that calls the API. */
export function useAction(): Action {
  const [state, setState] = useState<{
    busy: boolean;
    error: string | null;
    notice: string | null;
  }>({ busy: false, error: null, notice: null });
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);
  return {
    ...state,
    run: async (work, success) => {
      setState({ busy: true, error: null, notice: null });
      try {
        await work();
        const notice = typeof success === 'function' ? success() : (success ?? null);
        if (alive.current) setState({ busy: false, error: null, notice });
        return true;
      } catch (error) {
        if (alive.current) setState({ busy: false, error: errorMessage(error), notice: null });
        return false;
      }
    },
    fail: (message) => setState({ busy: false, error: message, notice: null }),
    clear: () => setState({ busy: false, error: null, notice: null }),
  };
}

export interface RowAction extends Action {
  /** The row whose action is running, or null. */
  pending: string | null;
  /** `run`, remembering `row` as `pending` until the work is over. */
  runFor: (
    row: string,
    work: () => Promise<void>,
    success?: string | (() => string | null),
  ) => Promise<boolean>;
}

/** An action for the rows of a table: like `useAction`, and it knows which row is busy. */
export function useRowAction(): RowAction {
  const action = useAction();
  const [pending, setPending] = useState<string | null>(null);
  return {
    ...action,
    pending,
    runFor: (row, work, success) => {
      setPending(row);
      return action.run(work, success).then((done) => {
        setPending(null);
        return done;
      });
    },
  };
}

export interface Loaded<T> {
  data: T | undefined;
  setData: (update: T | ((previous: T | undefined) => T | undefined)) => void;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/** Loads data when mounted, again on `reload()` and whenever one of `deps` changes. */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[] = []): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let current = true;
    setLoading(true);
    setError(null);
    load().then(
      (value) => {
        if (!current) return;
        setData(() => value);
        setLoading(false);
      },
      (failure: unknown) => {
        if (!current) return;
        setError(errorMessage(failure));
        setLoading(false);
      },
    );
    return () => {
      current = false;
    };
  }, [version, ...deps]);
  return {
    data,
    setData: (update) =>
      setData((previous) =>
        typeof update === 'function'
          ? (update as (previous: T | undefined) => T | undefined)(previous)
          : update,
      ),
    error,
    loading,
    reload: () => setVersion((value) => value + 1),
  };
}

/** The error (role="alert") and success notice of an action. */
export function Feedback(props: { error?: string | null; notice?: string | null }): JSX.Element {
  return (
    <>
      {props.error ? (
        <p class="error" role="alert">
          {props.error}
        </p>
      ) : null}
      {props.notice ? (
        <p class="notice" role="status">
          {props.notice}
        </p>
      ) : null}
    </>
  );
}

/** "Loading …" while the first answer is on its way. */
export function Loading(props: { what: string }): JSX.Element {
  return (
    <p class="muted" role="status" aria-live="polite">
      Loading {props.what}…
    </p>
  );
}

/** A section of a page: a card with a heading. */
export function Section(props: {
  id: string;
  title: string;
  intro?: ComponentChildren;
  children: ComponentChildren;
}): JSX.Element {
  return (
    <section class="card ui-section" aria-labelledby={`${props.id}-title`}>
      <h2 id={`${props.id}-title`}>{props.title}</h2>
      {props.intro ? <p class="muted">{props.intro}</p> : null}
      {props.children}
    </section>
  );
}

const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const DATE_TIME_SECONDS = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium',
  timeStyle: 'medium',
});

/** A date from the server in the reader's own format; `empty` when there is none. */
export function Time(props: {
  value: string | null | undefined;
  empty?: string;
  seconds?: boolean;
}): JSX.Element {
  if (!props.value) return <span class="muted">{props.empty ?? '—'}</span>;
  const date = new Date(props.value);
  if (Number.isNaN(date.getTime())) return <span>{props.value}</span>;
  return (
    <time dateTime={props.value} title={date.toISOString()}>
      {(props.seconds ? DATE_TIME_SECONDS : DATE_TIME).format(date)}
    </time>
  );
}

/**
 * Loaded data, or its state: "Loading …", the error, or `empty` for an empty list. An error of a
 * later reload is shown below the data.
 */
export function LoadedView<T extends readonly unknown[]>(props: {
  loaded: Pick<Loaded<T>, 'data' | 'error'>;
  what: string;
  empty?: string;
  children: (data: T) => ComponentChildren;
}): JSX.Element {
  const { data, error } = props.loaded;
  if (data === undefined) return error ? <Feedback error={error} /> : <Loading what={props.what} />;
  return (
    <>
      {data.length === 0 && props.empty !== undefined ? (
        <p class="muted">{props.empty}</p>
      ) : (
        props.children(data)
      )}
      {error ? <Feedback error={error} /> : null}
    </>
  );
}

/** A Refresh button ("Refreshing…" while it reloads) that also clears the action's messages. */
export function RefreshButton(props: {
  loaded: Pick<Loaded<unknown>, 'data' | 'loading' | 'reload'>;
  action: Pick<Action, 'clear'>;
}): JSX.Element {
  const { loaded, action } = props;
  return (
    <div class="ui-actions">
      <button
        type="button"
        class="btn"
        disabled={loaded.loading}
        onClick={() => {
          action.clear();
          loaded.reload();
        }}
      >
        {loaded.loading && loaded.data !== undefined ? 'Refreshing…' : 'Refresh'}
      </button>
    </div>
  );
}

/** A form's submit button, labelled `busyLabel` while `busy`, and any further buttons after it. */
export function SubmitRow(props: {
  label: string;
  busyLabel: string;
  busy: boolean;
  /** Defaults to `busy`. */
  disabled?: boolean;
  danger?: boolean;
  children?: ComponentChildren;
}): JSX.Element {
  return (
    <div class="ui-actions">
      <button
        type="submit"
        class={props.danger ? 'btn btn-danger' : 'btn btn-primary'}
        disabled={props.disabled ?? props.busy}
      >
        {props.busy ? props.busyLabel : props.label}
      </button>
      {props.children}
    </div>
  );
}

/** The column headings of a table; `actions` adds a last column headed "Actions" for screen readers. */
export function TableHead(props: { columns: readonly string[]; actions?: boolean }): JSX.Element {
  return (
    <thead>
      <tr>
        {props.columns.map((column) => (
          <th key={column} scope="col">
            {column}
          </th>
        ))}
        {props.actions ? (
          <th scope="col">
            <span class="sr-only">Actions</span>
          </th>
        ) : null}
      </tr>
    </thead>
  );
}

/** A table that scrolls sideways on narrow screens instead of squeezing its columns. */
export function ScrollTable(props: { label: string; children: ComponentChildren }): JSX.Element {
  return (
    <div class="ui-table-scroll" role="region" aria-label={props.label} tabIndex={0}>
      <table class="table">{props.children}</table>
    </div>
  );
}

/**
 * A button (for table rows: small) that asks before it acts: the first click shows the question with a confirming
 * button and Cancel, in place (no browser dialog).
 */
export function ConfirmButton(props: {
  label: string;
  question: string;
  confirmLabel: string;
  onConfirm: () => void;
  disabled?: boolean;
}): JSX.Element {
  const [asking, setAsking] = useState(false);
  const confirmRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) confirmRef.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button
        type="button"
        class="btn btn-sm btn-danger"
        disabled={props.disabled}
        onClick={() => setAsking(true)}
      >
        {props.label}
      </button>
    );
  }
  return (
    <span class="ui-confirm" role="group" aria-label={props.question}>
      <span>{props.question}</span>
      <button
        ref={confirmRef}
        type="button"
        class="btn btn-sm btn-danger"
        disabled={props.disabled}
        onClick={() => {
          setAsking(false);
          props.onConfirm();
        }}
      >
        {props.confirmLabel}
      </button>
      <button type="button" class="btn btn-sm" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

/** Copies text to the clipboard; falls back to a hidden textarea where the API is missing. */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (window.isSecureContext && navigator.clipboard) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Refused (no permission, no focus): try the old way.
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.className = 'ui-offscreen';
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand('copy');
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

/** A "Copy" button that says whether copying worked. */
export function CopyButton(props: { text: string; label?: string }): JSX.Element {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  useEffect(() => {
    if (state === 'idle') return;
    const timer = setTimeout(() => setState('idle'), 2500);
    return () => clearTimeout(timer);
  }, [state]);
  const label = props.label ?? 'Copy';
  return (
    <button
      type="button"
      class="btn"
      onClick={() => {
        void copyText(props.text).then((copied) => setState(copied ? 'copied' : 'failed'));
      }}
    >
      {state === 'copied' ? 'Copied' : state === 'failed' ? 'Copy failed: select and copy' : label}
    </button>
  );
}

/** Base64 of the UTF-8 bytes of `text` (btoa alone only takes Latin-1). */
export function base64Utf8(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

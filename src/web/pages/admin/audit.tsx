import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type AuditEntry } from '../../api.js';
import {
  errorMessage,
  Feedback,
  Loading,
  ScrollTable,
  Section,
  TableHead,
  TextField,
  Time,
} from '../settings/ui.js';

const PAGE = 50;

type Detail = NonNullable<AuditEntry['details']>[string];

function valueText(value: Detail): string {
  const text = Array.isArray(value) ? value.join(',') : value === null ? 'null' : String(value);
  return text === '' || /[\s="]/.test(text) ? JSON.stringify(text) : text;
}

/** Details as `key=value` pairs; values with spaces or `=` are quoted. */
export function detailsText(entry: AuditEntry): string {
  const pairs = Object.entries(entry.details ?? {}).map(
    ([key, value]) => `${key}=${valueText(value)}`,
  );
  if (entry.request_id) pairs.push(`request_id=${entry.request_id}`);
  return pairs.join(' ');
}

interface Filters {
  action: string;
  actor: string;
}

interface Page {
  entries: AuditEntry[];
  next: number | null;
}

export function AuditPanel(): JSX.Element {
  const [draft, setDraft] = useState<Filters>({ action: '', actor: '' });
  const [filters, setFilters] = useState<Filters>({ action: '', actor: '' });
  const [page, setPage] = useState<Page | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // Answers for an older filter or page are dropped.
  const generation = useRef(0);

  const load = (before: number | undefined) => {
    const mine = ++generation.current;
    setLoading(true);
    setError(null);
    api
      .adminAudit({
        action: filters.action.trim(),
        actor: filters.actor.trim(),
        before,
        limit: PAGE,
      })
      .then(
        (answer) => {
          if (mine !== generation.current) return;
          setPage((previous) => ({
            entries:
              before === undefined
                ? answer.entries
                : [...(previous?.entries ?? []), ...answer.entries],
            next: answer.next_before,
          }));
          setLoading(false);
        },
        (failure: unknown) => {
          if (mine !== generation.current) return;
          setError(errorMessage(failure));
          setLoading(false);
        },
      );
  };

  useEffect(() => {
    load(undefined);
  }, [filters]);

  const apply = (event: Event) => {
    event.preventDefault();
    setPage(null);
    setFilters({ action: draft.action.trim(), actor: draft.actor.trim() });
  };

  const clear = () => {
    setPage(null);
    setDraft({ action: '', actor: '' });
    setFilters({ action: '', actor: '' });
  };

  const filtered = filters.action !== '' || filters.actor !== '';

  return (
    <Section
      id="adm-audit"
      title="Audit log"
      intro="Every sign-in, key, user and setting change, newest first. Secrets are never logged."
    >
      <form
        class="ui-form ui-form-row"
        onSubmit={apply}
        role="search"
        aria-label="Filter the audit log"
      >
        <TextField
          id="adm-audit-action"
          label="Action"
          name="action"
          type="text"
          autocomplete="off"
          spellcheck={false}
          placeholder="auth.login"
          value={draft.action}
          onValue={(action) => setDraft((current) => ({ ...current, action }))}
        />
        <TextField
          id="adm-audit-actor"
          label="Actor"
          name="actor"
          type="text"
          autocomplete="off"
          spellcheck={false}
          value={draft.actor}
          onValue={(actor) => setDraft((current) => ({ ...current, actor }))}
        />
        <div class="ui-actions">
          <button type="submit" class="btn btn-primary" disabled={loading}>
            Filter
          </button>
          <button type="button" class="btn" disabled={loading} onClick={clear}>
            {filtered ? 'Clear filters' : 'Refresh'}
          </button>
        </div>
      </form>
      {page === null ? (
        error ? null : (
          <Loading what="the audit log" />
        )
      ) : page.entries.length === 0 ? (
        <p class="muted">{filtered ? 'No entries match these filters.' : 'No entries yet.'}</p>
      ) : (
        <ScrollTable label="Audit log">
          <TableHead columns={['Time', 'Action', 'Actor', 'Target', 'IP address', 'Details']} />
          <tbody>
            {page.entries.map((entry) => (
              <tr key={entry.seq} data-testid="audit-row">
                <td>
                  <Time value={entry.ts} seconds />
                </td>
                <td>
                  <code>{entry.action}</code>
                </td>
                <td>{entry.actor}</td>
                <td>{entry.target ?? <span class="muted">—</span>}</td>
                <td>{entry.ip ?? <span class="muted">—</span>}</td>
                <td class="ui-wrap">
                  <code class="adm-details">{detailsText(entry)}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      )}
      <Feedback error={error} />
      {page !== null && page.next !== null ? (
        <div class="ui-actions">
          <button
            type="button"
            class="btn"
            disabled={loading}
            onClick={() => load(page.next ?? undefined)}
          >
            {loading ? 'Loading…' : 'Older'}
          </button>
        </div>
      ) : page !== null && loading ? (
        <Loading what="the audit log" />
      ) : null}
    </Section>
  );
}

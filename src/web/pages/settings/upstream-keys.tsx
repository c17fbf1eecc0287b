import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type ModelInfo, type Settings } from '../../api.js';
import {
  Feedback,
  Field,
  ScrollTable,
  Section,
  SubmitRow,
  TableHead,
  TextField,
  Time,
  useRowAction,
} from './ui.js';

/** Personal API keys for upstreams, used instead of the upstream's shared key. */
export function UpstreamKeysSection(props: {
  settings: Settings;
  models: ModelInfo[] | undefined;
  onSettings: (settings: Settings) => void;
}): JSX.Element {
  const upstreams = [...new Set((props.models ?? []).map((model) => model.upstream))].sort();
  // '' in the select means "another upstream": the name is then typed.
  const [choice, setChoice] = useState<string | null>(null);
  const [typed, setTyped] = useState('');
  const [key, setKey] = useState('');
  const action = useRowAction();

  const selected = choice ?? upstreams[0] ?? '';
  const name = (selected === '' ? typed : selected).trim();
  const keys = props.settings.upstream_keys;

  const submit = (event: Event) => {
    event.preventDefault();
    if (name === '') {
      action.fail('Choose or type the upstream the key is for.');
      return;
    }
    if (key.trim() === '') {
      action.fail('Paste the API key.');
      return;
    }
    void action.run(async () => {
      props.onSettings(await api.setUpstreamKey(name, key.trim()));
      setKey('');
      setTyped('');
    }, `Key saved for ${name}.`);
  };

  const remove = (upstream: string) => {
    void action.runFor(
      upstream,
      async () => {
        props.onSettings(await api.removeUpstreamKey(upstream));
      },
      `Key removed for ${upstream}.`,
    );
  };

  return (
    <Section
      id="st-upstream-keys"
      title="Personal upstream keys"
      intro="Used instead of the upstream's shared key for your chats; stored encrypted; never shown again."
    >
      {keys.length === 0 ? (
        <p class="muted">No personal keys.</p>
      ) : (
        <ScrollTable label="Personal upstream keys">
          <TableHead columns={['Upstream', 'Key', 'Added']} actions />
          <tbody>
            {keys.map((item) => (
              <tr key={item.upstream}>
                <td>{item.upstream}</td>
                <td>
                  <code>{item.masked}</code>
                </td>
                <td>
                  <Time value={item.created_at} />
                </td>
                <td>
                  <button
                    type="button"
                    class="btn btn-sm btn-danger"
                    disabled={action.busy}
                    aria-label={`Remove the key for ${item.upstream}`}
                    onClick={() => remove(item.upstream)}
                  >
                    {action.pending === item.upstream ? 'Removing…' : 'Remove'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      )}
      <form class="ui-form" onSubmit={submit} noValidate>
        <h3>Add or replace a key</h3>
        {upstreams.length > 0 ? (
          <Field id="st-upstream-key-upstream" label="Upstream">
            <select
              id="st-upstream-key-upstream"
              class="input"
              name="upstream"
              value={selected}
              onChange={(event) => setChoice(event.currentTarget.value)}
            >
              {upstreams.map((upstream) => (
                <option key={upstream} value={upstream}>
                  {upstream}
                </option>
              ))}
              <option value="">Another upstream (type its name)</option>
            </select>
          </Field>
        ) : null}
        {selected === '' ? (
          <TextField
            id="st-upstream-key-name"
            label="Upstream name"
            name="upstream_name"
            type="text"
            autocomplete="off"
            spellcheck={false}
            required
            value={typed}
            onValue={setTyped}
          />
        ) : null}
        <TextField
          id="st-upstream-key-key"
          label="API key"
          hint={
            keys.some((item) => item.upstream === name)
              ? `Replaces your current key for ${name}.`
              : undefined
          }
          name="key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          value={key}
          onValue={setKey}
        />
        <SubmitRow
          label="Save key"
          busyLabel="Saving…"
          busy={action.busy && action.pending === null}
          disabled={action.busy}
        />
      </form>
      <Feedback error={action.error} notice={action.notice} />
    </Section>
  );
}

import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type UpstreamInfo } from '../../api.js';
import {
  ConfirmButton,
  Feedback,
  LoadedView,
  RefreshButton,
  ScrollTable,
  Section,
  SubmitRow,
  TableHead,
  TextField,
  Time,
  useAction,
  useLoad,
  useRowAction,
} from '../settings/ui.js';

const SOURCES: Record<UpstreamInfo['source'], string> = {
  config: 'Configuration',
  store: 'Added here',
  probe: 'Found on this machine',
};

function Health(props: { upstream: UpstreamInfo }): JSX.Element {
  const { upstream } = props;
  if (upstream.healthy) return <span class="badge badge-ok">Healthy</span>;
  if (upstream.checked_at === null) return <span class="badge">Not checked yet</span>;
  return <span class="badge badge-danger">Unreachable</span>;
}

function Models(props: { models: string[] }): JSX.Element {
  const count = props.models.length;
  if (count === 0) return <span class="muted">0</span>;
  return (
    <details class="adm-models">
      <summary>{count === 1 ? '1 model' : `${count} models`}</summary>
      <ul>
        {props.models.map((model) => (
          <li key={model}>
            <code>{model}</code>
          </li>
        ))}
      </ul>
    </details>
  );
}

function AddUpstreamForm(props: { onAdded: (upstream: UpstreamInfo) => void }): JSX.Element {
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const action = useAction();

  const submit = (event: Event) => {
    event.preventDefault();
    const trimmedName = name.trim();
    const trimmedUrl = url.trim();
    if (trimmedName === '' || trimmedUrl === '') {
      action.fail('Enter a name and a URL.');
      return;
    }
    void action.run(async () => {
      props.onAdded(await api.adminAddUpstream({ name: trimmedName, url: trimmedUrl }));
      setName('');
      setUrl('');
    }, `Added ${trimmedName}.`);
  };

  return (
    <form class="ui-form" onSubmit={submit} noValidate>
      <TextField
        id="adm-upstream-name"
        label="Name"
        name="name"
        type="text"
        autocomplete="off"
        spellcheck={false}
        placeholder="ollama"
        required
        value={name}
        onValue={setName}
      />
      <TextField
        id="adm-upstream-url"
        label="URL"
        name="url"
        type="url"
        inputMode="url"
        autocomplete="off"
        spellcheck={false}
        placeholder="http://127.0.0.1:11434"
        required
        value={url}
        onValue={setUrl}
      />
      <SubmitRow label="Add upstream" busyLabel="Adding…" busy={action.busy} />
      <Feedback error={action.error} notice={action.notice} />
    </form>
  );
}

export function UpstreamsPanel(): JSX.Element {
  const upstreams = useLoad(() => api.adminUpstreams().then((answer) => answer.upstreams));
  const action = useRowAction();

  const remove = (upstream: UpstreamInfo) => {
    void action.runFor(
      upstream.name,
      async () => {
        await api.adminRemoveUpstream(upstream.name);
        upstreams.setData((list) => list?.filter((item) => item.name !== upstream.name));
      },
      `Removed ${upstream.name}.`,
    );
  };

  const table = (
    <LoadedView
      loaded={upstreams}
      what="upstreams"
      empty="No upstreams. Add one below or start Palisade with --upstream."
    >
      {(list) => (
        <ScrollTable label="Upstreams">
          <TableHead
            columns={['Name', 'URL', 'Source', 'Health', 'Last error', 'Models']}
            actions
          />
          <tbody>
            {list.map((upstream) => (
              <tr key={upstream.name} data-testid="upstream-row">
                <th scope="row">{upstream.name}</th>
                <td class="ui-wrap">{upstream.url}</td>
                <td>{SOURCES[upstream.source] ?? upstream.source}</td>
                <td>
                  <Health upstream={upstream} />
                  {upstream.checked_at ? (
                    <small class="hint adm-checked">
                      <Time value={upstream.checked_at} />
                    </small>
                  ) : null}
                </td>
                <td class="ui-wrap">
                  {upstream.last_error ? (
                    <span class="adm-error-text">{upstream.last_error}</span>
                  ) : (
                    <span class="muted">—</span>
                  )}
                </td>
                <td>
                  <Models models={upstream.models} />
                </td>
                <td>
                  {upstream.source === 'store' ? (
                    <ConfirmButton
                      label={
                        action.pending === upstream.name && action.busy ? 'Removing…' : 'Remove'
                      }
                      question={`Remove ${upstream.name}?`}
                      confirmLabel="Yes, remove"
                      disabled={action.busy}
                      onConfirm={() => remove(upstream)}
                    />
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      )}
    </LoadedView>
  );

  return (
    <>
      <Section
        id="adm-upstreams"
        title="Upstreams"
        intro="The LLM servers behind Palisade and whether they answer."
      >
        <RefreshButton loaded={upstreams} action={action} />
        {table}
        <Feedback error={action.error} notice={action.notice} />
      </Section>
      <Section id="adm-upstreams-add" title="Add an upstream">
        <AddUpstreamForm
          onAdded={(added) =>
            upstreams.setData((list) => [
              ...(list ?? []).filter((item) => item.name !== added.name),
              added,
            ])
          }
        />
      </Section>
    </>
  );
}

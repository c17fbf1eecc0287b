import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type ApiKeyInfo } from '../../api.js';
import {
  ConfirmButton,
  CopyButton,
  Feedback,
  Field,
  LoadedView,
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

const DURATION = /^\d+(?:\.\d+)?(?:ms|s|m|h|d)$/;

type Scope = ApiKeyInfo['scope'];

function keyStatus(key: ApiKeyInfo): { label: string; bad: boolean } {
  if (key.revoked_at) return { label: 'Revoked', bad: true };
  if (key.expires_at && new Date(key.expires_at).getTime() <= Date.now()) {
    return { label: 'Expired', bad: true };
  }
  return { label: 'Active', bad: false };
}

function hintText(hint: string): string {
  return hint.startsWith('…') ? hint : `…${hint}`;
}

function CreateKeyForm(props: { onCreated: (key: string, info: ApiKeyInfo) => void }): JSX.Element {
  const [name, setName] = useState('');
  const [scope, setScope] = useState<Scope>('inference');
  const [models, setModels] = useState('');
  const [expires, setExpires] = useState('');
  const [rpm, setRpm] = useState('');
  const action = useAction();

  const submit = (event: Event) => {
    event.preventDefault();
    const trimmedName = name.trim();
    const modelList = models
      .split(',')
      .map((model) => model.trim())
      .filter((model) => model !== '');
    const expiry = expires.trim();
    const rate = rpm.trim();
    if (trimmedName === '') {
      action.fail('Give the key a name.');
      return;
    }
    if (expiry !== '' && !DURATION.test(expiry)) {
      action.fail('Write the expiry as a number and a unit: 90s, 15m, 12h or 30d.');
      return;
    }
    if (rate !== '' && !/^[1-9]\d*$/.test(rate)) {
      action.fail('Requests per minute must be a whole number above 0.');
      return;
    }
    void action.run(async () => {
      const created = await api.adminCreateKey({
        name: trimmedName,
        scope,
        ...(modelList.length > 0 ? { models: modelList } : {}),
        ...(expiry !== '' ? { expires: expiry } : {}),
        ...(rate !== '' ? { rpm: Number(rate) } : {}),
      });
      props.onCreated(created.key, created.api_key);
      setName('');
      setScope('inference');
      setModels('');
      setExpires('');
      setRpm('');
    });
  };

  return (
    <form class="ui-form" onSubmit={submit} noValidate>
      <TextField
        id="adm-key-name"
        label="Name"
        name="name"
        type="text"
        autocomplete="off"
        spellcheck={false}
        required
        value={name}
        onValue={setName}
      />
      <Field id="adm-key-scope" label="Scope">
        <select
          id="adm-key-scope"
          class="input"
          name="scope"
          value={scope}
          onChange={(event) =>
            setScope(event.currentTarget.value === 'admin' ? 'admin' : 'inference')
          }
        >
          <option value="inference">Inference (the /v1 API)</option>
          <option value="admin">Admin</option>
        </select>
      </Field>
      <TextField
        id="adm-key-models"
        label="Models (comma separated)"
        hint="Leave empty to allow every model. Patterns such as llama-* work too."
        name="models"
        type="text"
        autocomplete="off"
        spellcheck={false}
        aria-describedby="adm-key-models-hint"
        value={models}
        onValue={setModels}
      />
      <TextField
        id="adm-key-expires"
        label="Expires after"
        hint="Like 30d, 12h or 15m; empty: never."
        name="expires"
        type="text"
        autocomplete="off"
        spellcheck={false}
        placeholder="30d"
        aria-describedby="adm-key-expires-hint"
        value={expires}
        onValue={setExpires}
      />
      <TextField
        id="adm-key-rpm"
        label="Requests per minute"
        hint="Empty: no limit of its own."
        name="rpm"
        type="number"
        inputMode="numeric"
        min={1}
        step={1}
        aria-describedby="adm-key-rpm-hint"
        value={rpm}
        onValue={setRpm}
      />
      <SubmitRow label="Create key" busyLabel="Creating…" busy={action.busy} />
      <Feedback error={action.error} notice={action.notice} />
    </form>
  );
}

/** The new key, shown once. */
function NewKey(props: { name: string; secret: string; onDone: () => void }): JSX.Element {
  return (
    <div class="adm-new-key" role="region" aria-label={`New API key ${props.name}`}>
      <p class="notice" role="status">
        {`Key ${props.name} created. Copy it now: it is shown only once and cannot be read again.`}
      </p>
      <p class="ui-secret">
        <code data-testid="new-api-key">{props.secret}</code>
      </p>
      <div class="ui-actions">
        <CopyButton text={props.secret} label="Copy key" />
        <button type="button" class="btn" onClick={props.onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

export function KeysPanel(): JSX.Element {
  const keys = useLoad(() => api.adminKeys().then((answer) => answer.keys));
  const action = useRowAction();
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);

  const revoke = (key: ApiKeyInfo) => {
    void action.runFor(
      key.id,
      async () => {
        await api.adminRevokeKey(key.id);
        const revokedAt = new Date().toISOString();
        keys.setData((list) =>
          list?.map((item) => (item.id === key.id ? { ...item, revoked_at: revokedAt } : item)),
        );
        keys.reload();
      },
      `Key ${key.name} revoked.`,
    );
  };

  const table = (
    <LoadedView loaded={keys} what="API keys" empty="No API keys yet.">
      {(list) => (
        <ScrollTable label="API keys">
          <TableHead
            columns={[
              'Name',
              'Owner',
              'Scope',
              'Key',
              'Models',
              'RPM',
              'Expires',
              'Last used',
              'Status',
            ]}
            actions
          />
          <tbody>
            {list.map((key) => {
              const status = keyStatus(key);
              return (
                <tr key={key.id} data-testid="api-key-row">
                  <th scope="row">{key.name}</th>
                  <td>{key.owner ?? <span class="muted">—</span>}</td>
                  <td>{key.scope === 'admin' ? <span class="badge">admin</span> : 'inference'}</td>
                  <td>
                    <code>{hintText(key.hint)}</code>
                  </td>
                  <td class="ui-wrap">
                    {key.models && key.models.length > 0 ? (
                      key.models.join(', ')
                    ) : (
                      <span class="muted">All</span>
                    )}
                  </td>
                  <td>{key.rpm ?? <span class="muted">—</span>}</td>
                  <td>
                    <Time value={key.expires_at} empty="Never" />
                  </td>
                  <td>
                    <Time value={key.last_used_at} empty="Never" />
                  </td>
                  <td>
                    <span class={status.bad ? 'badge badge-danger' : 'badge badge-ok'}>
                      {status.label}
                    </span>
                  </td>
                  <td>
                    {key.revoked_at ? null : (
                      <ConfirmButton
                        label={action.pending === key.id && action.busy ? 'Revoking…' : 'Revoke'}
                        question={`Revoke ${key.name}? Clients using it stop working.`}
                        confirmLabel="Yes, revoke"
                        disabled={action.busy}
                        onConfirm={() => revoke(key)}
                      />
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </ScrollTable>
      )}
    </LoadedView>
  );

  return (
    <>
      <Section id="adm-keys" title="API keys" intro="Keys for the /v1 API (OpenAI and Anthropic).">
        {created ? (
          <NewKey name={created.name} secret={created.secret} onDone={() => setCreated(null)} />
        ) : null}
        {table}
        <Feedback error={action.error} notice={action.notice} />
      </Section>
      <Section id="adm-keys-create" title="New API key">
        <CreateKeyForm
          onCreated={(secret, info) => {
            setCreated({ name: info.name, secret });
            keys.setData((list) => [info, ...(list ?? []).filter((item) => item.id !== info.id)]);
          }}
        />
      </Section>
    </>
  );
}

import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type McpServerInfo, type Settings } from '../../api.js';
import { Feedback, Field, ScrollTable, Section, Time, useAction } from './ui.js';

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Remote MCP tool servers the chat may call for this user. */
export function McpServersSection(props: {
  settings: Settings;
  onSettings: (settings: Settings) => void;
}): JSX.Element {
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [token, setToken] = useState('');
  const action = useAction();
  const [removing, setRemoving] = useState<string | null>(null);
  const servers = props.settings.mcp_servers;

  const submit = (event: Event) => {
    event.preventDefault();
    const trimmedName = name.trim();
    const trimmedUrl = url.trim();
    if (trimmedName === '') {
      action.fail('Give the server a name.');
      return;
    }
    if (!isHttpUrl(trimmedUrl)) {
      action.fail('The URL must start with http:// or https://.');
      return;
    }
    void action.run(async () => {
      props.onSettings(
        await api.addMcpServer({
          name: trimmedName,
          url: trimmedUrl,
          ...(token.trim() === '' ? {} : { token: token.trim() }),
        }),
      );
      setName('');
      setUrl('');
      setToken('');
    }, `Added ${trimmedName}.`);
  };

  const remove = (server: McpServerInfo) => {
    setRemoving(server.id);
    void action
      .run(async () => {
        props.onSettings(await api.removeMcpServer(server.id));
      }, `Removed ${server.name}.`)
      .then(() => setRemoving(null));
  };

  return (
    <Section
      id="st-mcp"
      title="Remote MCP servers"
      intro="Tool servers your chats may call. Tokens are stored encrypted and never shown again."
    >
      {servers.length === 0 ? (
        <p class="muted">No MCP servers.</p>
      ) : (
        <ScrollTable label="Remote MCP servers">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">URL</th>
              <th scope="col">Token</th>
              <th scope="col">Added</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {servers.map((server) => (
              <tr key={server.id}>
                <td>{server.name}</td>
                <td class="ui-wrap">{server.url}</td>
                <td>
                  {server.token_masked ? (
                    <code>{server.token_masked}</code>
                  ) : (
                    <span class="muted">None</span>
                  )}
                </td>
                <td>
                  <Time value={server.created_at} />
                </td>
                <td>
                  <button
                    type="button"
                    class="btn btn-sm btn-danger"
                    disabled={action.busy}
                    aria-label={`Remove ${server.name}`}
                    onClick={() => remove(server)}
                  >
                    {removing === server.id ? 'Removing…' : 'Remove'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      )}
      <form class="ui-form" onSubmit={submit} noValidate>
        <h3>Add a server</h3>
        <Field id="st-mcp-name" label="Name">
          <input
            id="st-mcp-name"
            class="input"
            name="name"
            type="text"
            autocomplete="off"
            required
            value={name}
            onInput={(event) => setName(event.currentTarget.value)}
          />
        </Field>
        <Field id="st-mcp-url" label="URL">
          <input
            id="st-mcp-url"
            class="input"
            name="url"
            type="url"
            inputMode="url"
            autocomplete="off"
            spellcheck={false}
            placeholder="https://tools.example/mcp"
            required
            value={url}
            onInput={(event) => setUrl(event.currentTarget.value)}
          />
        </Field>
        <Field id="st-mcp-token" label="Token (optional)">
          <input
            id="st-mcp-token"
            class="input"
            name="token"
            type="password"
            autocomplete="off"
            spellcheck={false}
            value={token}
            onInput={(event) => setToken(event.currentTarget.value)}
          />
        </Field>
        <div class="ui-actions">
          <button type="submit" class="btn btn-primary" disabled={action.busy}>
            {action.busy && removing === null ? 'Adding…' : 'Add server'}
          </button>
        </div>
      </form>
      <Feedback error={action.error} notice={action.notice} />
    </Section>
  );
}

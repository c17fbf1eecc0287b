import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type McpServerInfo, type Settings } from '../../api.js';
import {
  Feedback,
  ScrollTable,
  Section,
  SubmitRow,
  TableHead,
  TextField,
  Time,
  useRowAction,
} from './ui.js';

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
  const action = useRowAction();
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
    void action.runFor(
      server.id,
      async () => {
        props.onSettings(await api.removeMcpServer(server.id));
      },
      `Removed ${server.name}.`,
    );
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
          <TableHead columns={['Name', 'URL', 'Token', 'Added']} actions />
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
                    {action.pending === server.id ? 'Removing…' : 'Remove'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      )}
      <form class="ui-form" onSubmit={submit} noValidate>
        <h3>Add a server</h3>
        <TextField
          id="st-mcp-name"
          label="Name"
          name="name"
          type="text"
          autocomplete="off"
          required
          value={name}
          onValue={setName}
        />
        <TextField
          id="st-mcp-url"
          label="URL"
          name="url"
          type="url"
          inputMode="url"
          autocomplete="off"
          spellcheck={false}
          placeholder="https://tools.example/mcp"
          required
          value={url}
          onValue={setUrl}
        />
        <TextField
          id="st-mcp-token"
          label="Token (optional)"
          name="token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={token}
          onValue={setToken}
        />
        <SubmitRow
          label="Add server"
          busyLabel="Adding…"
          busy={action.busy && action.pending === null}
          disabled={action.busy}
        />
      </form>
      <Feedback error={action.error} notice={action.notice} />
    </Section>
  );
}

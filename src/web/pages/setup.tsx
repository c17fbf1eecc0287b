import { useState } from 'preact/hooks';
import { api, type Me } from '../api.js';
import { CenteredCard, ErrorText, useTitle } from '../components/common.js';
import { TextField, useSubmit } from '../components/form.js';

/** Creates the first admin; the server signs them in. */
export function SetupPage(props: { tokenRequired: boolean; onSignedIn: (me: Me) => void }) {
  useTitle('Set up');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [token, setToken] = useState('');
  const { busy, error, setError, run } = useSubmit();

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    if (password !== repeat) {
      setError('The passwords do not match.');
      return;
    }
    await run(async () => {
      const { user } = await api.setup({
        username: username.trim(),
        password,
        ...(props.tokenRequired ? { setup_token: token.trim() } : {}),
      });
      props.onSignedIn(user);
    });
  }

  return (
    <CenteredCard title="Create the first admin">
      <p class="muted">
        This account administers Palisade: users, API keys, upstream model servers and the audit
        log.
      </p>
      <form class="stack" onSubmit={submit} aria-describedby={error ? 'setup-error' : undefined}>
        <TextField
          id="setup-username"
          label="Username"
          name="username"
          autocomplete="username"
          autocapitalize="none"
          spellcheck={false}
          required
          value={username}
          onValue={setUsername}
        />
        <TextField
          id="setup-password"
          label="Password"
          type="password"
          name="password"
          autocomplete="new-password"
          required
          value={password}
          onValue={setPassword}
        />
        <TextField
          id="setup-repeat"
          label="Repeat password"
          type="password"
          name="repeat"
          autocomplete="new-password"
          required
          value={repeat}
          onValue={setRepeat}
        />
        {props.tokenRequired && (
          <TextField
            id="setup-token"
            label="Setup token"
            class="input input--mono"
            name="setup_token"
            autocomplete="off"
            autocapitalize="none"
            spellcheck={false}
            required
            value={token}
            onValue={setToken}
          >
            <p class="hint">
              Printed by the server when it started (or set in PALISADE_SETUP_TOKEN).
            </p>
          </TextField>
        )}
        <ErrorText message={error} id="setup-error" />
        <button type="submit" class="btn btn-primary btn-block" disabled={busy} aria-busy={busy}>
          Create admin
        </button>
      </form>
    </CenteredCard>
  );
}

import { useState } from 'preact/hooks';
import { api, type Me } from '../api.js';
import { CenteredCard, ErrorText, useTitle } from '../components/common.js';
import { errorMessage } from '../components/errors.js';

/** Creates the first admin; the server signs them in. */
export function SetupPage(props: { tokenRequired: boolean; onSignedIn: (me: Me) => void }) {
  useTitle('Set up');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    if (password !== repeat) {
      setError('The passwords do not match.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const { user } = await api.setup({
        username: username.trim(),
        password,
        ...(props.tokenRequired ? { setup_token: token.trim() } : {}),
      });
      props.onSignedIn(user);
    } catch (failure) {
      setError(errorMessage(failure));
      setBusy(false);
    }
  }

  return (
    <CenteredCard title="Create the first admin">
      <p class="muted">
        This account administers Palisade: users, API keys, upstream model servers and the audit
        log.
      </p>
      <form class="stack" onSubmit={submit} aria-describedby={error ? 'setup-error' : undefined}>
        <div class="field">
          <label for="setup-username">Username</label>
          <input
            id="setup-username"
            class="input"
            name="username"
            autocomplete="username"
            autocapitalize="none"
            spellcheck={false}
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="setup-password">Password</label>
          <input
            id="setup-password"
            class="input"
            type="password"
            name="password"
            autocomplete="new-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="setup-repeat">Repeat password</label>
          <input
            id="setup-repeat"
            class="input"
            type="password"
            name="repeat"
            autocomplete="new-password"
            required
            value={repeat}
            onInput={(e) => setRepeat(e.currentTarget.value)}
          />
        </div>
        {props.tokenRequired && (
          <div class="field">
            <label for="setup-token">Setup token</label>
            <input
              id="setup-token"
              class="input input--mono"
              name="setup_token"
              autocomplete="off"
              autocapitalize="none"
              spellcheck={false}
              required
              value={token}
              onInput={(e) => setToken(e.currentTarget.value)}
            />
            <p class="hint">
              Printed by the server when it started (or set in PALISADE_SETUP_TOKEN).
            </p>
          </div>
        )}
        <ErrorText message={error} id="setup-error" />
        <button type="submit" class="btn btn-primary btn-block" disabled={busy} aria-busy={busy}>
          Create admin
        </button>
      </form>
    </CenteredCard>
  );
}

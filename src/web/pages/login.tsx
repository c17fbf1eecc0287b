import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type Me } from '../api.js';
import { CenteredCard, ErrorText, useTitle } from '../components/common.js';
import { TextField, useSubmit } from '../components/form.js';

/** Username and password, then (when the account has it) the two-factor code. */
export function LoginPage(props: { onSignedIn: (me: Me) => void }) {
  const [step, setStep] = useState<'password' | 'totp'>('password');
  useTitle('Sign in');
  return step === 'password' ? (
    <PasswordStep onSignedIn={props.onSignedIn} onTotp={() => setStep('totp')} />
  ) : (
    <TotpStep onSignedIn={props.onSignedIn} onRestart={() => setStep('password')} />
  );
}

function PasswordStep(props: { onSignedIn: (me: Me) => void; onTotp: () => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const { busy, error, run } = useSubmit();

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    await run(async () => {
      const result = await api.login({ username: username.trim(), password });
      if ('user' in result) {
        props.onSignedIn(result.user);
      } else {
        props.onTotp();
      }
    });
  }

  return (
    <CenteredCard title="Sign in to Palisade">
      <form class="stack" onSubmit={submit}>
        <TextField
          id="login-username"
          label="Username"
          name="username"
          autocomplete="username"
          autocapitalize="none"
          spellcheck={false}
          required
          autofocus
          value={username}
          onValue={setUsername}
        />
        <TextField
          id="login-password"
          label="Password"
          type="password"
          name="password"
          autocomplete="current-password"
          required
          value={password}
          onValue={setPassword}
        />
        <ErrorText message={error} />
        <button type="submit" class="btn btn-primary btn-block" disabled={busy} aria-busy={busy}>
          Sign in
        </button>
      </form>
    </CenteredCard>
  );
}

function TotpStep(props: { onSignedIn: (me: Me) => void; onRestart: () => void }) {
  const [recovery, setRecovery] = useState(false);
  const [code, setCode] = useState('');
  const { busy, error, setError, run } = useSubmit();
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    input.current?.focus();
  }, [recovery]);

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    const value = recovery ? code.trim() : code.replace(/\s+/g, '');
    if (value === '') return;
    const done = await run(async () => {
      const { user } = await api.loginTotp({ code: value });
      props.onSignedIn(user);
    });
    if (!done) input.current?.select();
  }

  function switchMode(event: Event) {
    event.preventDefault();
    setRecovery((r) => !r);
    setCode('');
    setError(null);
  }

  return (
    <CenteredCard title="Two-factor sign-in">
      <form class="stack" onSubmit={submit}>
        <p class="muted">
          {recovery
            ? 'Enter one of the recovery codes you saved when you set up two-factor sign-in. Each code works once.'
            : 'Enter the 6-digit code from your authenticator app.'}
        </p>
        <div class="field">
          <label for="login-code">{recovery ? 'Recovery code' : 'Authentication code'}</label>
          {recovery ? (
            <input
              key="recovery"
              ref={input}
              id="login-code"
              class="input input--mono"
              type="text"
              name="recovery_code"
              autocomplete="off"
              autocapitalize="none"
              spellcheck={false}
              required
              value={code}
              onInput={(e) => setCode(e.currentTarget.value)}
            />
          ) : (
            <input
              key="totp"
              ref={input}
              id="login-code"
              class="input input--mono input--code"
              type="text"
              name="code"
              autocomplete="one-time-code"
              inputmode="numeric"
              pattern="[0-9 ]*"
              maxlength={7}
              required
              value={code}
              onInput={(e) => setCode(e.currentTarget.value)}
            />
          )}
        </div>
        <ErrorText message={error} />
        <button type="submit" class="btn btn-primary btn-block" disabled={busy} aria-busy={busy}>
          Verify
        </button>
        <p class="centered__links">
          <a href="#" onClick={switchMode}>
            {recovery ? 'Use your authenticator app' : 'Use a recovery code'}
          </a>
          <a
            href="#"
            onClick={(event) => {
              event.preventDefault();
              props.onRestart();
            }}
          >
            Start over
          </a>
        </p>
      </form>
    </CenteredCard>
  );
}

import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type Me, type TotpEnrollment } from '../../api.js';
import {
  base64Utf8,
  CopyButton,
  downloadText,
  Feedback,
  Section,
  SubmitRow,
  TextField,
  useAction,
} from './ui.js';

type Phase =
  | { kind: 'idle' }
  | { kind: 'enrolling'; enrollment: TotpEnrollment }
  | { kind: 'codes'; codes: string[] }
  | { kind: 'disabling' };

const RECOVERY_FILE = 'palisade-recovery-codes.txt';

function recoveryFile(username: string, codes: string[]): string {
  return [
    `Palisade recovery codes for ${username}`,
    'Each code signs you in once when you cannot use your authenticator app.',
    '',
    ...codes,
    '',
  ].join('\n');
}

/**
 * Two-factor sign-in: enrollment (QR code, manual key, confirming code, recovery codes shown
 * once) or, when it is on, turning it off with the password.
 *
 * `required`: an admin requires TOTP and this account has none yet. The new `Me` is then handed
 * to `onMeChange` only when the user says the recovery codes are saved, so that a shell which
 * leaves this page as soon as enrollment is done cannot hide them before they are read.
 */
export function TotpSection(props: {
  me: Me;
  onMeChange: (me: Me) => void;
  required: boolean;
}): JSX.Element {
  const { me, onMeChange, required } = props;
  const [phase, setPhase] = useState<Phase>({ kind: 'idle' });
  const [code, setCode] = useState('');
  const [password, setPassword] = useState('');
  const action = useAction();

  const start = (event: Event) => {
    event.preventDefault();
    void action.run(async () => {
      const enrollment = await api.totpEnroll({ password });
      setPassword('');
      setCode('');
      setPhase({ kind: 'enrolling', enrollment });
    });
  };

  const confirm = (event: Event) => {
    event.preventDefault();
    const digits = code.replace(/\s+/g, '');
    if (!/^\d{6,8}$/.test(digits)) {
      action.fail('Enter the 6-digit code your authenticator app shows now.');
      return;
    }
    void action.run(async () => {
      const { recovery_codes } = await api.totpConfirm({ code: digits });
      setCode('');
      setPhase({ kind: 'codes', codes: recovery_codes });
      if (!required) {
        try {
          onMeChange(await api.me());
        } catch {
          // Enrollment is done; the status catches up on the next load.
        }
      }
    }, 'Two-factor sign-in is on.');
  };

  const finish = () =>
    action.run(async () => {
      if (required) onMeChange(await api.me());
      setPhase({ kind: 'idle' });
    });

  const disable = (event: Event) => {
    event.preventDefault();
    if (password === '') {
      action.fail('Enter your password to turn off two-factor sign-in.');
      return;
    }
    void action.run(async () => {
      await api.totpDisable({ password });
      setPassword('');
      setPhase({ kind: 'idle' });
      try {
        onMeChange(await api.me());
      } catch {
        // Turned off; the status catches up on the next load.
      }
    }, 'Two-factor sign-in is off.');
  };

  let body: JSX.Element;
  if (phase.kind === 'codes') {
    const text = phase.codes.join('\n');
    body = (
      <>
        <p class="notice" role="status">
          Save these recovery codes now: they are shown only once. Each one signs you in once if you
          lose your authenticator app.
        </p>
        <ol class="st-codes" data-testid="recovery-codes" aria-label="Recovery codes">
          {phase.codes.map((recovery) => (
            <li key={recovery}>
              <code>{recovery}</code>
            </li>
          ))}
        </ol>
        <div class="ui-actions">
          <CopyButton text={text} label="Copy" />
          <button
            type="button"
            class="btn"
            onClick={() => downloadText(RECOVERY_FILE, recoveryFile(me.username, phase.codes))}
          >
            Download
          </button>
          <button
            type="button"
            class="btn btn-primary"
            disabled={action.busy}
            onClick={() => void finish()}
          >
            {required ? 'I have saved my recovery codes: continue' : 'Done'}
          </button>
        </div>
      </>
    );
  } else if (phase.kind === 'enrolling') {
    const { enrollment } = phase;
    body = (
      <>
        <p>
          Scan this QR code with an authenticator app (such as Aegis, 2FAS, Google Authenticator or
          1Password), or type the key into it by hand.
        </p>
        <img
          class="st-qr"
          alt="QR code for two-factor sign-in"
          src={'data:image/svg+xml;base64,' + base64Utf8(enrollment.qr_svg)}
        />
        <p class="ui-secret">
          <span>Key: </span>
          <code data-testid="totp-secret">{enrollment.secret}</code>{' '}
          <CopyButton text={enrollment.secret} label="Copy key" />
        </p>
        <form class="ui-form" onSubmit={confirm} noValidate>
          <TextField
            id="st-totp-code"
            label="Code from your app"
            class="input input--code"
            name="code"
            type="text"
            inputMode="numeric"
            autocomplete="one-time-code"
            maxLength={10}
            required
            value={code}
            onValue={setCode}
          />
          <SubmitRow label="Confirm" busyLabel="Confirming…" busy={action.busy}>
            <button
              type="button"
              class="btn"
              disabled={action.busy}
              onClick={() => {
                action.clear();
                setPhase({ kind: 'idle' });
              }}
            >
              Cancel
            </button>
          </SubmitRow>
        </form>
      </>
    );
  } else if (me.totp_enabled) {
    body = (
      <>
        <p>
          <span class="badge badge-ok">On</span> Signing in asks for a code from your authenticator
          app (or a recovery code).
        </p>
        {phase.kind === 'disabling' ? (
          <form class="ui-form" onSubmit={disable} noValidate>
            <TextField
              id="st-totp-password"
              label="Your password"
              name="password"
              type="password"
              autocomplete="current-password"
              required
              value={password}
              onValue={setPassword}
            />
            <SubmitRow
              label="Turn off two-factor sign-in"
              busyLabel="Turning off…"
              busy={action.busy}
              danger
            >
              <button
                type="button"
                class="btn"
                disabled={action.busy}
                onClick={() => {
                  action.clear();
                  setPassword('');
                  setPhase({ kind: 'idle' });
                }}
              >
                Cancel
              </button>
            </SubmitRow>
          </form>
        ) : (
          <div class="ui-actions">
            <button
              type="button"
              class="btn btn-danger"
              onClick={() => {
                action.clear();
                setPhase({ kind: 'disabling' });
              }}
            >
              Turn off
            </button>
          </div>
        )}
      </>
    );
  } else {
    body = (
      <>
        <p>
          <span class="badge badge-danger">Off</span> Add a second step to signing in: a code from
          an authenticator app on your phone.
        </p>
        <form class="ui-form" onSubmit={start} noValidate>
          <TextField
            id="st-totp-enroll-password"
            label="Your password"
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onValue={setPassword}
          />
          <SubmitRow label="Set up two-factor sign-in" busyLabel="Starting…" busy={action.busy} />
        </form>
      </>
    );
  }

  return (
    <Section id="st-totp" title="Two-factor sign-in">
      {body}
      <Feedback error={action.error} notice={action.notice} />
    </Section>
  );
}

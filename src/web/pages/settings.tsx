/**
 * The Settings page: two-factor sign-in, password, sessions, default model, personal upstream
 * keys, remote MCP servers and usage. With `focus: 'totp'` (an admin requires two-factor sign-in and
 * this account has none yet) only the two-factor section is shown.
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type Me } from '../api.js';
import { useTitle } from '../components/common.js';
import { DefaultModelSection } from './settings/default-model.js';
import { McpServersSection } from './settings/mcp-servers.js';
import { PasswordSection } from './settings/password.js';
import { SessionsSection } from './settings/sessions.js';
import { TotpSection } from './settings/totp.js';
import { Feedback, Loading, Section, useLoad } from './settings/ui.js';
import { UpstreamKeysSection } from './settings/upstream-keys.js';
import { UsageSection } from './settings/usage.js';
import './settings.css';

export function SettingsPage(props: {
  me: Me;
  onMeChange: (me: Me) => void;
  focus?: 'totp';
}): JSX.Element {
  const totpOnly = props.focus === 'totp';
  useTitle(totpOnly ? 'Set up two-factor sign-in' : 'Settings');
  return (
    <div class="st-page">
      <h1 id="st-page-title">{totpOnly ? 'Set up two-factor sign-in' : 'Settings'}</h1>
      {totpOnly ? (
        <p class="notice" role="status">
          An administrator requires two-factor sign-in for every account. Set it up to continue.
        </p>
      ) : null}
      <TotpSection me={props.me} onMeChange={props.onMeChange} required={totpOnly} />
      {totpOnly ? null : <OtherSettings />}
    </div>
  );
}

/** Everything below two-factor sign-in; not mounted while enrollment is required. */
function OtherSettings(): JSX.Element {
  const [sessionsKey, setSessionsKey] = useState(0);
  const settings = useLoad(() => api.settings());
  const models = useLoad(() => api.models().then((answer) => answer.models));

  return (
    <>
      <PasswordSection onChanged={() => setSessionsKey((key) => key + 1)} />
      <SessionsSection reloadKey={sessionsKey} />
      {settings.data === undefined ? (
        <Section id="st-personal" title="Models, keys and tools">
          {settings.error ? (
            <>
              <Feedback error={settings.error} />
              <button type="button" class="btn" onClick={settings.reload}>
                Try again
              </button>
            </>
          ) : (
            <Loading what="settings" />
          )}
        </Section>
      ) : (
        <>
          <DefaultModelSection
            settings={settings.data}
            models={models.data}
            modelsError={models.error}
            onSettings={settings.setData}
          />
          <UpstreamKeysSection
            settings={settings.data}
            models={models.data}
            onSettings={settings.setData}
          />
          <McpServersSection settings={settings.data} onSettings={settings.setData} />
        </>
      )}
      <UsageSection />
    </>
  );
}

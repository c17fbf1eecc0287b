import type { JSX } from 'preact';
import { api, type SessionInfo } from '../../api.js';
import {
  Feedback,
  LoadedView,
  RefreshButton,
  ScrollTable,
  Section,
  TableHead,
  Time,
  useLoad,
  useRowAction,
} from './ui.js';

const BROWSERS: [RegExp, string][] = [
  [/\bEdg(?:e|A|iOS)?\//, 'Edge'],
  [/\b(?:OPR|Opera)\//, 'Opera'],
  [/\bVivaldi\//, 'Vivaldi'],
  [/\bSamsungBrowser\//, 'Samsung Internet'],
  [/\b(?:Firefox|FxiOS)\//, 'Firefox'],
  [/\bCriOS\//, 'Chrome'],
  [/\bChromium\//, 'Chromium'],
  [/\bHeadlessChrome\//, 'Headless Chrome'],
  [/\bChrome\//, 'Chrome'],
  [/\bVersion\/[\d.]+.*\bSafari\//, 'Safari'],
  [/^curl\//, 'curl'],
  [/^Wget\//, 'Wget'],
  [/^node\b|\bundici\b/i, 'Node.js'],
  [/^python-requests\/|^python-httpx\//i, 'Python'],
];

const SYSTEMS: [RegExp, string][] = [
  [/\b(?:iPhone|iPad|iPod)\b/, 'iOS'],
  [/\bAndroid\b/, 'Android'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bWindows\b/, 'Windows'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\bLinux\b/, 'Linux'],
];

/** "Firefox on Linux" from a user agent, or its first characters when it is not recognised. */
export function describeAgent(userAgent: string): string {
  const agent = userAgent.trim();
  if (agent === '') return 'Unknown device';
  const browser = BROWSERS.find(([pattern]) => pattern.test(agent))?.[1];
  const system = SYSTEMS.find(([pattern]) => pattern.test(agent))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  const known = browser ?? system;
  if (known) return known;
  return agent.length > 40 ? `${agent.slice(0, 40)}…` : agent;
}

function byRecency(a: SessionInfo, b: SessionInfo): number {
  if (a.current !== b.current) return a.current ? -1 : 1;
  return b.last_seen_at.localeCompare(a.last_seen_at);
}

/** The signed-in user's sessions; `reloadKey` changes when they must be read again. */
export function SessionsSection(props: { reloadKey: number }): JSX.Element {
  const sessions = useLoad(
    () => api.sessions().then((answer) => answer.sessions),
    [props.reloadKey],
  );
  const action = useRowAction();

  const revoke = (session: SessionInfo) => {
    void action.runFor(
      session.id,
      async () => {
        await api.revokeSession(session.id);
        sessions.setData((list) => list?.filter((item) => item.id !== session.id));
      },
      `Signed out ${describeAgent(session.user_agent)} (${session.ip || 'unknown address'}).`,
    );
  };

  const body = (
    <LoadedView loaded={sessions} what="sessions">
      {(data) => (
        <ScrollTable label="Sessions">
          <TableHead columns={['Device', 'IP address', 'Last seen', 'Signed in']} actions />
          <tbody>
            {[...data].sort(byRecency).map((session) => (
              <tr key={session.id} data-testid="session-row">
                <td title={session.user_agent}>
                  {describeAgent(session.user_agent)}{' '}
                  {session.current ? <span class="badge">This device</span> : null}
                </td>
                <td>{session.ip || '—'}</td>
                <td>
                  <Time value={session.last_seen_at} />
                </td>
                <td>
                  <Time value={session.created_at} />
                </td>
                <td>
                  {session.current ? null : (
                    <button
                      type="button"
                      class="btn btn-sm"
                      disabled={action.busy}
                      onClick={() => revoke(session)}
                    >
                      {action.pending === session.id ? 'Signing out…' : 'Sign out'}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      )}
    </LoadedView>
  );

  return (
    <Section
      id="st-sessions"
      title="Sessions"
      intro="Where your account is signed in. Sign out any device you do not recognise."
    >
      {body}
      <RefreshButton loaded={sessions} action={action} />
      <Feedback error={action.error} notice={action.notice} />
    </Section>
  );
}

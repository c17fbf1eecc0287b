/**
 * The Admin page: users (and the instance-wide TOTP requirement), API keys, upstreams, jobs and
 * the audit log, one tab each. Only admins reach it; the server checks every call again.
 */
import type { JSX } from 'preact';
import { useRef, useState } from 'preact/hooks';
import type { Me } from '../api.js';
import { useTitle } from '../components/common.js';
import { AuditPanel } from './admin/audit.js';
import { JobsPanel } from './admin/jobs.js';
import { KeysPanel } from './admin/keys.js';
import { UpstreamsPanel } from './admin/upstreams.js';
import { UsersPanel } from './admin/users.js';
import './admin.css';

type Tab = 'users' | 'keys' | 'upstreams' | 'jobs' | 'audit';

const TABS: { id: Tab; label: string }[] = [
  { id: 'users', label: 'Users' },
  { id: 'keys', label: 'API keys' },
  { id: 'upstreams', label: 'Upstreams' },
  { id: 'jobs', label: 'Jobs' },
  { id: 'audit', label: 'Audit log' },
];

export function AdminPage(props: { me: Me }): JSX.Element {
  const [tab, setTab] = useState<Tab>('users');
  const tabRefs = useRef<Partial<Record<Tab, HTMLButtonElement | null>>>({});
  useTitle('Admin');

  if (props.me.role !== 'admin') {
    return (
      <div class="st-page adm-page">
        <h1>Admin</h1>
        <p class="error" role="alert">
          Only administrators can open this page.
        </p>
      </div>
    );
  }

  // Arrow keys, Home and End move between tabs (the WAI-ARIA tabs pattern).
  const onKeyDown = (event: KeyboardEvent) => {
    const index = TABS.findIndex((item) => item.id === tab);
    let next = index;
    if (event.key === 'ArrowRight') next = (index + 1) % TABS.length;
    else if (event.key === 'ArrowLeft') next = (index - 1 + TABS.length) % TABS.length;
    else if (event.key === 'Home') next = 0;
    else if (event.key === 'End') next = TABS.length - 1;
    else return;
    event.preventDefault();
    const target = TABS[next];
    if (!target) return;
    setTab(target.id);
    tabRefs.current[target.id]?.focus();
  };

  return (
    <div class="st-page adm-page">
      <h1>Admin</h1>
      <div class="adm-tabs" role="tablist" aria-label="Admin sections" onKeyDown={onKeyDown}>
        {TABS.map((item) => (
          <button
            key={item.id}
            ref={(element) => {
              tabRefs.current[item.id] = element;
            }}
            id={`adm-tab-${item.id}`}
            type="button"
            role="tab"
            class="adm-tab"
            aria-selected={tab === item.id ? 'true' : 'false'}
            aria-controls={tab === item.id ? `adm-panel-${item.id}` : undefined}
            tabIndex={tab === item.id ? 0 : -1}
            onClick={() => setTab(item.id)}
          >
            {item.label}
          </button>
        ))}
      </div>
      <div
        id={`adm-panel-${tab}`}
        class="adm-panel"
        role="tabpanel"
        aria-labelledby={`adm-tab-${tab}`}
      >
        {tab === 'users' ? <UsersPanel me={props.me} /> : null}
        {tab === 'keys' ? <KeysPanel /> : null}
        {tab === 'upstreams' ? <UpstreamsPanel /> : null}
        {tab === 'jobs' ? <JobsPanel /> : null}
        {tab === 'audit' ? <AuditPanel /> : null}
      </div>
    </div>
  );
}

import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type AdminUser, type Me, type Role } from '../../api.js';
import {
  ConfirmButton,
  Feedback,
  Field,
  LoadedView,
  Loading,
  RefreshButton,
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

/** The instance-wide "Require two-factor sign-in for everyone" switch. */
function RequireTotpSwitch(): JSX.Element {
  const settings = useLoad(() => api.adminSettings());
  const action = useAction();
  // While a change is saved the switch shows where it is going, not where it was.
  const [saving, setSaving] = useState<boolean | null>(null);
  const on = saving ?? settings.data?.require_totp ?? false;

  const toggle = (next: boolean) => {
    setSaving(next);
    void action
      .run(
        async () => {
          settings.setData(await api.adminUpdateSettings({ require_totp: next }));
        },
        next
          ? 'Two-factor sign-in is now required. Users without it must set it up when they next sign in.'
          : 'Two-factor sign-in is no longer required.',
      )
      .then(() => setSaving(null));
  };

  return (
    <div class="adm-switch-row">
      <div class="adm-switch-field">
        <input
          id="adm-require-totp"
          class="adm-switch"
          type="checkbox"
          role="switch"
          aria-checked={on ? 'true' : 'false'}
          aria-describedby="adm-require-totp-hint"
          checked={on}
          disabled={settings.data === undefined || action.busy}
          onChange={(event) => toggle(event.currentTarget.checked)}
        />
        <label for="adm-require-totp">Require two-factor sign-in for everyone</label>
      </div>
      <small id="adm-require-totp-hint" class="hint">
        An account without it can do nothing but set it up when it next signs in.
      </small>
      {settings.loading && settings.data === undefined ? (
        <Loading what="instance settings" />
      ) : null}
      <Feedback error={settings.error ?? action.error} notice={action.notice} />
    </div>
  );
}

function CreateUserForm(props: { onCreated: (user: AdminUser) => void }): JSX.Element {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<Role>('user');
  const action = useAction();

  const submit = (event: Event) => {
    event.preventDefault();
    const name = username.trim();
    if (name === '' || password === '') {
      action.fail('Enter a username and a password.');
      return;
    }
    void action.run(
      async () => {
        props.onCreated(await api.adminCreateUser({ username: name, password, role }));
        setUsername('');
        setPassword('');
        setRole('user');
      },
      `Created ${role === 'admin' ? 'admin' : 'user'} ${name}.`,
    );
  };

  return (
    <form class="ui-form" onSubmit={submit} noValidate>
      <TextField
        id="adm-user-name"
        label="Username"
        name="username"
        type="text"
        autocomplete="off"
        autocapitalize="none"
        spellcheck={false}
        required
        value={username}
        onValue={setUsername}
      />
      <TextField
        id="adm-user-password"
        label="Password"
        name="password"
        type="password"
        autocomplete="new-password"
        required
        value={password}
        onValue={setPassword}
      />
      <Field id="adm-user-role" label="Role">
        <select
          id="adm-user-role"
          class="input"
          name="role"
          value={role}
          onChange={(event) => setRole(event.currentTarget.value === 'admin' ? 'admin' : 'user')}
        >
          <option value="user">User</option>
          <option value="admin">Admin</option>
        </select>
      </Field>
      <SubmitRow label="Create user" busyLabel="Creating…" busy={action.busy} />
      <Feedback error={action.error} notice={action.notice} />
    </form>
  );
}

export function UsersPanel(props: { me: Me }): JSX.Element {
  const users = useLoad(() => api.adminUsers().then((answer) => answer.users));
  const action = useRowAction();

  const replace = (user: AdminUser) =>
    users.setData((list) => list?.map((item) => (item.id === user.id ? user : item)));

  const update = (
    user: AdminUser,
    work: () => Promise<AdminUser>,
    success: (updated: AdminUser) => string,
  ) => {
    let message = '';
    void action.runFor(
      user.id,
      async () => {
        const updated = await work();
        replace(updated);
        message = success(updated);
      },
      () => message,
    );
  };

  const table = (
    <LoadedView loaded={users} what="users">
      {(list) => (
        <ScrollTable label="Users">
          <TableHead
            columns={['Username', 'Role', '2FA', 'Status', 'Created', 'Last sign-in']}
            actions
          />
          <tbody>
            {list.map((user) => {
              const self = user.id === props.me.id;
              const busy = action.busy && action.pending === user.id;
              return (
                <tr key={user.id} data-testid="user-row">
                  <th scope="row">
                    {user.username} {self ? <span class="badge">You</span> : null}
                  </th>
                  <td>
                    <label class="sr-only" for={`adm-role-${user.id}`}>
                      {`Role of ${user.username}`}
                    </label>
                    <select
                      id={`adm-role-${user.id}`}
                      class="input input--sm adm-inline-select"
                      value={user.role}
                      disabled={self || action.busy}
                      title={self ? 'You cannot change your own role.' : undefined}
                      onChange={(event) => {
                        const role: Role = event.currentTarget.value === 'admin' ? 'admin' : 'user';
                        if (role === user.role) return;
                        update(
                          user,
                          () => api.adminUpdateUser(user.id, { role }),
                          (updated) =>
                            `${updated.username} is now ${updated.role === 'admin' ? 'an admin' : 'a user'}.`,
                        );
                      }}
                    >
                      <option value="user">User</option>
                      <option value="admin">Admin</option>
                    </select>
                  </td>
                  <td>
                    {user.totp_enabled ? (
                      <span class="badge badge-ok">On</span>
                    ) : (
                      <span class="badge">Off</span>
                    )}
                  </td>
                  <td>
                    {user.disabled ? (
                      <span class="badge badge-danger">Disabled</span>
                    ) : (
                      <span class="badge">Active</span>
                    )}
                  </td>
                  <td>
                    <Time value={user.created_at} />
                  </td>
                  <td>
                    <Time value={user.last_login_at} empty="Never" />
                  </td>
                  <td>
                    <div class="ui-actions">
                      {self ? null : (
                        <button
                          type="button"
                          class={user.disabled ? 'btn btn-sm' : 'btn btn-sm btn-danger'}
                          disabled={action.busy}
                          aria-label={`${user.disabled ? 'Enable' : 'Disable'} ${user.username}`}
                          onClick={() =>
                            update(
                              user,
                              () => api.adminUpdateUser(user.id, { disabled: !user.disabled }),
                              (updated) =>
                                updated.disabled
                                  ? `${updated.username} is disabled and signed out.`
                                  : `${updated.username} is enabled.`,
                            )
                          }
                        >
                          {busy ? 'Saving…' : user.disabled ? 'Enable' : 'Disable'}
                        </button>
                      )}
                      {user.totp_enabled ? (
                        <ConfirmButton
                          label="Reset 2FA"
                          question={`Reset two-factor sign-in for ${user.username}?`}
                          confirmLabel="Yes, reset 2FA"
                          disabled={action.busy}
                          onConfirm={() =>
                            update(
                              user,
                              () => api.adminResetTotp(user.id),
                              (updated) =>
                                `Two-factor sign-in of ${updated.username} was reset; they can set it up again.`,
                            )
                          }
                        />
                      ) : null}
                    </div>
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
      <Section id="adm-users" title="Users">
        <RequireTotpSwitch />
        {table}
        <Feedback error={action.error} notice={action.notice} />
        <RefreshButton loaded={users} action={action} />
      </Section>
      <Section id="adm-users-create" title="New user">
        <CreateUserForm
          onCreated={(user) => users.setData((list) => (list ? [...list, user] : [user]))}
        />
      </Section>
    </>
  );
}

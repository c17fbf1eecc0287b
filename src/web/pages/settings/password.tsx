import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api } from '../../api.js';
import { Feedback, Section, SubmitRow, TextField, useAction } from './ui.js';

/** Changing the password; the server signs out every other session. */
export function PasswordSection(props: { onChanged: () => void }): JSX.Element {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const action = useAction();

  const submit = (event: Event) => {
    event.preventDefault();
    if (current === '' || next === '') {
      action.fail('Enter your current password and a new one.');
      return;
    }
    if (next !== repeat) {
      action.fail('The new password and its repetition do not match.');
      return;
    }
    if (next === current) {
      action.fail('The new password is the same as the current one.');
      return;
    }
    void action
      .run(async () => {
        await api.changePassword({ current_password: current, new_password: next });
        setCurrent('');
        setNext('');
        setRepeat('');
      }, 'Password changed. Your other sessions were signed out.')
      .then((changed) => {
        if (changed) props.onChanged();
      });
  };

  return (
    <Section id="st-password" title="Password">
      <form class="ui-form" onSubmit={submit} noValidate>
        <TextField
          id="st-password-current"
          label="Current password"
          name="current_password"
          type="password"
          autocomplete="current-password"
          required
          value={current}
          onValue={setCurrent}
        />
        <TextField
          id="st-password-new"
          label="New password"
          name="new_password"
          type="password"
          autocomplete="new-password"
          required
          value={next}
          onValue={setNext}
        />
        <TextField
          id="st-password-repeat"
          label="Repeat the new password"
          name="repeat_password"
          type="password"
          autocomplete="new-password"
          required
          aria-invalid={repeat !== '' && repeat !== next ? 'true' : undefined}
          value={repeat}
          onValue={setRepeat}
        />
        <SubmitRow label="Change password" busyLabel="Changing…" busy={action.busy} />
      </form>
      <Feedback error={action.error} notice={action.notice} />
    </Section>
  );
}

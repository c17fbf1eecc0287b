import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, type ModelInfo, type Settings } from '../../api.js';
import { Feedback, Field, Section, SubmitRow, useAction } from './ui.js';

/** The model new conversations start with. */
export function DefaultModelSection(props: {
  settings: Settings;
  models: ModelInfo[] | undefined;
  modelsError: string | null;
  onSettings: (settings: Settings) => void;
}): JSX.Element {
  const saved = props.settings.default_model ?? '';
  const [choice, setChoice] = useState(saved);
  const action = useAction();
  useEffect(() => setChoice(saved), [saved]);

  const models = props.models ?? [];
  const listed = saved === '' || models.some((model) => model.id === saved);

  const submit = (event: Event) => {
    event.preventDefault();
    void action.run(
      async () => {
        props.onSettings(
          await api.updateSettings({ default_model: choice === '' ? null : choice }),
        );
      },
      () => (choice === '' ? 'No default model: each chat asks.' : `Default model: ${choice}.`),
    );
  };

  return (
    <Section
      id="st-default-model"
      title="Default model"
      intro="New conversations start with this model; you can change it in each chat."
    >
      <form class="ui-form" onSubmit={submit}>
        <Field id="st-default-model-select" label="Model">
          <select
            id="st-default-model-select"
            class="input"
            name="default_model"
            value={choice}
            disabled={props.models === undefined && props.modelsError === null}
            onChange={(event) => setChoice(event.currentTarget.value)}
          >
            <option value="">None</option>
            {!listed ? <option value={saved}>{`${saved} (not available now)`}</option> : null}
            {models.map((model) => (
              <option key={`${model.upstream}/${model.id}`} value={model.id}>
                {`${model.id} (${model.upstream})`}
              </option>
            ))}
          </select>
        </Field>
        <SubmitRow
          label="Save"
          busyLabel="Saving…"
          busy={action.busy}
          disabled={action.busy || choice === saved}
        />
      </form>
      {props.models === undefined && props.modelsError === null ? (
        <p class="muted">Loading models…</p>
      ) : null}
      {props.modelsError ? (
        <p class="error" role="alert">
          {`The model list could not be loaded: ${props.modelsError}`}
        </p>
      ) : null}
      <Feedback error={action.error} notice={action.notice} />
    </Section>
  );
}

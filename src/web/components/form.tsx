/** Form pieces shared by the sign-in pages (setup, login) and the Settings and Admin pages. */
import type {
  ComponentChildren,
  InputHTMLAttributes,
  JSX,
  PartialInputHTMLAttributes,
} from 'preact';
import { useState } from 'preact/hooks';
import { errorMessage } from './errors.js';

/** A label and its control; the control must carry `id={props.id}`. */
export function Field(props: {
  id: string;
  label: string;
  hint?: string;
  children: ComponentChildren;
}): JSX.Element {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint ? (
        <small class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </small>
      ) : null}
    </div>
  );
}

export type TextFieldProps = Omit<
  PartialInputHTMLAttributes<HTMLInputElement>,
  'id' | 'value' | 'onInput' | 'children' | 'label' | 'role'
> & {
  id: string;
  label: string;
  hint?: string;
  value: string;
  /** Called with the new text on every input. */
  onValue: (value: string) => void;
  /** Shown after the input, before the hint. */
  children?: ComponentChildren;
};

/**
 * A labelled text input (any `type`: text, password, url, number …) bound to a string. Every other
 * prop goes to the `<input>`; `class` defaults to `input`.
 */
export function TextField(props: TextFieldProps): JSX.Element {
  const { id, label, hint, value, onValue, children, class: className, ...input } = props;
  return (
    <Field id={id} label={label} hint={hint}>
      <input
        // Preact's input type ties `role` to `type`; these props have no `role`, so the cast is safe.
        {...(input as InputHTMLAttributes<HTMLInputElement>)}
        id={id}
        class={className ?? 'input'}
        value={value}
        onInput={(event) => onValue(event.currentTarget.value)}
      />
      {children}
    </Field>
  );
}

export interface Submit {
  busy: boolean;
  error: string | null;
  /** Shows an error found before sending (a failed check). */
  setError: (error: string | null) => void;
  /**
   * Sets `busy` and clears the error, then runs `work`; answers whether it succeeded. A failure
   * becomes `error` and clears `busy`; success leaves `busy` set, as the page is about to change.
   */
  run: (work: () => Promise<void>) => Promise<boolean>;
}

/** The busy flag and error of a sign-in form (setup, password, two-factor code). */
export function useSubmit(): Submit {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return {
    busy,
    error,
    setError,
    run: async (work) => {
      setBusy(true);
      setError(null);
      try {
        await work();
        return true;
      } catch (failure) {
        setError(errorMessage(failure));
        setBusy(false);
        return false;
      }
    },
  };
}

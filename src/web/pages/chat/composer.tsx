import type { RefObject } from 'preact';

/** The message box: Enter sends, Shift+Enter adds a line, Esc stops the answer being written. */
export function Composer(props: {
  value: string;
  onInput: (value: string) => void;
  onSend: () => void;
  onStop: () => void;
  streaming: boolean;
  /** Sending is not possible (no model, creating the conversation). */
  disabled: boolean;
  placeholder: string;
  inputRef: RefObject<HTMLTextAreaElement | null>;
}) {
  const canSend = !props.disabled && !props.streaming && props.value.trim() !== '';
  const lines = props.value.split('\n').length;
  const rows = Math.min(10, Math.max(2, lines));

  function onKeyDown(event: KeyboardEvent) {
    if (event.isComposing) return;
    if (event.key === 'Enter' && !event.shiftKey && !event.altKey) {
      event.preventDefault();
      if (canSend) props.onSend();
    } else if (event.key === 'Escape' && props.streaming) {
      event.preventDefault();
      props.onStop();
    }
  }

  return (
    <form
      class="composer"
      onSubmit={(event) => {
        event.preventDefault();
        if (canSend) props.onSend();
      }}
    >
      <label for="composer-input" class="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        ref={props.inputRef}
        class="composer__input"
        rows={rows}
        placeholder={props.placeholder}
        value={props.value}
        onInput={(event) => props.onInput(event.currentTarget.value)}
        onKeyDown={onKeyDown}
      />
      <div class="composer__actions">
        <span class="composer__hint muted">
          {props.streaming ? 'Esc stops the answer' : 'Enter sends · Shift+Enter adds a line'}
        </span>
        {props.streaming ? (
          <button key="stop" type="button" class="btn btn-danger" onClick={props.onStop}>
            Stop
          </button>
        ) : (
          <button key="send" type="submit" class="btn btn-primary" disabled={!canSend}>
            Send
          </button>
        )}
      </div>
    </form>
  );
}

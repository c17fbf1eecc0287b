import type { ComponentChild } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type Conversation, type ModelInfo } from '../../api.js';
import { ErrorText } from '../../components/common.js';
import { downloadText } from '../../components/download.js';
import { errorMessage } from '../../components/errors.js';
import { conversationTitle } from './sidebar.js';

export function ModelPicker(props: {
  models: ModelInfo[];
  value: string;
  onChange: (model: string) => void;
  disabled: boolean;
}) {
  const { models, value } = props;
  const upstreams = [...new Set(models.map((m) => m.upstream))];
  const missing = value !== '' && !models.some((m) => m.id === value);
  const option = (model: ModelInfo) => (
    <option key={`${model.upstream}/${model.id}`} value={model.id} selected={model.id === value}>
      {model.id}
    </option>
  );
  return (
    <div class="model-picker">
      <label for="model-picker" class="sr-only">
        Model
      </label>
      <select
        id="model-picker"
        class="input input--select"
        data-testid="model-picker"
        value={value}
        disabled={props.disabled || (models.length === 0 && !missing)}
        onChange={(event) => props.onChange(event.currentTarget.value)}
      >
        {models.length === 0 && !missing && <option value="">No models</option>}
        {missing && (
          <option value={value} selected>
            {value} (unavailable)
          </option>
        )}
        {upstreams.length > 1
          ? upstreams.map((upstream) => (
              <optgroup key={upstream} label={upstream}>
                {models.filter((m) => m.upstream === upstream).map(option)}
              </optgroup>
            ))
          : models.map(option)}
      </select>
    </div>
  );
}

function slug(title: string): string {
  return (
    title
      .toLowerCase()
      .replace(/[^\p{L}\p{N}]+/gu, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 60) || 'conversation'
  );
}

/** Export as Markdown or JSON: a small menu of download links. */
function ExportMenu(props: { conversation: Conversation }) {
  const menu = useRef<HTMLDetailsElement>(null);
  useEffect(() => {
    const close = (event: Event) => {
      const element = menu.current;
      if (element?.open && !element.contains(event.target as Node)) element.open = false;
    };
    const onKey = (event: KeyboardEvent) => {
      if (event.key === 'Escape' && menu.current?.open) {
        menu.current.open = false;
        event.preventDefault();
      }
    };
    document.addEventListener('click', close);
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('click', close);
      document.removeEventListener('keydown', onKey);
    };
  }, []);
  const { conversation } = props;
  const name = slug(conversationTitle(conversation));
  const [failed, setFailed] = useState<string | null>(null);
  async function save(format: 'markdown' | 'json', extension: string) {
    menu.current?.removeAttribute('open');
    setFailed(null);
    try {
      const file = await api.exportConversation(conversation.id, format);
      downloadText(`${name}.${extension}`, file.text, file.type);
    } catch (error) {
      setFailed(errorMessage(error));
    }
  }
  return (
    <details class="menu" ref={menu}>
      <summary class="btn btn-ghost btn-sm">Export</summary>
      <div class="menu__list">
        <button type="button" class="menu__item" onClick={() => void save('markdown', 'md')}>
          Export as Markdown
        </button>
        <button type="button" class="menu__item" onClick={() => void save('json', 'json')}>
          Export as JSON
        </button>
      </div>
      {failed && <ErrorText message={failed} />}
    </details>
  );
}

/** The title (renamed in place) and the conversation's actions. */
export function ConversationHeader(props: {
  conversation: Conversation | null;
  /** Shown while the conversation loads, or for a new chat. */
  placeholderTitle: string;
  picker: ComponentChild;
  systemPromptOpen: boolean;
  hasSystemPrompt: boolean;
  onToggleSystemPrompt: () => void;
  onRename: (title: string) => Promise<void>;
  onDelete: () => Promise<void>;
}) {
  const { conversation } = props;
  const [editing, setEditing] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const titleInput = useRef<HTMLInputElement>(null);
  const id = conversation?.id ?? null;

  // Another conversation: leave any half-done rename or delete.
  useEffect(() => {
    setEditing(null);
    setConfirming(false);
    setBusy(false);
    setError(null);
  }, [id]);

  const isEditing = editing !== null;
  useEffect(() => {
    if (isEditing) titleInput.current?.select();
  }, [isEditing]);

  async function saveTitle(event: Event) {
    event.preventDefault();
    if (editing === null || !conversation) return;
    const title = editing.trim();
    if (title === '' || title === conversation.title) {
      setEditing(null);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await props.onRename(title);
      setEditing(null);
    } catch (failure) {
      setError(errorMessage(failure));
    } finally {
      setBusy(false);
    }
  }

  async function remove() {
    setBusy(true);
    setError(null);
    try {
      await props.onDelete();
    } catch (failure) {
      setError(errorMessage(failure));
      setBusy(false);
    }
  }

  return (
    <header class="chat__header">
      <div class="chat__header-row">
        {editing !== null ? (
          <form class="title-edit" onSubmit={saveTitle}>
            <label for="conversation-title" class="sr-only">
              Title
            </label>
            <input
              id="conversation-title"
              ref={titleInput}
              class="input input--sm"
              value={editing}
              maxLength={200}
              onInput={(event) => setEditing(event.currentTarget.value)}
              onKeyDown={(event) => {
                if (event.key === 'Escape') {
                  event.preventDefault();
                  setEditing(null);
                }
              }}
            />
            <button type="submit" class="btn btn-primary btn-sm" disabled={busy}>
              Save
            </button>
            <button type="button" class="btn btn-ghost btn-sm" onClick={() => setEditing(null)}>
              Cancel
            </button>
          </form>
        ) : (
          <h1
            class="chat__title"
            title={conversation ? 'Double-click to rename' : undefined}
            onDblClick={() => conversation && setEditing(conversation.title)}
          >
            {conversation ? conversationTitle(conversation) : props.placeholderTitle}
          </h1>
        )}
        <div class="chat__tools">
          {props.picker}
          <button
            type="button"
            class={props.hasSystemPrompt ? 'btn btn-ghost btn-sm btn-on' : 'btn btn-ghost btn-sm'}
            aria-expanded={props.systemPromptOpen}
            aria-controls="system-prompt-panel"
            onClick={props.onToggleSystemPrompt}
          >
            System prompt
          </button>
          {conversation && editing === null && (
            <button
              type="button"
              class="btn btn-ghost btn-sm"
              onClick={() => setEditing(conversation.title)}
            >
              Rename
            </button>
          )}
          {conversation && <ExportMenu conversation={conversation} />}
          {conversation && (
            <button
              type="button"
              class="btn btn-ghost btn-sm btn-ghost-danger"
              aria-expanded={confirming}
              onClick={() => setConfirming(true)}
            >
              Delete
            </button>
          )}
        </div>
      </div>
      {confirming && conversation && (
        <div class="confirm" role="alertdialog" aria-labelledby="confirm-delete-text">
          <span id="confirm-delete-text">
            Delete “{conversationTitle(conversation)}” and all its messages? This cannot be undone.
          </span>
          <span class="confirm__buttons">
            <button
              type="button"
              class="btn btn-danger btn-sm"
              disabled={busy}
              onClick={() => void remove()}
            >
              Yes, delete
            </button>
            <button type="button" class="btn btn-sm" onClick={() => setConfirming(false)}>
              Cancel
            </button>
          </span>
        </div>
      )}
      <ErrorText message={error} />
    </header>
  );
}

/**
 * The conversation's system prompt. A new chat keeps it as a draft (used when the conversation
 * is created); an existing one saves it with the Save button.
 */
export function SystemPromptPanel(props: {
  /** The stored prompt, or the new chat's draft. */
  value: string;
  isNew: boolean;
  onDraft: (text: string) => void;
  onSave: (text: string) => Promise<void>;
  onClose: () => void;
}) {
  const [text, setText] = useState(props.value);
  const [status, setStatus] = useState<'idle' | 'saving' | 'saved'>('idle');
  const [error, setError] = useState<string | null>(null);
  const dirty = text !== props.value;

  async function save(event: Event) {
    event.preventDefault();
    if (props.isNew) {
      props.onClose();
      return;
    }
    setStatus('saving');
    setError(null);
    try {
      await props.onSave(text);
      setStatus('saved');
    } catch (failure) {
      setError(errorMessage(failure));
      setStatus('idle');
    }
  }

  return (
    <form class="system-panel" id="system-prompt-panel" onSubmit={save}>
      <div class="field">
        <label for="system-prompt">System prompt</label>
        <textarea
          id="system-prompt"
          class="input"
          rows={4}
          placeholder="Instructions the model follows for the whole conversation, e.g. “Answer briefly, in French.”"
          value={text}
          onInput={(event) => {
            const value = event.currentTarget.value;
            setText(value);
            setStatus('idle');
            if (props.isNew) props.onDraft(value);
          }}
        />
        {props.isNew && <p class="hint">Used from the first message of this new chat.</p>}
      </div>
      <ErrorText message={error} />
      <div class="row">
        {props.isNew ? (
          <button type="submit" class="btn btn-sm">
            Done
          </button>
        ) : (
          <>
            <button
              type="submit"
              class="btn btn-primary btn-sm"
              disabled={!dirty || status === 'saving'}
            >
              Save
            </button>
            <button type="button" class="btn btn-ghost btn-sm" onClick={props.onClose}>
              Close
            </button>
          </>
        )}
        <span class="muted" role="status">
          {status === 'saved' && !dirty ? 'Saved' : ''}
        </span>
      </div>
    </form>
  );
}

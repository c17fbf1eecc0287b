import { useRef, useState } from 'preact/hooks';
import type { ChatMessage } from '../../api.js';
import { Markdown, copyText } from '../../components/markdown.js';

function formatTime(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

function usage(message: ChatMessage): string | null {
  const { prompt_tokens: prompt, completion_tokens: completion } = message;
  if (prompt === null && completion === null) return null;
  if (prompt !== null && completion !== null) return `${prompt} + ${completion} tokens`;
  return `${prompt ?? completion} tokens`;
}

/** One message: Markdown body, status, error, and its actions. */
export function MessageView(props: {
  message: ChatMessage;
  /** This message is being generated right now, in this tab. */
  live: boolean;
  canRegenerate: boolean;
  onRegenerate: () => void;
}) {
  const { message, live } = props;
  const body = useRef<HTMLDivElement>(null);
  const [copied, setCopied] = useState<'yes' | 'no' | null>(null);
  const assistant = message.role === 'assistant';
  const tokens = assistant && !live ? usage(message) : null;

  async function copy() {
    const ok = await copyText(message.content, body.current ?? undefined);
    setCopied(ok ? 'yes' : 'no');
    window.setTimeout(() => setCopied(null), 1500);
  }

  let badge = null;
  if (message.status === 'stopped') badge = <span class="badge badge-warn">Stopped</span>;
  else if (message.status === 'error') badge = <span class="badge badge-danger">Error</span>;
  else if (message.status === 'streaming' && !live) {
    badge = (
      <span class="badge" title="The answer was still being written when this page loaded">
        Incomplete
      </span>
    );
  }

  return (
    <article
      class={`message message--${message.role}${live ? ' message--live' : ''}`}
      data-testid="message"
      data-role={message.role}
      data-status={message.status}
      data-id={message.id}
      aria-busy={live}
    >
      <div class="message__meta">
        <span class="message__author" title={formatTime(message.created_at)}>
          {assistant ? (message.model ?? 'Assistant') : 'You'}
        </span>
        {badge}
      </div>
      <div class="message__body" ref={body}>
        {message.content !== '' ? (
          <Markdown text={message.content} />
        ) : live ? (
          <span class="typing" aria-label="Writing">
            <span />
            <span />
            <span />
          </span>
        ) : message.status !== 'error' ? (
          <p class="muted">(no text)</p>
        ) : null}
      </div>
      {message.status === 'error' && (
        <p class="error" role="alert">
          {message.error ?? 'The answer failed.'}
        </p>
      )}
      {!live && (
        <div class="message__actions">
          {message.content !== '' && (
            <button type="button" class="btn btn-ghost btn-xs" onClick={() => void copy()}>
              {copied === 'yes' ? 'Copied' : copied === 'no' ? 'Select and copy' : 'Copy message'}
            </button>
          )}
          {props.canRegenerate && (
            <button type="button" class="btn btn-ghost btn-xs" onClick={props.onRegenerate}>
              Regenerate
            </button>
          )}
          {tokens && <span class="message__usage muted">{tokens}</span>}
        </div>
      )}
    </article>
  );
}

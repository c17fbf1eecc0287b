import { useEffect, useRef, useState } from 'preact/hooks';
import { onStreamEvent, type ChatMessage } from '../../api.js';
import { Markdown, copyText } from '../../components/markdown.js';

interface ToolCallView {
  id: string;
  name: string;
  arguments: string;
  result?: { ok: boolean; content: string };
}

/** The MCP tool calls and notices of the answer streamed last in this tab. */
interface ToolActivity {
  messageId: number | null;
  calls: ToolCallView[];
  notices: string[];
}

// Kept outside the views: the answer's view is replaced when its stored id arrives, and the
// first events may come before the new view subscribes.
let activity: ToolActivity = { messageId: null, calls: [], notices: [] };
const watchers = new Set<() => void>();

onStreamEvent((event) => {
  if (event.type === 'assistant') {
    activity = { messageId: event.message.id, calls: [], notices: [] };
  } else if (event.type === 'notice') {
    activity = { ...activity, notices: [...activity.notices, event.message] };
  } else if (event.type === 'tool_call') {
    const call = { id: event.id, name: event.name, arguments: event.arguments };
    activity = { ...activity, calls: [...activity.calls, call] };
  } else if (event.type === 'tool_result') {
    // Ids may repeat across rounds: the result is the latest unanswered call's.
    const calls = [...activity.calls];
    const at = calls.findLastIndex((c) => c.id === event.id && c.result === undefined);
    const call = calls[at];
    if (call === undefined) return;
    calls[at] = { ...call, result: { ok: event.ok, content: event.content } };
    activity = { ...activity, calls };
  } else {
    return;
  }
  for (const watch of watchers) watch();
});

/** The tool activity of `messageId`, kept up to date while `follow` is true. */
function useToolActivity(messageId: number, follow: boolean): ToolActivity | null {
  const [, setVersion] = useState(0);
  useEffect(() => {
    if (!follow) return undefined;
    const watch = () => setVersion((v) => v + 1);
    watchers.add(watch);
    watch();
    return () => {
      watchers.delete(watch);
    };
  }, [follow]);
  return activity.messageId === messageId ? activity : null;
}

const STATUSES = {
  running: { label: 'Running', badge: 'badge' },
  unfinished: { label: 'Not finished', badge: 'badge badge-warn' },
  ok: { label: 'Done', badge: 'badge badge-ok' },
  failed: { label: 'Failed', badge: 'badge badge-danger' },
};

function callStatus(call: ToolCallView, live: boolean): keyof typeof STATUSES {
  if (call.result === undefined) return live ? 'running' : 'unfinished';
  return call.result.ok ? 'ok' : 'failed';
}

/** JSON text indented for reading; anything else (a cut-off text, say) as it is. */
function readable(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** Each tool call with its status; arguments and result (as plain text) fold out. */
function ToolCalls(props: { activity: ToolActivity; live: boolean }) {
  const { calls, notices } = props.activity;
  if (calls.length === 0 && notices.length === 0) return null;
  return (
    <div class="tool-activity" data-testid="tool-activity">
      {notices.map((notice, i) => (
        <p key={`n${i}`} class="hint">
          {notice}
        </p>
      ))}
      {calls.length > 0 && (
        <ul class="tool-calls">
          {calls.map((call, i) => {
            const status = callStatus(call, props.live);
            const { label, badge } = STATUSES[status];
            return (
              <li key={`c${i}`} class="tool-call" data-status={status}>
                <details>
                  <summary>
                    <code>{call.name}</code> <span class={badge}>{label}</span>
                  </summary>
                  <p class="tool-call__label">Arguments</p>
                  <pre class="tool-call__text">{readable(call.arguments || '{}')}</pre>
                  {call.result && <p class="tool-call__label">Result</p>}
                  {call.result && <pre class="tool-call__text">{call.result.content}</pre>}
                </details>
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}

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
  const tools = useToolActivity(
    message.id,
    assistant && (live || activity.messageId === message.id),
  );

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
      {tools && <ToolCalls activity={tools} live={live} />}
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

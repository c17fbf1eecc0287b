/**
 * The chat: the open conversation (or a new one), its messages, the composer and the
 * conversation's tools. The sidebar with the conversation list is in chat/sidebar.tsx and is
 * owned by the app shell; `onConversationsChanged` asks it to reload.
 *
 * Streaming: the user's message and an empty answer are shown at once; the server's `user`
 * and `assistant` events replace them with the stored rows, `delta` texts are appended as they
 * come, `done` replaces the answer with the stored message. Stop (or Esc) aborts the request;
 * the server keeps what was written as `stopped`. Leaving the conversation stops it too.
 */
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import {
  api,
  ApiError,
  type ChatMessage,
  type ChatStreamEvent,
  type Conversation,
  type Me,
  type ModelInfo,
} from '../api.js';
import { ErrorText, useTitle } from '../components/common.js';
import { errorMessage } from '../components/errors.js';
import { Link } from '../components/link.js';
import { conversationPath, navigate } from '../router.js';
import { Composer } from './chat/composer.js';
import { ConversationHeader, ModelPicker, SystemPromptPanel } from './chat/header.js';
import { MessageView } from './chat/message.js';
import { conversationTitle } from './chat/sidebar.js';

interface Run {
  conversationId: string;
  controller: AbortController;
  /** The answer's id in `messages`: a local one until the server's `assistant` event. */
  assistantId: number;
  userId: number | null;
  /** Some event arrived: the server accepted the request. */
  accepted: boolean;
  /** `done` or `error` arrived. */
  finished: boolean;
}

let nextLocalId = -1;

function localMessage(
  role: ChatMessage['role'],
  content: string,
  status: ChatMessage['status'],
  model: string | null,
): ChatMessage {
  return {
    id: nextLocalId--,
    role,
    content,
    model,
    status,
    error: null,
    prompt_tokens: null,
    completion_tokens: null,
    created_at: new Date().toISOString(),
  };
}

/** The conversation's model, else the user's default, else the first one. */
function pickModel(
  models: ModelInfo[],
  conversation: Conversation | null,
  defaultModel: string | null,
): string {
  if (conversation?.model) return conversation.model;
  if (defaultModel && models.some((m) => m.id === defaultModel)) return defaultModel;
  return models[0]?.id ?? '';
}

const NEAR_BOTTOM_PX = 40;
const BUSY_RETRIES = 6;
const BUSY_RETRY_MS = 350;

export function ChatPage(props: {
  me: Me;
  conversationId: string | null;
  onConversationsChanged: () => void;
}) {
  const { conversationId, onConversationsChanged } = props;

  const [models, setModels] = useState<ModelInfo[] | null>(null);
  const [modelsError, setModelsError] = useState<string | null>(null);
  const [defaultModel, setDefaultModel] = useState<string | null>(null);
  /** A model picked by hand, for the conversation it was picked in (null: the new chat). */
  const [chosen, setChosen] = useState<{ key: string | null; model: string } | null>(null);

  const [conversation, setConversation] = useState<Conversation | null>(null);
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [loading, setLoading] = useState(false);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);

  const [draft, setDraft] = useState('');
  const drafts = useRef(new Map<string, string>());
  const [newSystemPrompt, setNewSystemPrompt] = useState('');
  const [systemOpen, setSystemOpen] = useState(false);

  const [streaming, setStreaming] = useState(false);
  const [creating, setCreating] = useState(false);
  const runRef = useRef<Run | null>(null);
  /** The conversation shown (or being created); null for the new chat. */
  const shownId = useRef<string | null | undefined>(undefined);
  const messagesRef = useRef(messages);
  messagesRef.current = messages;
  const draftRef = useRef(draft);
  draftRef.current = draft;

  const list = useRef<HTMLDivElement>(null);
  const input = useRef<HTMLTextAreaElement>(null);
  const stick = useRef(true);
  const [atBottom, setAtBottom] = useState(true);

  useTitle(
    conversation ? conversationTitle(conversation) : conversationId === null ? 'New chat' : '',
  );

  // Models and the user's default model, once.
  useEffect(() => {
    let cancelled = false;
    api.models().then(
      (answer) => {
        if (!cancelled) setModels(answer.models);
      },
      (error: unknown) => {
        if (cancelled) return;
        setModels([]);
        setModelsError(errorMessage(error));
      },
    );
    api.settings().then(
      (settings) => {
        if (!cancelled) setDefaultModel(settings.default_model);
      },
      () => {
        // No default then: the first model is picked.
      },
    );
    return () => {
      cancelled = true;
    };
  }, []);

  const stopRun = useCallback((forget: boolean) => {
    const run = runRef.current;
    if (!run) return;
    run.controller.abort();
    if (forget) {
      runRef.current = null;
      setStreaming(false);
    }
  }, []);

  // Leaving the page stops the answer being written.
  useEffect(() => () => stopRun(true), [stopRun]);

  // Open the conversation of the address (or the new chat).
  useEffect(() => {
    if (conversationId === shownId.current) return;
    if (runRef.current && runRef.current.conversationId !== conversationId) stopRun(true);
    drafts.current.set(shownId.current ?? '', draftRef.current);
    shownId.current = conversationId;
    setDraft(drafts.current.get(conversationId ?? '') ?? '');
    setLoadError(null);
    setActionError(null);
    setSystemOpen(false);
    stick.current = true;
    setAtBottom(true);
    if (conversationId === null) {
      setConversation(null);
      setMessages([]);
      setLoading(false);
      return;
    }
    setConversation(null);
    setMessages([]);
    setLoading(true);
    let cancelled = false;
    api.conversation(conversationId).then(
      (answer) => {
        if (cancelled) return;
        setConversation(answer.conversation);
        setMessages(answer.messages);
        setLoading(false);
      },
      (error: unknown) => {
        if (cancelled) return;
        setLoadError(errorMessage(error));
        setLoading(false);
      },
    );
    return () => {
      cancelled = true;
    };
  }, [conversationId, stopRun]);

  // Focus the composer on a new page (not on touch screens: no keyboard popping up).
  useEffect(() => {
    if (!loading && window.matchMedia('(pointer: fine)').matches) input.current?.focus();
  }, [conversationId, loading]);

  // Follow the answer while it is written, unless the user scrolled up to read.
  useLayoutEffect(() => {
    const element = list.current;
    if (element && stick.current) element.scrollTop = element.scrollHeight;
  }, [messages, loading]);

  // The list also changes size without new messages (a panel opens, the window resizes, a
  // code block gets its bar): stay at the bottom if we were there.
  useEffect(() => {
    const element = list.current;
    if (!element || typeof ResizeObserver === 'undefined') return;
    const observer = new ResizeObserver(() => {
      if (stick.current) element.scrollTop = element.scrollHeight;
    });
    observer.observe(element);
    if (element.firstElementChild) observer.observe(element.firstElementChild);
    return () => observer.disconnect();
    // The list is a new element after an error page.
  }, [loadError]);

  const onScroll = () => {
    const element = list.current;
    if (!element) return;
    const bottom = element.scrollHeight - element.scrollTop - element.clientHeight < NEAR_BOTTOM_PX;
    stick.current = bottom;
    setAtBottom(bottom);
  };

  const jumpToLatest = () => {
    stick.current = true;
    setAtBottom(true);
    const element = list.current;
    if (element) element.scrollTop = element.scrollHeight;
  };

  // Esc stops the answer wherever the focus is (unless something else used the key).
  useEffect(() => {
    if (!streaming) return;
    const onKey = (event: KeyboardEvent) => {
      if (event.key === 'Escape' && !event.defaultPrevented) stopRun(false);
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [streaming, stopRun]);

  const model =
    chosen && chosen.key === (conversation?.id ?? null)
      ? chosen.model
      : pickModel(models ?? [], conversation, defaultModel);

  /** Streams an answer into the open conversation. */
  const runAnswer = useCallback(
    async (
      conversationId: string,
      kind: 'send' | 'regenerate',
      content: string,
      modelId: string,
    ) => {
      const controller = new AbortController();
      const userMessage = kind === 'send' ? localMessage('user', content, 'complete', null) : null;
      const answer = localMessage('assistant', '', 'streaming', modelId || null);
      const previous = messagesRef.current;
      const replaced =
        kind === 'regenerate' && previous.at(-1)?.role === 'assistant'
          ? previous.at(-1)
          : undefined;
      const run: Run = {
        conversationId,
        controller,
        assistantId: answer.id,
        userId: userMessage?.id ?? null,
        accepted: false,
        finished: false,
      };
      runRef.current = run;
      setStreaming(true);
      setActionError(null);
      stick.current = true;
      setAtBottom(true);
      setMessages((current) => {
        const kept = replaced ? current.filter((m) => m.id !== replaced.id) : current;
        return userMessage ? [...kept, userMessage, answer] : [...kept, answer];
      });

      const live = () => runRef.current === run;
      const patchAnswer = (patch: (message: ChatMessage) => ChatMessage) => {
        const id = run.assistantId;
        setMessages((current) => current.map((m) => (m.id === id ? patch(m) : m)));
      };

      const onEvent = (event: ChatStreamEvent) => {
        if (!live()) return;
        run.accepted = true;
        switch (event.type) {
          case 'user': {
            const localId = run.userId;
            run.userId = event.message.id;
            setMessages((current) => current.map((m) => (m.id === localId ? event.message : m)));
            break;
          }
          case 'assistant': {
            const localId = run.assistantId;
            run.assistantId = event.message.id;
            setMessages((current) =>
              current.map((m) =>
                m.id === localId
                  ? { ...event.message, content: event.message.content || m.content }
                  : m,
              ),
            );
            break;
          }
          case 'delta':
            patchAnswer((m) => ({ ...m, content: m.content + event.text }));
            break;
          case 'done':
            run.finished = true;
            patchAnswer(() => event.message);
            run.assistantId = event.message.id;
            setConversation(event.conversation);
            break;
          case 'error':
            run.finished = true;
            patchAnswer((m) => ({
              ...m,
              status: 'error',
              error: `${event.message} (request ${event.request_id})`,
            }));
            break;
        }
      };

      const request = () => {
        const modelField = modelId ? { model: modelId } : {};
        return kind === 'send'
          ? api.send(conversationId, { content, ...modelField }, onEvent, controller.signal)
          : api.regenerate(conversationId, modelField, onEvent, controller.signal);
      };

      try {
        // Right after Stop the server may still be storing the stopped answer (409 busy):
        // wait a moment and ask again rather than bother the user.
        for (let attempt = 1; ; attempt++) {
          try {
            await request();
            break;
          } catch (error) {
            const busy =
              error instanceof ApiError &&
              error.status === 409 &&
              error.code === 'conversation_busy';
            if (!busy || run.accepted || controller.signal.aborted || attempt >= BUSY_RETRIES) {
              throw error;
            }
            await new Promise((resolve) => window.setTimeout(resolve, BUSY_RETRY_MS));
            if (controller.signal.aborted) throw error;
          }
        }
        if (live() && !run.finished) {
          patchAnswer((m) => ({
            ...m,
            status: 'error',
            error: 'The connection closed before the answer was complete.',
          }));
        }
      } catch (error) {
        if (live()) {
          if (controller.signal.aborted) {
            patchAnswer((m) => (m.status === 'streaming' ? { ...m, status: 'stopped' } : m));
          } else if (!run.accepted) {
            // Refused before anything was stored: take the message back into the composer.
            const localIds = new Set([run.assistantId, run.userId]);
            setMessages((current) => {
              const kept = current.filter((m) => !localIds.has(m.id));
              return replaced ? [...kept, replaced] : kept;
            });
            if (kind === 'send') setDraft((text) => (text.trim() === '' ? content : text));
            setActionError(errorMessage(error));
          } else {
            patchAnswer((m) => ({ ...m, status: 'error', error: errorMessage(error) }));
          }
        }
      } finally {
        if (live()) {
          runRef.current = null;
          setStreaming(false);
        }
        // The server titles a conversation from its first message and moves it to the top.
        onConversationsChanged();
      }
    },
    [onConversationsChanged],
  );

  async function send() {
    const content = draft.trim();
    if (content === '' || streaming || creating || model === '') return;
    setActionError(null);
    let target = conversation;
    if (!target) {
      if (conversationId !== null) return; // still loading
      setCreating(true);
      setDraft('');
      try {
        target = await api.createConversation({
          model,
          ...(newSystemPrompt.trim() ? { system_prompt: newSystemPrompt } : {}),
        });
      } catch (error) {
        setCreating(false);
        setDraft((text) => (text === '' ? content : text));
        setActionError(errorMessage(error));
        return;
      }
      setCreating(false);
      if (shownId.current !== null) {
        // The user went elsewhere meanwhile: the (empty) conversation is in the list.
        onConversationsChanged();
        return;
      }
      shownId.current = target.id;
      setConversation(target);
      setMessages([]);
      setChosen({ key: target.id, model });
      setNewSystemPrompt('');
      setSystemOpen(false);
      navigate(conversationPath(target.id));
      onConversationsChanged();
    } else {
      setDraft('');
    }
    void runAnswer(target.id, 'send', content, model);
  }

  function regenerate() {
    if (!conversation || streaming) return;
    void runAnswer(conversation.id, 'regenerate', '', model);
  }

  function changeModel(next: string) {
    setChosen({ key: conversation?.id ?? null, model: next });
    if (conversation && conversation.model !== next) {
      const id = conversation.id;
      api.updateConversation(id, { model: next }).then(
        (updated) => {
          if (shownId.current === id) setConversation(updated);
        },
        (error: unknown) => setActionError(errorMessage(error)),
      );
    }
  }

  async function rename(title: string) {
    if (!conversation) return;
    const updated = await api.updateConversation(conversation.id, { title });
    if (shownId.current === updated.id) setConversation(updated);
    onConversationsChanged();
  }

  async function remove() {
    if (!conversation) return;
    stopRun(true);
    await api.deleteConversation(conversation.id);
    drafts.current.delete(conversation.id);
    onConversationsChanged();
    navigate('/', { replace: true });
  }

  async function saveSystemPrompt(text: string) {
    if (!conversation) return;
    const updated = await api.updateConversation(conversation.id, { system_prompt: text });
    if (shownId.current === updated.id) setConversation(updated);
  }

  const lastMessage = messages.at(-1);
  const noModels = models !== null && models.length === 0 && !modelsError;
  const systemPrompt = conversation ? conversation.system_prompt : newSystemPrompt;
  const isNew = conversationId === null;

  const picker = (
    <ModelPicker
      models={models ?? []}
      value={model}
      onChange={changeModel}
      disabled={streaming || models === null}
    />
  );

  if (loadError) {
    return (
      <section class="chat">
        <div class="chat__center">
          <div class="card">
            <h1>Cannot open this conversation</h1>
            <p class="error" role="alert">
              {loadError}
            </p>
            <Link href="/" class="btn btn-primary">
              Start a new chat
            </Link>
          </div>
        </div>
      </section>
    );
  }

  return (
    <section class="chat" aria-label="Chat">
      <ConversationHeader
        conversation={conversation}
        placeholderTitle={isNew ? 'New chat' : 'Loading…'}
        picker={picker}
        systemPromptOpen={systemOpen}
        hasSystemPrompt={systemPrompt.trim() !== ''}
        onToggleSystemPrompt={() => setSystemOpen((open) => !open)}
        onRename={rename}
        onDelete={remove}
      />
      {systemOpen && (isNew || conversation) && (
        <SystemPromptPanel
          key={conversation?.id ?? 'new'}
          value={systemPrompt}
          isNew={!conversation}
          onDraft={setNewSystemPrompt}
          onSave={saveSystemPrompt}
          onClose={() => setSystemOpen(false)}
        />
      )}
      <div
        class="chat__messages"
        ref={list}
        onScroll={onScroll}
        data-testid="messages"
        aria-live="off"
        aria-busy={loading}
      >
        <div class="chat__column">
          {loading && <p class="muted chat__loading">Loading…</p>}
          {!loading && messages.length === 0 && (
            <div class="empty">
              <h2 class="empty__title">{isNew ? 'What can I help with?' : 'No messages yet'}</h2>
              <p class="muted">
                {model
                  ? `You are talking to ${model}. Pick another model at the top.`
                  : 'There is no model to talk to yet.'}
              </p>
            </div>
          )}
          {messages.map((message) => (
            <MessageView
              key={message.id}
              message={message}
              live={streaming && runRef.current?.assistantId === message.id}
              canRegenerate={
                !streaming &&
                conversation !== null &&
                message === lastMessage &&
                message.role === 'assistant'
              }
              onRegenerate={regenerate}
            />
          ))}
        </div>
      </div>
      <div class="chat__bottom">
        <div class="chat__column">
          {!atBottom && messages.length > 0 && (
            <button type="button" class="btn btn-sm jump" onClick={jumpToLatest}>
              Jump to latest
            </button>
          )}
          {noModels && (
            <p class="notice" role="status">
              No models available: add an upstream in Admin, or start a model server.
            </p>
          )}
          <ErrorText message={modelsError} />
          <ErrorText message={actionError} />
          <Composer
            value={draft}
            onInput={setDraft}
            onSend={() => void send()}
            onStop={() => stopRun(false)}
            streaming={streaming}
            disabled={creating || model === '' || loading || (!isNew && !conversation)}
            placeholder={model ? `Message ${model}` : 'Message'}
            inputRef={input}
          />
        </div>
      </div>
    </section>
  );
}

import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { PassThrough } from 'node:stream';
import { requireUser, type RateLimiter, type SessionUser } from '../auth/index.js';
import {
  applyPolicy,
  type Dispatcher,
  type RequestPolicy,
  type UpstreamRegistry,
} from '../gateway/index.js';
import { HttpError } from '../server/errors.js';
import { parseWith } from '../server/validate.js';
import type { ChatMessageRow, ConversationRow, Store } from '../store/index.js';
import {
  createConversations,
  toConversation,
  toMessage,
  type AnswerStart,
} from './conversations.js';
import { exportConversation } from './export.js';
import {
  createMcpToolbox,
  toOpenAiTools,
  type McpServerEntry,
  type McpToolboxOptions,
  type ToolSession,
} from './mcp-tools.js';
import {
  conversationId,
  conversationNotFound,
  CreateConversation,
  ExportQuery,
  ListQuery,
  Regenerate,
  SendMessage,
  UpdateConversation,
} from './schemas.js';
import { sseFrame, streamAnswer, type ToolUse } from './stream.js';
import { MAX_TOOL_ROUNDS, type PromptMessage } from './tool-loop.js';
import type { ModelInfo } from './types.js';

export interface ChatOptions {
  store: Store;
  registry: UpstreamRegistry;
  /** The gateway's dispatcher (`createDispatcher`), shared routing, timeouts and aborts. */
  dispatcher: Dispatcher;
  /** The gateway's request policy: the same max_tokens clamp applies to chat answers. */
  policy: RequestPolicy;
  /** Message sends and regenerations, one token each, per user. */
  sendLimiter: RateLimiter;
  /** The user's personal key for an upstream, sent instead of the upstream's own. */
  upstreamKeyFor: (userId: string, upstream: string) => string | undefined;
  streamIdleTimeoutMs: number;
  /** Answers one user may have streaming at once (default 8); more get 429. */
  maxStreamsPerUser?: number;
  /**
   * The user's remote MCP servers (token opened), whose tools the model is offered. Absent,
   * or an empty list: answers are asked without tools, exactly as before.
   */
  mcpServersFor?: (userId: string) => McpServerEntry[];
  /** Timeouts and the DNS lookup of the MCP client (tests). */
  mcpTools?: McpToolboxOptions;
}

/** Models of healthy upstreams, each with the upstream that serves it first. */
function listModels(registry: UpstreamRegistry): ModelInfo[] {
  const seen = new Map<string, ModelInfo>();
  for (const upstream of registry.list()) {
    if (!upstream.healthy) continue;
    for (const model of upstream.models) {
      if (!seen.has(model.id)) seen.set(model.id, { id: model.id, upstream: upstream.name });
    }
  }
  return [...seen.values()];
}

/** What the model is shown: the system prompt, then the finished (or stopped) messages. */
function promptFor(conversation: ConversationRow, history: ChatMessageRow[]): PromptMessage[] {
  const prompt: PromptMessage[] = [];
  if (conversation.system_prompt.trim() !== '') {
    prompt.push({ role: 'system', content: conversation.system_prompt });
  }
  for (const message of history) {
    if (message.status !== 'complete' && message.status !== 'stopped') continue;
    // An answer stopped before its first token has nothing to say.
    if (message.role === 'assistant' && message.content === '') continue;
    prompt.push({ role: message.role, content: message.content });
  }
  return prompt;
}

/**
 * The chat face's API, registered inside the `/api` scope (which resolves `request.user`):
 * models, conversations (list, search, create, read, rename, delete, export), usage, and the
 * streamed answers of message sends and regenerations. Every query names the signed-in
 * user; another user's conversation is as unknown as one that does not exist.
 *
 * @example
 * api.register(chat, {
 *   store, registry, policy, streamIdleTimeoutMs,
 *   dispatcher: createDispatcher({ registry, metrics, maxStreamsPerKey, upstreamTimeoutMs, streamIdleTimeoutMs }),
 *   sendLimiter: createRateLimiter({ perSecond: 0.5, burst: 10 }),
 *   upstreamKeyFor: (userId, upstream) => personalKeys.get(userId, upstream),
 * });
 */
export const chat: FastifyPluginAsync<ChatOptions> = async (app, options) => {
  const { registry, dispatcher, policy } = options;
  const conversations = createConversations(options.store);

  const interrupted = await conversations.sweepInterrupted();
  if (interrupted > 0) {
    app.log.warn({ messages: interrupted }, 'chat answers a previous run left unfinished: failed');
  }

  const toolbox = options.mcpServersFor ? createMcpToolbox(options.mcpTools) : undefined;

  // One answer at a time per conversation, and answers in flight are stored before shutdown.
  const answering = new Set<string>();
  // And a cap on a user's answers at once, as the gateway caps a key's streams.
  const openAnswers = new Map<string, number>();
  const maxAnswers = options.maxStreamsPerUser ?? 8;
  function answerStarted(conversation: ConversationRow) {
    answering.add(conversation.id);
    openAnswers.set(conversation.user_id, (openAnswers.get(conversation.user_id) ?? 0) + 1);
  }
  function answerEnded(conversation: ConversationRow) {
    if (!answering.delete(conversation.id)) return;
    const left = (openAnswers.get(conversation.user_id) ?? 1) - 1;
    if (left <= 0) openAnswers.delete(conversation.user_id);
    else openAnswers.set(conversation.user_id, left);
  }
  const inFlight = new Set<Promise<void>>();
  app.addHook('onClose', async () => {
    await Promise.all(inFlight);
    await toolbox?.close();
  });

  async function owned(user: SessionUser, params: unknown): Promise<ConversationRow> {
    const conversation = await conversations.get(user.id, conversationId(params));
    if (conversation === undefined) throw conversationNotFound();
    return conversation;
  }

  function takeSendToken(user: SessionUser): void {
    const wait = options.sendLimiter.take(`chat:${user.id}`);
    if (wait > 0) {
      throw new HttpError(429, 'rate_limited', `too many messages; retry in ${wait} s`, {
        headers: { 'retry-after': String(wait) },
      });
    }
  }

  app.get('/models', async (request) => {
    requireUser(request);
    return { models: listModels(registry) };
  });

  app.get('/usage', async (request) => {
    const user = requireUser(request);
    return conversations.usage(user.id);
  });

  app.get('/conversations', async (request) => {
    const user = requireUser(request);
    const { q } = parseWith(ListQuery, request.query, 'query string');
    const rows = await conversations.list(user.id, q);
    return { conversations: rows.map(toConversation) };
  });

  app.post('/conversations', async (request, reply) => {
    const user = requireUser(request);
    const body = parseWith(CreateConversation, request.body ?? {}, 'body');
    const row = await conversations.create(user.id, body);
    return reply.code(201).send(toConversation(row));
  });

  app.get('/conversations/:id', async (request) => {
    const user = requireUser(request);
    const conversation = await owned(user, request.params);
    const messages = await conversations.messages(user.id, conversation.id);
    return { conversation: toConversation(conversation), messages: messages.map(toMessage) };
  });

  app.patch('/conversations/:id', async (request) => {
    const user = requireUser(request);
    const id = conversationId(request.params);
    const patch = parseWith(UpdateConversation, request.body, 'body');
    const row = await conversations.update(user.id, id, patch);
    if (row === undefined) throw conversationNotFound();
    return toConversation(row);
  });

  app.delete('/conversations/:id', async (request, reply) => {
    const user = requireUser(request);
    const removed = await conversations.remove(user.id, conversationId(request.params));
    if (!removed) throw conversationNotFound();
    return reply.code(204).send();
  });

  app.get('/conversations/:id/export', async (request, reply) => {
    const user = requireUser(request);
    const { format } = parseWith(ExportQuery, request.query, 'query string');
    const conversation = await owned(user, request.params);
    const messages = await conversations.messages(user.id, conversation.id);
    const file = exportConversation(toConversation(conversation), messages.map(toMessage), format);
    return reply
      .header('content-type', file.contentType)
      .header('content-disposition', `attachment; filename="${file.filename}"`)
      .header('cache-control', 'no-store')
      .send(file.body);
  });

  app.post('/conversations/:id/messages', async (request, reply) => {
    const user = requireUser(request);
    const id = conversationId(request.params);
    const body = parseWith(SendMessage, request.body, 'body');
    const conversation = await owned(user, { id });
    return answer(request, reply, user, conversation, body.model, body.content);
  });

  app.post('/conversations/:id/regenerate', async (request, reply) => {
    const user = requireUser(request);
    const id = conversationId(request.params);
    const body = parseWith(Regenerate, request.body ?? {}, 'body');
    const conversation = await owned(user, { id });
    return answer(request, reply, user, conversation, body.model, undefined);
  });

  /**
   * Answers a new user message (`content`) or, without one, the last user message again.
   * Everything that can fail before the answer starts (no model, nothing to regenerate, rate
   * limit, unknown model, upstream down) is a plain JSON error and stores nothing.
   */
  async function answer(
    request: FastifyRequest,
    reply: FastifyReply,
    user: SessionUser,
    conversation: ConversationRow,
    requestedModel: string | undefined,
    content: string | undefined,
  ) {
    const model = requestedModel ?? conversation.model;
    if (model === null) {
      throw new HttpError(
        400,
        'model_required',
        'name a model: this conversation has none yet (GET /api/models lists them)',
      );
    }
    if (answering.has(conversation.id)) {
      throw new HttpError(
        409,
        'conversation_busy',
        'this conversation is being answered; wait for the answer or stop it',
      );
    }
    if ((openAnswers.get(user.id) ?? 0) >= maxAnswers) {
      throw new HttpError(
        429,
        'too_many_streams',
        `you already have ${maxAnswers} answers being written; wait for one to finish (PALISADE_MAX_STREAMS)`,
        { headers: { 'retry-after': '1' } },
      );
    }
    answerStarted(conversation);
    try {
      return await begin(request, reply, user, conversation, model, content);
    } catch (error) {
      answerEnded(conversation);
      throw error;
    }
  }

  /**
   * The user's MCP tools for one answer, with a signal that aborts when the client goes. No
   * servers (or no upstream for the model, which dispatch will report): no session.
   */
  async function openTools(
    request: FastifyRequest,
    reply: FastifyReply,
    user: SessionUser,
    model: string,
  ): Promise<{ session?: ToolSession; signal?: AbortSignal; notices: string[] }> {
    if (toolbox === undefined || options.mcpServersFor === undefined) return { notices: [] };
    let servers: McpServerEntry[];
    try {
      servers = options.mcpServersFor(user.id);
    } catch {
      request.log.warn('the MCP servers of the user could not be read');
      return { notices: ['your MCP servers could not be read; this answer has no tools'] };
    }
    if (servers.length === 0 || registry.candidates(model).length === 0) return { notices: [] };
    const stop = new AbortController();
    // Each round's dispatch listens for the client going: up to 8 listeners more than usual.
    reply.raw.setMaxListeners(reply.raw.getMaxListeners() + MAX_TOOL_ROUNDS + 1);
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) stop.abort();
    });
    const session = await toolbox.open(user.id, servers, stop.signal, request.log);
    if (stop.signal.aborted) {
      await session.close();
      throw new HttpError(499, 'client_closed_request', 'the client closed the connection');
    }
    return { session, signal: stop.signal, notices: [...session.notices] };
  }

  /** Builds the prompt and opens the user's tools; `relay` asks the model and streams. */
  async function begin(
    request: FastifyRequest,
    reply: FastifyReply,
    user: SessionUser,
    conversation: ConversationRow,
    model: string,
    content: string | undefined,
  ) {
    const history = await conversations.messages(user.id, conversation.id);
    let start: AnswerStart;
    let asked: ChatMessageRow[];
    if (content !== undefined) {
      start = { kind: 'send', content, model };
      asked = history;
    } else {
      const lastUser = history.findLastIndex((m) => m.role === 'user');
      if (lastUser === -1) {
        throw new HttpError(
          400,
          'nothing_to_regenerate',
          'this conversation has no message to answer yet',
        );
      }
      const last = history.at(-1);
      const replaces = last?.role === 'assistant' ? last.id : undefined;
      start = { kind: 'regenerate', replaces, model };
      asked = history.slice(0, lastUser + 1);
    }
    takeSendToken(user);

    const prompt = promptFor(conversation, asked);
    if (content !== undefined) prompt.push({ role: 'user', content });
    const firstUser = history.find((m) => m.role === 'user')?.content ?? content;
    const tools = await openTools(request, reply, user, model);
    const plan = { user, conversation, model, start, firstUser, prompt };
    try {
      return await relay(request, reply, plan, tools);
    } catch (error) {
      await tools.session?.close();
      throw error;
    }
  }

  /** Asks the model (with the user's tools, if any), stores the answer's start, streams it. */
  async function relay(
    request: FastifyRequest,
    reply: FastifyReply,
    plan: {
      user: SessionUser;
      conversation: ConversationRow;
      model: string;
      start: AnswerStart;
      firstUser: string | undefined;
      prompt: PromptMessage[];
    },
    tools: { session?: ToolSession; signal?: AbortSignal; notices: string[] },
  ) {
    const { user, conversation, model, prompt } = plan;
    const offered = tools.session ? toOpenAiTools(tools.session.tools) : [];
    let withTools = offered.length > 0;
    const ask = (messages: PromptMessage[]) =>
      dispatcher.dispatch(
        request,
        reply,
        applyPolicy(
          'chat',
          {
            model,
            messages,
            stream: true,
            stream_options: { include_usage: true },
            ...(withTools ? { tools: offered } : {}),
          },
          policy,
        ),
        '/v1/chat/completions',
        { upstreamApiKey: (upstream) => options.upstreamKeyFor(user.id, upstream.name) },
      );
    const dispatched = await ask(prompt).catch((error: unknown) => {
      // Models without tool support (Ollama's 400, llama.cpp without --jinja) still answer.
      if (!withTools || !(error instanceof HttpError) || ![400, 422, 500].includes(error.status)) {
        throw error;
      }
      withTools = false;
      tools.notices.push(
        `the model refused the tools (${error.message.slice(0, 200)}); it answers without them`,
      );
      return ask(prompt);
    });
    const started = await conversations
      .start(user.id, conversation.id, plan.start, plan.firstUser)
      .catch((error: unknown) => {
        dispatched.response.body.destroy();
        throw error;
      });
    if (started === undefined) {
      dispatched.response.body.destroy();
      throw conversationNotFound();
    }
    const toolUse: ToolUse | undefined =
      withTools && tools.session && tools.signal
        ? { session: tools.session, prompt, dispatch: ask, signal: tools.signal }
        : undefined;

    const out = new PassThrough();
    if (started.user) out.write(sseFrame({ type: 'user', message: toMessage(started.user) }));
    out.write(sseFrame({ type: 'assistant', message: toMessage(started.assistant) }));
    const relaying = streamAnswer({
      out,
      dispatched,
      started,
      conversations,
      userId: user.id,
      idleTimeoutMs: options.streamIdleTimeoutMs,
      log: request.log,
      requestId: request.id,
      onUsage: dispatcher.countTokens,
      notices: tools.notices,
      tools: toolUse,
    })
      .then(() => tools.session?.close())
      .finally(() => {
        answerEnded(conversation);
        inFlight.delete(relaying);
      });
    inFlight.add(relaying);
    return reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('x-accel-buffering', 'no')
      .send(out);
  }
};

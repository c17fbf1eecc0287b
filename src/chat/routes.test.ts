import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { startApiHarness } from '../../test/support/api-harness.js';
import { sendRequest, type JsonResponse } from '../../test/support/http.js';
import { readEvents } from '../../test/support/web.js';
import {
  startMockUpstream,
  type MockScript,
  type MockUpstream,
} from '../../test/support/mock-upstream.js';
import { createRateLimiter, type RateLimiter, type SessionUser } from '../auth/index.js';
import {
  addUpstream,
  createDispatcher,
  createUpstreamRegistry,
  type RequestPolicy,
  type UpstreamRegistry,
} from '../gateway/index.js';
import { createMetrics } from '../server/metrics.js';
import { isoNow, openStore, type IsoDate, type Store } from '../store/index.js';
import { chat, createConversations } from './index.js';
import { startMcpFixture, type McpFixture } from '../../test/support/mcp-fixture.js';
import type { McpServerEntry } from './mcp-tools.js';
import type { ChatMessage, Conversation } from './types.js';

const masterKey = Buffer.alloc(32, 9);
const SHARED_KEY = 'sk-shared-upstream-key';
const PERSONAL_KEY = 'sk-alice-personal-key';

interface Harness {
  url: string;
  app: FastifyInstance;
  store: Store;
  registry: UpstreamRegistry;
  local: MockUpstream;
  keyed: MockUpstream;
  alice: SessionUser;
  bob: SessionUser;
  /** The MCP server of `startHarness({ mcp: true })`, which needs MCP_TOKEN. */
  mcp: McpFixture | undefined;
  /** The users' MCP servers: alice has `My Calc` on `mcp`; tests may swap this. */
  serversFor: (userId: string) => McpServerEntry[];
  close(): Promise<void>;
}

const MCP_TOKEN = 'mcp-token-of-alice-0123456789';

/** Models scripted by `scriptTools`: each asks for tools as its name says. */
const TOOL_MODELS = [
  'mock-tools',
  'mock-tools-fail',
  'mock-tools-bad-args',
  'mock-tools-loop',
  'mock-tools-wait',
  'mock-no-tools',
];
const MODELS = ['mock-small', 'mock-large', 'endless-stream', 'broken', 'whole', ...TOOL_MODELS];

function toolChunk(delta: Record<string, unknown>, finish: string | null = null) {
  return {
    id: 'chatcmpl-tools',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, finish_reason: finish }],
  };
}

function usageChunk(prompt: number, completion: number) {
  return {
    id: 'chatcmpl-tools',
    object: 'chat.completion.chunk',
    choices: [],
    usage: { prompt_tokens: prompt, completion_tokens: completion },
  };
}

/** A streamed round that ends in one call of `name`, its arguments sent in `pieces`. */
function callTool(name: string, pieces: string[], id: string, text = ''): MockScript {
  return {
    chunks: [
      toolChunk({ role: 'assistant', content: text }),
      toolChunk({
        tool_calls: [{ index: 0, id, type: 'function', function: { name, arguments: '' } }],
      }),
      ...pieces.map((piece) =>
        toolChunk({ tool_calls: [{ index: 0, function: { arguments: piece } }] }),
      ),
      toolChunk({}, 'tool_calls'),
      usageChunk(10, 4),
    ],
  };
}

function answerText(text: string): MockScript {
  return {
    chunks: [
      toolChunk({ role: 'assistant', content: '' }),
      toolChunk({ content: text }),
      toolChunk({}, 'stop'),
      usageChunk(20, 3),
    ],
  };
}

/** The tool models: a call first, then (with the `tool` message back) an answer using it. */
function scriptTools(request: { model: string; body: Record<string, unknown> }) {
  const messages = request.body.messages as Array<{ role: string; content: unknown }>;
  const results = messages.filter((m) => m.role === 'tool').map((m) => String(m.content));
  const [result] = results;
  switch (request.model) {
    case 'mock-tools':
      return result === undefined
        ? callTool('My_Calc__add', ['{"a":2,', '"b":3}'], 'call_a', 'Let me add.')
        : answerText(`The sum is ${result}.`);
    case 'mock-tools-fail':
      return result === undefined
        ? callTool('My_Calc__fail', [], 'call_f')
        : answerText(`The tool said: ${result}`);
    case 'mock-tools-bad-args':
      return result === undefined
        ? callTool('My_Calc__add', ['{"a":'], 'call_j')
        : answerText(`Oops: ${result}`);
    case 'mock-tools-loop':
      return callTool('My_Calc__add', ['{"a":1,"b":1}'], `call_${results.length}`);
    case 'mock-tools-wait':
      return callTool('My_Calc__wait', ['{}'], 'call_w', 'Waiting.');
    case 'mock-no-tools':
      return request.body.tools === undefined
        ? undefined
        : { status: 400, json: { error: 'mock-no-tools does not support tools' } };
    default:
      return undefined;
  }
}

/**
 * A real chat API under /api over a real store, registry and mock upstreams: `local` serves
 * MODELS (with `broken` failing mid-stream and `whole` answering JSON); `keyed` serves
 * `keyed-model` with a stored upstream key, for which alice has a personal key.
 */
async function startHarness(
  options: {
    sendLimiter?: RateLimiter;
    policy?: RequestPolicy;
    /** The key `keyed` itself requires (none by default: it only records what it gets). */
    keyedRequires?: string;
    /** Start an MCP server and give the chat `mcpServersFor`. */
    mcp?: boolean;
  } = {},
): Promise<Harness> {
  const local = await startMockUpstream({
    models: MODELS,
    scriptFor: scriptTools,
    scripts: {
      broken: {
        chunks: [
          { choices: [{ index: 0, delta: { role: 'assistant', content: 'Half an' } }] },
          { error: { message: 'model crashed', type: 'server_error' } },
        ],
      },
      whole: {
        json: {
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: 'Whole answer' } }],
          usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
        },
      },
    },
  });
  const keyed = await startMockUpstream({
    models: ['keyed-model'],
    ...(options.keyedRequires ? { apiKey: options.keyedRequires } : {}),
  });
  const home = mkdtempSync(join(tmpdir(), 'palisade-chat-'));
  const store = await openStore(home);
  await addUpstream(store, masterKey, { name: 'keyed', url: keyed.url, apiKey: SHARED_KEY });
  const registry = createUpstreamRegistry({
    store,
    masterKey,
    logger: pino({ level: 'silent' }),
    configured: [{ name: 'local', url: local.url }],
    healthIntervalMs: 60_000,
  });
  await registry.start(false);

  const users = new Map<string, SessionUser>();
  for (const username of ['alice', 'bob']) {
    const user: SessionUser = { id: randomUUID(), username, role: 'user' };
    await store.db
      .insertInto('user')
      .values({
        id: user.id,
        username,
        role: 'user',
        password_hash: 'not-used',
        totp_secret_enc: null,
        totp_enabled_at: null,
        totp_last_step: null,
        disabled_at: null,
        created_at: isoNow(),
        last_login_at: null,
      })
      .execute();
    users.set(username, user);
  }
  const alice = users.get('alice') as SessionUser;
  const bob = users.get('bob') as SessionUser;
  const mcp = options.mcp ? await startMcpFixture({ token: MCP_TOKEN }) : undefined;
  const calc: McpServerEntry[] = mcp
    ? [{ id: 'calc', name: 'My Calc', url: mcp.url, token: MCP_TOKEN }]
    : [];

  const streamIdleTimeoutMs = 10_000;
  const served = await startApiHarness({
    bodyLimit: 1024 * 1024,
    // The test names the user in a header.
    user: (request) => {
      const name = request.headers['x-test-user'];
      return typeof name === 'string' ? users.get(name) : undefined;
    },
    routes: (api) =>
      api.register(chat, {
        store,
        registry,
        dispatcher: createDispatcher({
          registry,
          metrics: createMetrics(),
          maxStreamsPerKey: 8,
          upstreamTimeoutMs: 10_000,
          streamIdleTimeoutMs,
        }),
        policy: options.policy ?? { maxTokens: 512, maxChoices: 1 },
        sendLimiter: options.sendLimiter ?? createRateLimiter({ perSecond: 1000, burst: 1000 }),
        upstreamKeyFor: (userId, upstream) =>
          userId === alice.id && upstream === 'keyed' ? PERSONAL_KEY : undefined,
        streamIdleTimeoutMs,
        ...(mcp
          ? {
              mcpServersFor: (userId: string) => harness.serversFor(userId),
              mcpTools: { ssrf: { strict: true, allowedHosts: ['127.0.0.1'] } },
            }
          : {}),
      }),
  });

  const harness: Harness = {
    url: served.url,
    app: served.app,
    store,
    registry,
    local,
    keyed,
    alice,
    bob,
    mcp,
    serversFor: (userId) => (userId === alice.id ? calc : []),
    async close() {
      await served.close();
      await registry.close();
      await local.close();
      await keyed.close();
      await mcp?.close();
      await store.close();
    },
  };
  return harness;
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

function call(
  h: Harness,
  method: Method,
  path: string,
  user: string | null,
  body?: unknown,
): Promise<JsonResponse> {
  return sendRequest(`${h.url}/api${path}`, {
    method,
    ...(body === undefined ? {} : { body }),
    headers: user === null ? {} : { 'x-test-user': user },
  });
}

async function create(h: Harness, user: string, body: unknown = {}): Promise<Conversation> {
  const response = await call(h, 'POST', '/conversations', user, body);
  assert.equal(response.status, 201, response.text);
  return response.json<Conversation>();
}

async function read(h: Harness, user: string, id: string) {
  const response = await call(h, 'GET', `/conversations/${id}`, user);
  assert.equal(response.status, 200, response.text);
  return response.json<{ conversation: Conversation; messages: ChatMessage[] }>();
}

function post(h: Harness, path: string, user: string, body: unknown, signal?: AbortSignal) {
  return fetch(`${h.url}/api${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-test-user': user },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

/** Sends a message and reads the whole answer stream. */
async function send(h: Harness, user: string, id: string, body: unknown) {
  const response = await post(h, `/conversations/${id}/messages`, user, body);
  assert.equal(response.status, 200, await response.clone().text());
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  return readEvents(response);
}

/** Waits for a condition the server reaches on its own (a stored status, an upstream close). */
async function until<T>(probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function chatRequests(upstream: MockUpstream) {
  return upstream.requests.filter((r) => r.path === '/v1/chat/completions');
}

type UpstreamBody = {
  model: string;
  messages: { role: string; content: string }[];
  stream: boolean;
  stream_options: { include_usage: boolean };
  max_tokens: number;
};

function lastChatBody(upstream: MockUpstream): UpstreamBody {
  return chatRequests(upstream).at(-1)?.body as UpstreamBody;
}

async function counts(store: Store) {
  const conversations = await store.db
    .selectFrom('conversation')
    .select(({ fn }) => fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  const messages = await store.db
    .selectFrom('chat_message')
    .select(({ fn }) => fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return { conversations: Number(conversations.n), messages: Number(messages.n) };
}

describe('chat API', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policy: { maxTokens: 64, maxChoices: 1 } });
  });
  after(() => h.close());

  test('GET /models lists the healthy upstreams’ models with their upstream', async () => {
    const response = await call(h, 'GET', '/models', 'alice');
    assert.equal(response.status, 200);
    assert.deepEqual(response.json(), {
      models: [
        ...MODELS.map((id) => ({ id, upstream: 'local' })),
        { id: 'keyed-model', upstream: 'keyed' },
      ],
    });
  });

  test('conversations are created, read, renamed, listed and deleted', async () => {
    const created = await create(h, 'alice', {});
    assert.match(
      created.id,
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    assert.equal(created.title, 'New chat');
    assert.equal(created.system_prompt, '');
    assert.equal(created.model, null);
    assert.deepEqual(Object.keys(created).sort(), [
      'created_at',
      'id',
      'model',
      'system_prompt',
      'title',
      'updated_at',
    ]);

    const full = await create(h, 'alice', {
      title: 'Trip plans',
      model: 'mock-large',
      system_prompt: 'You plan trips.',
    });
    assert.equal(full.title, 'Trip plans');
    assert.deepEqual(await read(h, 'alice', full.id), { conversation: full, messages: [] });

    const renamed = await call(h, 'PATCH', `/conversations/${full.id}`, 'alice', {
      title: 'Holiday',
      model: null,
    });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.json<Conversation>().title, 'Holiday');
    assert.equal(renamed.json<Conversation>().model, null);
    assert.equal(renamed.json<Conversation>().system_prompt, 'You plan trips.');

    const listed = await call(h, 'GET', '/conversations', 'alice');
    const ids = listed.json<{ conversations: Conversation[] }>().conversations.map((c) => c.id);
    assert.ok(ids.includes(created.id) && ids.includes(full.id));

    const removed = await call(h, 'DELETE', `/conversations/${full.id}`, 'alice');
    assert.equal(removed.status, 204);
    assert.equal(removed.text, '');
    const gone = await call(h, 'GET', `/conversations/${full.id}`, 'alice');
    assert.equal(gone.status, 404);
    assert.equal(gone.json<{ error: { code: string } }>().error.code, 'conversation_not_found');
    assert.equal((await call(h, 'DELETE', `/conversations/${full.id}`, 'alice')).status, 404);
  });

  test('the list is newest activity first', async () => {
    const ids = [];
    for (const title of ['order-a', 'order-b', 'order-c'])
      ids.push((await create(h, 'bob', { title })).id);
    const times = [
      '2030-01-01T00:00:02.000Z',
      '2030-01-01T00:00:03.000Z',
      '2030-01-01T00:00:01.000Z',
    ];
    for (const [i, id] of ids.entries()) {
      await h.store.db
        .updateTable('conversation')
        .set({ updated_at: times[i] as IsoDate })
        .where('id', '=', id)
        .execute();
    }
    const listed = await call(h, 'GET', '/conversations?q=order-', 'bob');
    assert.deepEqual(
      listed.json<{ conversations: Conversation[] }>().conversations.map((c) => c.title),
      ['order-b', 'order-a', 'order-c'],
    );
  });

  test('a send streams user, assistant, one delta per upstream token, then done', async () => {
    const conversation = await create(h, 'alice', { system_prompt: 'Be brief.' });
    const events = await send(h, 'alice', conversation.id, {
      content: '  Hello   there, model!\nSecond line',
      model: 'mock-small',
    });
    assert.deepEqual(
      events.map((e) => e.type),
      ['user', 'assistant', 'delta', 'delta', 'delta', 'delta', 'delta', 'done'],
    );
    const [user, assistant, ...rest] = events;
    assert.ok(user?.type === 'user' && assistant?.type === 'assistant');
    assert.equal(user.message.role, 'user');
    assert.equal(user.message.content, '  Hello   there, model!\nSecond line');
    assert.equal(user.message.status, 'complete');
    assert.equal(assistant.message.role, 'assistant');
    assert.equal(assistant.message.status, 'streaming');
    assert.equal(assistant.message.content, '');
    assert.equal(assistant.message.model, 'mock-small');
    const deltas = rest.flatMap((e) => (e.type === 'delta' ? [e.text] : []));
    assert.deepEqual(deltas, ['Hell', 'o fr', 'om m', 'ock-', 'small']);

    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(done.message.id, assistant.message.id);
    assert.equal(done.message.status, 'complete');
    assert.equal(done.message.content, 'Hello from mock-small');
    assert.equal(done.message.prompt_tokens, 8);
    assert.equal(done.message.completion_tokens, 5);
    assert.equal(done.conversation.title, 'Hello there, model!', 'auto-title from the first line');
    assert.equal(done.conversation.model, 'mock-small');

    const stored = await read(h, 'alice', conversation.id);
    assert.deepEqual(stored.messages, [user.message, done.message]);
    assert.deepEqual(stored.conversation, done.conversation);

    const upstream = lastChatBody(h.local);
    assert.equal(upstream.model, 'mock-small');
    assert.equal(upstream.stream, true);
    assert.deepEqual(upstream.stream_options, { include_usage: true });
    assert.deepEqual(upstream.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: '  Hello   there, model!\nSecond line' },
    ]);
    assert.equal(upstream.max_tokens, 64, 'max_tokens set by the gateway policy');

    // The next send carries the exchange so far and keeps the conversation's model and title.
    const second = await send(h, 'alice', conversation.id, { content: 'And again?' });
    const secondDone = second.at(-1);
    assert.ok(secondDone?.type === 'done');
    assert.equal(secondDone.conversation.title, 'Hello there, model!');
    assert.equal(secondDone.message.model, 'mock-small');
    assert.deepEqual(lastChatBody(h.local).messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: '  Hello   there, model!\nSecond line' },
      { role: 'assistant', content: 'Hello from mock-small' },
      { role: 'user', content: 'And again?' },
    ]);
  });

  test('a long first message makes a title cut at a word boundary; a chosen title stays', async () => {
    const untitled = await create(h, 'alice');
    const long = 'Please explain how the tides work and why there are two of them every single day';
    const events = await send(h, 'alice', untitled.id, { content: long, model: 'mock-small' });
    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(
      done.conversation.title,
      'Please explain how the tides work and why there are two of…',
    );

    const titled = await create(h, 'alice', { title: 'Mine' });
    const kept = (await send(h, 'alice', titled.id, { content: 'hi', model: 'mock-small' })).at(-1);
    assert.ok(kept?.type === 'done');
    assert.equal(kept.conversation.title, 'Mine');
  });

  test('a JSON answer to the streaming request is relayed as one delta', async () => {
    const conversation = await create(h, 'alice');
    const events = await send(h, 'alice', conversation.id, { content: 'hi', model: 'whole' });
    assert.deepEqual(
      events.map((e) => (e.type === 'delta' ? e.text : e.type)),
      ['user', 'assistant', 'Whole answer', 'done'],
    );
    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(done.message.prompt_tokens, 3);
    assert.equal(done.message.completion_tokens, 2);
  });

  test('an upstream failing mid-stream ends with an error event and a stored error', async () => {
    const conversation = await create(h, 'alice');
    const events = await send(h, 'alice', conversation.id, { content: 'hi', model: 'broken' });
    assert.deepEqual(
      events.map((e) => e.type),
      ['user', 'assistant', 'delta', 'error'],
    );
    const failure = events.at(-1);
    assert.ok(failure?.type === 'error');
    assert.ok(failure.request_id.length > 0, 'error events carry the request id');
    assert.deepEqual(
      { ...failure, request_id: undefined },
      {
        type: 'error',
        message: 'model crashed',
        code: 'upstream_error',
        request_id: undefined,
      },
    );
    const { messages } = await read(h, 'alice', conversation.id);
    assert.equal(messages[1]?.status, 'error');
    assert.equal(messages[1]?.content, 'Half an');
    assert.equal(messages[1]?.error, 'model crashed');

    // A failed answer is left out of what the model is shown next.
    await send(h, 'alice', conversation.id, { content: 'try again', model: 'mock-small' });
    assert.deepEqual(lastChatBody(h.local).messages, [
      { role: 'user', content: 'hi' },
      { role: 'user', content: 'try again' },
    ]);
  });

  test('regenerate replaces the last answer and streams a new one, without a user event', async () => {
    const conversation = await create(h, 'alice');
    const first = await send(h, 'alice', conversation.id, {
      content: 'Pick one',
      model: 'mock-small',
    });
    const firstAnswer = first.at(-1);
    assert.ok(firstAnswer?.type === 'done');

    const response = await post(h, `/conversations/${conversation.id}/regenerate`, 'alice', {
      model: 'mock-large',
    });
    assert.equal(response.status, 200);
    const events = await readEvents(response);
    assert.deepEqual(
      events.map((e) => e.type),
      ['assistant', 'delta', 'delta', 'delta', 'delta', 'delta', 'done'],
    );
    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(done.message.content, 'Hello from mock-large');
    assert.notEqual(done.message.id, firstAnswer.message.id);
    assert.equal(done.conversation.model, 'mock-large');
    assert.deepEqual(lastChatBody(h.local).messages, [{ role: 'user', content: 'Pick one' }]);

    const { messages } = await read(h, 'alice', conversation.id);
    assert.deepEqual(
      messages.map((m) => [m.role, m.content]),
      [
        ['user', 'Pick one'],
        ['assistant', 'Hello from mock-large'],
      ],
    );

    // Without a model named, the conversation's model answers.
    const again = await readEvents(
      await post(h, `/conversations/${conversation.id}/regenerate`, 'alice', {}),
    );
    const againDone = again.at(-1);
    assert.ok(againDone?.type === 'done');
    assert.equal(againDone.message.model, 'mock-large');
  });

  test('regenerate with no user message is a 400', async () => {
    const conversation = await create(h, 'alice', { model: 'mock-small' });
    const response = await post(h, `/conversations/${conversation.id}/regenerate`, 'alice', {});
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'nothing_to_regenerate');
  });

  test('a send with no model anywhere is a 400 and stores nothing', async () => {
    const conversation = await create(h, 'alice');
    const before = await counts(h.store);
    const response = await call(h, 'POST', `/conversations/${conversation.id}/messages`, 'alice', {
      content: 'hi',
    });
    assert.equal(response.status, 400);
    assert.equal(response.json<{ error: { code: string } }>().error.code, 'model_required');
    assert.deepEqual(await counts(h.store), before);
  });

  test('an unknown model is a 404 before streaming, and nothing is stored', async () => {
    const conversation = await create(h, 'alice');
    const before = await counts(h.store);
    const response = await call(h, 'POST', `/conversations/${conversation.id}/messages`, 'alice', {
      content: 'hi',
      model: 'no-such-model',
    });
    assert.equal(response.status, 404);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    const body = response.json<{ error: { code: string; type: string }; request_id: string }>();
    assert.equal(body.error.code, 'model_not_found');
    assert.ok(body.request_id);
    assert.deepEqual(await counts(h.store), before);
    assert.equal((await read(h, 'alice', conversation.id)).conversation.title, 'New chat');
  });

  test('stop: a client gone mid-answer aborts the upstream and keeps the partial text', async () => {
    const conversation = await create(h, 'alice');
    const abortedBefore = h.local.abortedStreams;
    const controller = new AbortController();
    const response = await post(
      h,
      `/conversations/${conversation.id}/messages`,
      'alice',
      { content: 'count forever', model: 'endless-stream' },
      controller.signal,
    );
    const events = await readEvents(
      response,
      (seen) => seen.filter((e) => e.type === 'delta').length >= 3,
    );
    controller.abort();
    const received = events.flatMap((e) => (e.type === 'delta' ? [e.text] : [])).join('');
    const assistant = events[1];
    assert.ok(assistant?.type === 'assistant');

    const stored = await until(async () => {
      const row = await h.store.db
        .selectFrom('chat_message')
        .selectAll()
        .where('id', '=', assistant.message.id)
        .executeTakeFirstOrThrow();
      return row.status === 'streaming' ? undefined : row;
    });
    assert.equal(stored.status, 'stopped');
    assert.equal(stored.error, null);
    assert.match(stored.content, /^(tick )+$/);
    assert.ok(stored.content.startsWith(received), 'what the client saw was kept');
    await until(() => (h.local.abortedStreams > abortedBefore ? true : undefined));

    // A stopped answer is part of what the model is shown next.
    await send(h, 'alice', conversation.id, { content: 'go on', model: 'mock-small' });
    assert.deepEqual(lastChatBody(h.local).messages.at(-2), {
      role: 'assistant',
      content: stored.content,
    });
  });

  test('one answer at a time per conversation: a second send meanwhile is a 409', async () => {
    const conversation = await create(h, 'alice');
    const controller = new AbortController();
    const streaming = await post(
      h,
      `/conversations/${conversation.id}/messages`,
      'alice',
      { content: 'long', model: 'endless-stream' },
      controller.signal,
    );
    // Still reading: the answer goes on until the abort below.
    await readEvents(streaming, (seen) => seen.some((e) => e.type === 'delta'), true);
    const second = await call(h, 'POST', `/conversations/${conversation.id}/messages`, 'alice', {
      content: 'meanwhile',
      model: 'mock-small',
    });
    assert.equal(second.status, 409);
    assert.equal(second.json<{ error: { code: string } }>().error.code, 'conversation_busy');
    const regenerate = await call(
      h,
      'POST',
      `/conversations/${conversation.id}/regenerate`,
      'alice',
      {},
    );
    assert.equal(regenerate.status, 409);
    controller.abort();
    const { messages } = await until(async () => {
      const state = await read(h, 'alice', conversation.id);
      return state.messages.some((m) => m.status === 'streaming') ? undefined : state;
    });
    assert.equal(messages.length, 2);
    // Free again once the answer is stored.
    const after = await send(h, 'alice', conversation.id, { content: 'now', model: 'mock-small' });
    assert.equal(after.at(-1)?.type, 'done');
  });

  test('a user has at most maxStreamsPerUser answers streaming at once (8 here): the next is a 429', async () => {
    const controllers: AbortController[] = [];
    try {
      for (let i = 0; i < 8; i += 1) {
        const conversation = await create(h, 'alice');
        const controller = new AbortController();
        controllers.push(controller);
        const streaming = await post(
          h,
          `/conversations/${conversation.id}/messages`,
          'alice',
          { content: `long ${i}`, model: 'endless-stream' },
          controller.signal,
        );
        await readEvents(streaming, (seen) => seen.some((e) => e.type === 'delta'), true);
      }
      const ninth = await create(h, 'alice');
      const refused = await call(h, 'POST', `/conversations/${ninth.id}/messages`, 'alice', {
        content: 'one more',
        model: 'mock-small',
      });
      assert.equal(refused.status, 429);
      assert.equal(refused.json<{ error: { code: string } }>().error.code, 'too_many_streams');
      assert.deepEqual((await read(h, 'alice', ninth.id)).messages, []);
      // Another user is not held back by alice's answers.
      const forBob = await create(h, 'bob');
      const answered = await send(h, 'bob', forBob.id, { content: 'hi', model: 'mock-small' });
      assert.equal(answered.at(-1)?.type, 'done');
    } finally {
      for (const controller of controllers) controller.abort();
    }
    // Once they are stopped, alice may start answers again.
    const again = await create(h, 'alice');
    const answered = await until(async () => {
      const response = await call(h, 'POST', `/conversations/${again.id}/messages`, 'alice', {
        content: 'now',
        model: 'mock-small',
      });
      return response.status === 429 ? undefined : response;
    });
    assert.equal(answered.status, 200);
  });

  test('the personal upstream key replaces the shared one, per user', async () => {
    const forAlice = await create(h, 'alice');
    await send(h, 'alice', forAlice.id, { content: 'hi', model: 'keyed-model' });
    assert.equal(chatRequests(h.keyed).at(-1)?.headers.authorization, `Bearer ${PERSONAL_KEY}`);

    const forBob = await create(h, 'bob');
    await send(h, 'bob', forBob.id, { content: 'hi', model: 'keyed-model' });
    assert.equal(chatRequests(h.keyed).at(-1)?.headers.authorization, `Bearer ${SHARED_KEY}`);

    // An upstream without a key of its own, and no personal key for it: no Authorization.
    await send(h, 'alice', forAlice.id, { content: 'hi', model: 'mock-small' });
    assert.equal(chatRequests(h.local).at(-1)?.headers.authorization, undefined);
  });

  test('usage sums the stored tokens and messages of the user', async () => {
    const fresh = await startHarness();
    try {
      const before = await call(fresh, 'GET', '/usage', 'alice');
      assert.deepEqual(before.json(), { prompt_tokens: 0, completion_tokens: 0, messages: 0 });
      const conversation = await create(fresh, 'alice');
      await send(fresh, 'alice', conversation.id, { content: 'one', model: 'mock-small' });
      await send(fresh, 'alice', conversation.id, { content: 'two', model: 'whole' });
      const usage = await call(fresh, 'GET', '/usage', 'alice');
      assert.deepEqual(usage.json(), {
        prompt_tokens: 8 + 3,
        completion_tokens: 5 + 2,
        messages: 4,
      });
      assert.deepEqual((await call(fresh, 'GET', '/usage', 'bob')).json(), {
        prompt_tokens: 0,
        completion_tokens: 0,
        messages: 0,
      });
    } finally {
      await fresh.close();
    }
  });

  test('export as Markdown and JSON, as a download with a safe filename', async () => {
    const conversation = await create(h, 'alice', {
      title: 'Export me',
      system_prompt: 'Talk like a pirate.',
    });
    await send(h, 'alice', conversation.id, { content: 'Ahoy?', model: 'mock-small' });

    const markdown = await call(
      h,
      'GET',
      `/conversations/${conversation.id}/export?format=markdown`,
      'alice',
    );
    assert.equal(markdown.status, 200);
    assert.equal(markdown.headers['content-disposition'], 'attachment; filename="Export-me.md"');
    assert.match(String(markdown.headers['content-type']), /^text\/markdown/);
    assert.equal(
      markdown.text,
      [
        '# Export me',
        '',
        '**System prompt**',
        '',
        '> Talk like a pirate.',
        '',
        '## User',
        '',
        'Ahoy?',
        '',
        '## Assistant (mock-small)',
        '',
        'Hello from mock-small',
        '',
      ].join('\n'),
    );

    const json = await call(
      h,
      'GET',
      `/conversations/${conversation.id}/export?format=json`,
      'alice',
    );
    assert.equal(json.status, 200);
    assert.equal(json.headers['content-disposition'], 'attachment; filename="Export-me.json"');
    assert.deepEqual(json.json(), await read(h, 'alice', conversation.id));

    const bad = await call(
      h,
      'GET',
      `/conversations/${conversation.id}/export?format=pdf`,
      'alice',
    );
    assert.equal(bad.status, 400);
  });

  test('a hostile title gives a safe filename and no injected header', async () => {
    const conversation = await create(h, 'alice', { title: '../../etc/passwd"\r\nX: y' });
    const response = await call(
      h,
      'GET',
      `/conversations/${conversation.id}/export?format=markdown`,
      'alice',
    );
    assert.equal(response.status, 200);
    assert.equal(
      response.headers['content-disposition'],
      'attachment; filename="etc-passwd-X-y.md"',
    );
    assert.equal(response.headers.x, undefined);
    assert.ok(response.text.startsWith('# ../../etc/passwd" X: y\n'));
  });

  test('search matches titles and message contents; % and _ are literal', async () => {
    const percent = await create(h, 'bob', { title: 'Am I 100% sure' });
    const underscore = await create(h, 'bob', { title: 'snake_case names' });
    await create(h, 'bob', { title: 'snakeXcase and 100 percent' });
    const withMessage = await create(h, 'bob', { title: 'Untitled thing' });
    await send(h, 'bob', withMessage.id, { content: 'where is the Needle?', model: 'mock-small' });

    async function search(q: string) {
      const response = await call(h, 'GET', `/conversations?q=${encodeURIComponent(q)}`, 'bob');
      assert.equal(response.status, 200, response.text);
      return response.json<{ conversations: Conversation[] }>().conversations.map((c) => c.id);
    }
    assert.deepEqual(await search('100%'), [percent.id]);
    assert.deepEqual(await search('e_c'), [underscore.id]);
    assert.deepEqual(await search('%'), [percent.id]);
    assert.deepEqual(await search('_'), [underscore.id]);
    assert.deepEqual(await search('needle'), [withMessage.id], 'message contents, any case');
    assert.deepEqual(await search("' or 1=1 --"), []);
    assert.deepEqual(await search('\\'), []);

    const long = await call(h, 'GET', `/conversations?q=${'x'.repeat(201)}`, 'bob');
    assert.equal(long.status, 400);
    const twice = await call(h, 'GET', '/conversations?q=a&q=b', 'bob');
    assert.equal(twice.status, 400);
  });

  test('without a signed-in user every route is a 401', async () => {
    const id = (await create(h, 'alice')).id;
    const routes: Array<[Method, string, unknown?]> = [
      ['GET', '/models'],
      ['GET', '/usage'],
      ['GET', '/conversations'],
      ['POST', '/conversations', {}],
      ['GET', `/conversations/${id}`],
      ['PATCH', `/conversations/${id}`, { title: 'x' }],
      ['DELETE', `/conversations/${id}`],
      ['GET', `/conversations/${id}/export?format=json`],
      ['POST', `/conversations/${id}/messages`, { content: 'hi', model: 'mock-small' }],
      ['POST', `/conversations/${id}/regenerate`, {}],
    ];
    for (const [method, path, body] of routes) {
      const response = await call(h, method, path, null, body);
      assert.equal(response.status, 401, `${method} ${path}`);
      assert.equal(response.json<{ error: { code: string } }>().error.code, 'not_signed_in');
    }
    assert.equal((await read(h, 'alice', id)).conversation.title, 'New chat');
  });

  test('malformed bodies are 400 and store nothing', async () => {
    const conversation = await create(h, 'alice', { model: 'mock-small' });
    const before = await counts(h.store);
    const cases: Array<[Method, string, unknown]> = [
      ['POST', '/conversations', { title: 5 }],
      ['POST', '/conversations', { title: '' }],
      ['POST', '/conversations', { title: 'x'.repeat(201) }],
      ['POST', '/conversations', { system_prompt: 'x'.repeat(20_001) }],
      ['POST', '/conversations', { model: ['a'] }],
      ['POST', '/conversations', { user_id: 'someone-else' }],
      ['POST', '/conversations', []],
      ['PATCH', `/conversations/${conversation.id}`, {}],
      ['PATCH', `/conversations/${conversation.id}`, { title: '' }],
      ['PATCH', `/conversations/${conversation.id}`, { title: '   ' }],
      ['PATCH', `/conversations/${conversation.id}`, { user_id: 'x' }],
      ['POST', `/conversations/${conversation.id}/messages`, {}],
      ['POST', `/conversations/${conversation.id}/messages`, { content: '' }],
      ['POST', `/conversations/${conversation.id}/messages`, { content: ' \n ' }],
      ['POST', `/conversations/${conversation.id}/messages`, { content: 5 }],
      ['POST', `/conversations/${conversation.id}/messages`, { content: 'hi', role: 'system' }],
      ['POST', `/conversations/${conversation.id}/messages`, { content: 'x'.repeat(100_001) }],
      ['POST', `/conversations/${conversation.id}/messages`, { content: 'hi', model: 7 }],
      ['POST', `/conversations/${conversation.id}/regenerate`, { stream: false }],
    ];
    for (const [method, path, body] of cases) {
      const response = await call(h, method, path, 'alice', body);
      assert.equal(response.status, 400, `${method} ${path} ${JSON.stringify(body).slice(0, 60)}`);
      const error = response.json<{ error: { code: string; type: string } }>().error;
      assert.equal(error.code, 'invalid_request');
      assert.equal(error.type, 'invalid_request_error');
    }
    const broken = await sendRequest(`${h.url}/api/conversations`, {
      method: 'POST',
      body: '{"title":',
      headers: { 'x-test-user': 'alice' },
    });
    assert.equal(broken.status, 400);
    assert.deepEqual(await counts(h.store), before);
    assert.deepEqual((await read(h, 'alice', conversation.id)).conversation, conversation);

    // The longest message allowed is taken.
    const longest = await send(h, 'alice', conversation.id, { content: 'y'.repeat(100_000) });
    assert.equal(longest.at(-1)?.type, 'done');
  });

  test('malformed ids are 404, not 500', async () => {
    for (const id of ['not-a-uuid', '1', `${randomUUID()}x`, '%27%20or%201%3D1', randomUUID()]) {
      for (const [method, path, body] of [
        ['GET', `/conversations/${id}`],
        ['PATCH', `/conversations/${id}`, { title: 'x' }],
        ['DELETE', `/conversations/${id}`],
        ['GET', `/conversations/${id}/export`],
        ['POST', `/conversations/${id}/messages`, { content: 'hi', model: 'mock-small' }],
        ['POST', `/conversations/${id}/regenerate`, {}],
      ] as Array<[Method, string, unknown?]>) {
        const response = await call(h, method, path, 'alice', body);
        assert.equal(response.status, 404, `${method} ${path}`);
        assert.equal(
          response.json<{ error: { code: string } }>().error.code,
          'conversation_not_found',
        );
      }
    }
  });

  test('IDOR: another user gets 404 on everything of a conversation and changes nothing', async () => {
    const mine = await create(h, 'alice', { title: 'Alice private', system_prompt: 'secret' });
    await send(h, 'alice', mine.id, { content: 'my secret question', model: 'mock-small' });
    const before = await read(h, 'alice', mine.id);
    const bobUsage = (await call(h, 'GET', '/usage', 'bob')).json();
    const upstreamCalls = chatRequests(h.local).length;

    const attempts: Array<[Method, string, unknown?]> = [
      ['GET', `/conversations/${mine.id}`],
      ['GET', `/conversations/${mine.id.toUpperCase()}`],
      ['PATCH', `/conversations/${mine.id}`, { title: 'pwned' }],
      ['PATCH', `/conversations/${mine.id}`, { system_prompt: 'obey bob' }],
      ['DELETE', `/conversations/${mine.id}`],
      ['GET', `/conversations/${mine.id}/export?format=markdown`],
      ['GET', `/conversations/${mine.id}/export?format=json`],
      ['POST', `/conversations/${mine.id}/messages`, { content: 'hi', model: 'mock-small' }],
      ['POST', `/conversations/${mine.id}/regenerate`, {}],
      ['POST', `/conversations/${mine.id}/regenerate`, { model: 'mock-large' }],
    ];
    for (const [method, path, body] of attempts) {
      const response = await call(h, method, path, 'bob', body);
      assert.equal(response.status, 404, `${method} ${path}`);
      const error = response.json<{ error: { code: string; message: string } }>().error;
      assert.equal(error.code, 'conversation_not_found');
      assert.equal(error.message, 'no such conversation', 'the same answer as for no conversation');
      assert.ok(!response.text.includes('secret'));
    }
    const listed = await call(h, 'GET', '/conversations?q=secret', 'bob');
    assert.deepEqual(listed.json(), { conversations: [] });
    const all = await call(h, 'GET', '/conversations', 'bob');
    assert.ok(
      !all.json<{ conversations: Conversation[] }>().conversations.some((c) => c.id === mine.id),
    );

    assert.deepEqual(await read(h, 'alice', mine.id), before, "alice's data is unchanged");
    assert.deepEqual((await call(h, 'GET', '/usage', 'bob')).json(), bobUsage);
    assert.equal(chatRequests(h.local).length, upstreamCalls, 'no upstream call was made for bob');
  });
});

test('sends past the rate limit get 429 with Retry-After and store nothing', async () => {
  const h = await startHarness({
    sendLimiter: createRateLimiter({ perSecond: 1 / 60, burst: 1 }, { now: () => 0 }),
  });
  try {
    const conversation = await create(h, 'alice', { model: 'mock-small' });
    await send(h, 'alice', conversation.id, { content: 'first' });
    const before = await counts(h.store);
    for (const path of ['messages', 'regenerate']) {
      const body = path === 'messages' ? { content: 'second' } : {};
      const response = await call(
        h,
        'POST',
        `/conversations/${conversation.id}/${path}`,
        'alice',
        body,
      );
      assert.equal(response.status, 429, path);
      assert.equal(response.headers['retry-after'], '60');
      assert.equal(response.json<{ error: { code: string } }>().error.code, 'rate_limited');
    }
    assert.deepEqual(await counts(h.store), before);
    // Reading is not limited by sends.
    assert.equal((await call(h, 'GET', `/conversations/${conversation.id}`, 'alice')).status, 200);
  } finally {
    await h.close();
  }
});

test('a personal key the upstream refuses is a 502 naming it, with nothing stored', async () => {
  const h = await startHarness({ keyedRequires: SHARED_KEY });
  try {
    const conversation = await create(h, 'alice', { model: 'keyed-model' });
    const before = await counts(h.store);
    const refused = await call(h, 'POST', `/conversations/${conversation.id}/messages`, 'alice', {
      content: 'hi',
    });
    assert.equal(refused.status, 502);
    const error = refused.json<{ error: { code: string; message: string } }>().error;
    assert.equal(error.code, 'upstream_auth_failed');
    assert.match(error.message, /personal API key/);
    assert.ok(!refused.text.includes(PERSONAL_KEY) && !refused.text.includes(SHARED_KEY));
    assert.deepEqual(await counts(h.store), before);

    const forBob = await create(h, 'bob', { model: 'keyed-model' });
    assert.equal((await send(h, 'bob', forBob.id, { content: 'hi' })).at(-1)?.type, 'done');
  } finally {
    await h.close();
  }
});

test('an upstream that is down is a 502 before streaming, and nothing is stored', async () => {
  const h = await startHarness();
  try {
    const conversation = await create(h, 'alice', { model: 'mock-small' });
    await h.local.close();
    const before = await counts(h.store);
    const response = await call(h, 'POST', `/conversations/${conversation.id}/messages`, 'alice', {
      content: 'anyone there?',
    });
    assert.equal(response.status, 502);
    assert.equal(response.json<{ error: { code: string } }>().error.code, 'upstream_unreachable');
    assert.deepEqual(await counts(h.store), before);
  } finally {
    await h.close();
  }
});

test('a server shutting down mid-answer stores it as stopped, never streaming', async () => {
  const h = await startHarness();
  let closed = false;
  try {
    const conversation = await create(h, 'alice');
    const response = await post(h, `/conversations/${conversation.id}/messages`, 'alice', {
      content: 'long',
      model: 'endless-stream',
    });
    const events = await readEvents(response, (seen) => seen.some((e) => e.type === 'delta'), true);
    const closing = h.app.close();
    // What the serve command does when its grace period is over.
    h.app.server.closeAllConnections();
    await closing;
    closed = true;
    const assistant = events[1];
    assert.ok(assistant?.type === 'assistant');
    const row = await h.store.db
      .selectFrom('chat_message')
      .selectAll()
      .where('id', '=', assistant.message.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.status, 'stopped');
    assert.match(row.content, /^(tick )+$/);
  } finally {
    if (closed) {
      await h.registry.close();
      await h.local.close();
      await h.keyed.close();
      await h.store.close();
    } else {
      await h.close();
    }
  }
});

test('answers a crash left streaming are marked failed at start', async () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-chat-sweep-'));
  const store = await openStore(home);
  try {
    const userId = randomUUID();
    await store.db
      .insertInto('user')
      .values({
        id: userId,
        username: 'carol',
        role: 'user',
        password_hash: 'not-used',
        totp_secret_enc: null,
        totp_enabled_at: null,
        totp_last_step: null,
        disabled_at: null,
        created_at: isoNow(),
        last_login_at: null,
      })
      .execute();
    const conversations = createConversations(store);
    const conversation = await conversations.create(userId, {});
    const started = await conversations.start(
      userId,
      conversation.id,
      { kind: 'send', content: 'hello', model: 'm' },
      'hello',
    );
    assert.equal(started?.assistant.status, 'streaming');
    assert.equal(await conversations.sweepInterrupted(), 1);
    const messages = await conversations.messages(userId, conversation.id);
    assert.deepEqual(
      messages.map((m) => m.status),
      ['complete', 'error'],
    );
    assert.match(messages[1]?.error ?? '', /server stopped/);
    assert.equal(await conversations.sweepInterrupted(), 0);
  } finally {
    await store.close();
  }
});

describe('chat with the user’s MCP tools', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ mcp: true });
  });
  after(() => h.close());

  type ToolBody = UpstreamBody & {
    tools?: Array<{
      type: string;
      function: { name: string; description?: string; parameters: Record<string, unknown> };
    }>;
    messages: Array<Record<string, unknown>>;
  };

  function bodiesOf(model: string): ToolBody[] {
    return chatRequests(h.local)
      .map((r) => r.body as ToolBody)
      .filter((b) => b.model === model);
  }

  const mcp = () => h.mcp as McpFixture;

  /** Runs `fn` with alice's MCP servers swapped, then puts them back. */
  async function withServers<T>(servers: () => McpServerEntry[], fn: () => Promise<T>) {
    const saved = h.serversFor;
    h.serversFor = (userId) => (userId === h.alice.id ? servers() : saved(userId));
    try {
      return await fn();
    } finally {
      h.serversFor = saved;
    }
  }

  test('tools are offered, called with the token, fed back, and the answer streamed and stored', async () => {
    const conversation = await create(h, 'alice');
    const events = await send(h, 'alice', conversation.id, {
      content: 'What is 2 + 3?',
      model: 'mock-tools',
    });
    const summary = '> Used tool `My_Calc__add`';
    assert.deepEqual(events.slice(2, -1), [
      { type: 'delta', text: 'Let me add.' },
      { type: 'tool_call', id: 'call_a', name: 'My_Calc__add', arguments: '{"a":2,"b":3}' },
      { type: 'tool_result', id: 'call_a', name: 'My_Calc__add', ok: true, content: '5' },
      { type: 'delta', text: `\n\n${summary}\n\n` },
      { type: 'delta', text: 'The sum is 5.' },
    ]);
    assert.deepEqual(
      events.map((e) => e.type),
      ['user', 'assistant', 'delta', 'tool_call', 'tool_result', 'delta', 'delta', 'done'],
    );
    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(done.message.status, 'complete');
    assert.equal(done.message.content, `Let me add.\n\n${summary}\n\nThe sum is 5.`);
    assert.equal(done.message.prompt_tokens, 10 + 20, 'usage of both rounds');
    assert.equal(done.message.completion_tokens, 4 + 3);
    assert.deepEqual((await read(h, 'alice', conversation.id)).messages.at(-1), done.message);

    // The MCP server got the call, with alice's token and the model's arguments.
    assert.deepEqual(mcp().calls.at(-1), {
      name: 'add',
      arguments: { a: 2, b: 3 },
      authorization: `Bearer ${MCP_TOKEN}`,
    });

    const [first, second] = bodiesOf('mock-tools');
    assert.ok(first && second);
    assert.deepEqual(
      first.tools?.map((t) => [t.type, t.function.name]),
      [
        ['function', 'My_Calc__add'],
        ['function', 'My_Calc__fail'],
        ['function', 'My_Calc__wait'],
        ['function', 'My_Calc__big'],
        ['function', 'My_Calc__read_file'],
      ],
    );
    const add = first.tools?.[0]?.function;
    assert.equal(add?.description, 'Adds two numbers.');
    assert.deepEqual(add?.parameters.properties, { a: { type: 'number' }, b: { type: 'number' } });
    assert.deepEqual(add?.parameters.required, ['a', 'b']);
    assert.deepEqual(second.tools, first.tools, 'offered again in the next round');
    assert.deepEqual(first.messages, [{ role: 'user', content: 'What is 2 + 3?' }]);
    assert.deepEqual(second.messages, [
      { role: 'user', content: 'What is 2 + 3?' },
      {
        role: 'assistant',
        content: 'Let me add.',
        tool_calls: [
          {
            id: 'call_a',
            type: 'function',
            function: { name: 'My_Calc__add', arguments: '{"a":2,"b":3}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_a', content: '5' },
    ]);
    assert.equal(second.max_tokens, 512, 'the policy applies to every round');

    // Regenerate goes through the same loop.
    const again = await readEvents(
      await post(h, `/conversations/${conversation.id}/regenerate`, 'alice', {}),
    );
    assert.deepEqual(
      again.map((e) => e.type),
      ['assistant', 'delta', 'tool_call', 'tool_result', 'delta', 'delta', 'done'],
    );
    const regenerated = again.at(-1);
    assert.ok(regenerated?.type === 'done');
    assert.equal(regenerated.message.content, done.message.content);
  });

  test('a user without MCP servers sends exactly the request as before', async () => {
    const methods = mcp().methods.length;
    const conversation = await create(h, 'bob');
    const events = await send(h, 'bob', conversation.id, { content: 'hi', model: 'mock-small' });
    assert.deepEqual(
      events.map((e) => e.type),
      ['user', 'assistant', 'delta', 'delta', 'delta', 'delta', 'delta', 'done'],
    );
    const body = lastChatBody(h.local);
    assert.deepEqual(Object.keys(body), [
      'model',
      'messages',
      'stream',
      'stream_options',
      'max_tokens',
    ]);
    assert.deepEqual(body, {
      model: 'mock-small',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 512,
    });
    assert.equal(mcp().methods.length, methods, 'no MCP server was contacted');
  });

  test('a wrong token skips the server with a notice, and the chat still answers', async () => {
    const refused = mcp().refused;
    const wrong = 'wrong-token-for-my-calc';
    const events = await withServers(
      () => [{ id: 'calc-wrong', name: 'My Calc', url: mcp().url, token: wrong }],
      async () => {
        const conversation = await create(h, 'alice');
        return send(h, 'alice', conversation.id, { content: 'hi', model: 'mock-small' });
      },
    );
    assert.deepEqual(events[2], {
      type: 'notice',
      message:
        'MCP server "My Calc" skipped: it refused the token (HTTP 401); check it in Settings',
    });
    assert.equal(events.at(-1)?.type, 'done');
    assert.ok(!JSON.stringify(events).includes(wrong));
    assert.ok(mcp().refused > refused);
    assert.equal(lastChatBody(h.local).model, 'mock-small');
    assert.ok(!('tools' in lastChatBody(h.local)), 'no tools to offer');
  });

  test('a link-local MCP URL is refused by the SSRF guard; the chat still answers', async () => {
    const events = await withServers(
      () => [{ id: 'meta', name: 'Metadata', url: 'http://169.254.169.254/latest/mcp' }],
      async () => {
        const conversation = await create(h, 'alice');
        return send(h, 'alice', conversation.id, { content: 'hi', model: 'mock-small' });
      },
    );
    assert.deepEqual(events[2], {
      type: 'notice',
      message:
        'MCP server "Metadata" skipped: its address is not allowed (169.254.169.254 is a cloud metadata address)',
    });
    assert.equal(events.at(-1)?.type, 'done');
    assert.ok(!('tools' in lastChatBody(h.local)));
  });

  test('servers that cannot be read are a notice, not a failure', async () => {
    const events = await withServers(
      () => {
        throw new Error('the stored token could not be opened');
      },
      async () => {
        const conversation = await create(h, 'alice');
        return send(h, 'alice', conversation.id, { content: 'hi', model: 'mock-small' });
      },
    );
    assert.deepEqual(events[2], {
      type: 'notice',
      message: 'your MCP servers could not be read; this answer has no tools',
    });
    assert.equal(events.at(-1)?.type, 'done');
  });

  test('a tool that fails is a result with ok false, and the chat goes on', async () => {
    const conversation = await create(h, 'alice');
    const events = await send(h, 'alice', conversation.id, {
      content: 'break it',
      model: 'mock-tools-fail',
    });
    assert.deepEqual(events.slice(2, -1), [
      { type: 'tool_call', id: 'call_f', name: 'My_Calc__fail', arguments: '' },
      {
        type: 'tool_result',
        id: 'call_f',
        name: 'My_Calc__fail',
        ok: false,
        content: 'the tool broke',
      },
      { type: 'delta', text: '> Used tool `My_Calc__fail` (failed)\n\n' },
      { type: 'delta', text: 'The tool said: the tool broke' },
    ]);
    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(done.message.status, 'complete');
    assert.deepEqual(bodiesOf('mock-tools-fail').at(-1)?.messages.at(-1), {
      role: 'tool',
      tool_call_id: 'call_f',
      content: 'the tool broke',
    });
  });

  test('arguments that are not JSON are an error result for the model, and no call', async () => {
    const calls = mcp().calls.length;
    const conversation = await create(h, 'alice');
    const events = await send(h, 'alice', conversation.id, {
      content: 'add',
      model: 'mock-tools-bad-args',
    });
    const error = JSON.stringify({ error: 'arguments were not valid JSON' });
    assert.deepEqual(events[3], {
      type: 'tool_result',
      id: 'call_j',
      name: 'My_Calc__add',
      ok: false,
      content: error,
    });
    assert.equal(mcp().calls.length, calls, 'the tool was not called');
    assert.deepEqual(bodiesOf('mock-tools-bad-args').at(-1)?.messages.at(-1), {
      role: 'tool',
      tool_call_id: 'call_j',
      content: error,
    });
    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(done.message.content, `> Used tool \`My_Calc__add\` (failed)\n\nOops: ${error}`);
  });

  test('a model that keeps calling tools is cut off after 8 rounds', async () => {
    const calls = mcp().calls.length;
    const requests = bodiesOf('mock-tools-loop').length;
    const conversation = await create(h, 'alice');
    const events = await send(h, 'alice', conversation.id, {
      content: 'loop',
      model: 'mock-tools-loop',
    });
    const types = events.map((e) => e.type);
    assert.equal(types.filter((t) => t === 'tool_call').length, 7);
    assert.equal(types.filter((t) => t === 'tool_result').length, 7);
    const failure = events.at(-1);
    assert.ok(failure?.type === 'error');
    assert.ok(failure.request_id.length > 0, 'error events carry the request id');
    assert.deepEqual(
      { ...failure, request_id: undefined },
      {
        type: 'error',
        message: 'the model was still calling tools after 8 rounds; the answer was cut off',
        code: 'tool_rounds_exceeded',
        request_id: undefined,
      },
    );
    assert.equal(bodiesOf('mock-tools-loop').length - requests, 8, 'eight model requests');
    assert.equal(mcp().calls.length - calls, 7, 'seven rounds of calls ran');
    const last = bodiesOf('mock-tools-loop').at(-1);
    assert.equal(last?.messages.filter((m) => m.role === 'tool').length, 7);

    const stored = (await read(h, 'alice', conversation.id)).messages.at(-1);
    assert.equal(stored?.status, 'error');
    assert.equal(stored?.content, '> Used tool `My_Calc__add`\n\n'.repeat(7));
  });

  test('a model that refuses tools is asked again without them, with a notice', async () => {
    const conversation = await create(h, 'alice');
    const events = await send(h, 'alice', conversation.id, {
      content: 'hi',
      model: 'mock-no-tools',
    });
    assert.deepEqual(events[2], {
      type: 'notice',
      message:
        'the model refused the tools (mock-no-tools does not support tools); it answers without them',
    });
    const done = events.at(-1);
    assert.ok(done?.type === 'done');
    assert.equal(done.message.content, 'Hello from mock-no-tools');
    const [withTools, without] = bodiesOf('mock-no-tools').slice(-2);
    assert.ok(withTools?.tools !== undefined);
    assert.equal(without?.tools, undefined);
  });

  test('stop during a tool call aborts it and keeps the partial answer as stopped', async () => {
    const aborted = mcp().abortedCalls;
    const conversation = await create(h, 'alice');
    const controller = new AbortController();
    const response = await post(
      h,
      `/conversations/${conversation.id}/messages`,
      'alice',
      { content: 'wait for it', model: 'mock-tools-wait' },
      controller.signal,
    );
    const events = await readEvents(
      response,
      (seen) => seen.some((e) => e.type === 'tool_call'),
      true,
    );
    await until(() => (mcp().calls.at(-1)?.name === 'wait' ? true : undefined));
    controller.abort();
    const assistant = events[1];
    assert.ok(assistant?.type === 'assistant');
    const stored = await until(async () => {
      const row = await h.store.db
        .selectFrom('chat_message')
        .selectAll()
        .where('id', '=', assistant.message.id)
        .executeTakeFirstOrThrow();
      return row.status === 'streaming' ? undefined : row;
    });
    assert.equal(stored.status, 'stopped');
    assert.equal(stored.error, null);
    assert.equal(stored.content, 'Waiting.');
    await until(() => (mcp().abortedCalls > aborted ? true : undefined));
    assert.equal(bodiesOf('mock-tools-wait').length, 1, 'the model was not asked again');

    // Free again once the stopped answer is stored.
    const next = await send(h, 'alice', conversation.id, { content: 'ok', model: 'mock-small' });
    assert.equal(next.at(-1)?.type, 'done');
  });
});

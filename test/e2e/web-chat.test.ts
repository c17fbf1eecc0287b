import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ChatMessage, ChatStreamEvent, Conversation } from '../../src/chat/index.js';
import { addUpstream } from '../../src/gateway/index.js';
import { openStore } from '../../src/store/index.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startPalisade, tempHome, type TestPalisade } from '../support/palisade.js';
import {
  assertApiError,
  eventually,
  FAST_SCRYPT_ENV,
  newSignedInUser,
  postStream,
  readEvents,
  sendMessage,
  snapshot,
  withStore,
  type WebClient,
  type WebResponse,
} from '../support/web.js';

/*
 * The chat through the real server: real sign-in, the real gateway routing to real mock
 * upstreams over sockets, answers read as SSE as the web app reads them.
 */

const SECRET_HEX = 'ab'.repeat(32);
const SHARED_KEY = 'sk-shared-upstream-key-of-the-operator';
const PERSONAL_KEYS = [
  'sk-alice-own-key-for-local-0001',
  'sk-alice-own-key-for-keyed-0002',
] as const;
const MAX_TOKENS = 64;
const XSS = `<script>alert("pwned")</script><img src=x onerror="alert(document.cookie)">`;
const XSS_TITLE = `</title><svg onload=alert(1)>${XSS}`;

const XSS_CHUNKS = [
  { choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] },
  { choices: [{ index: 0, delta: { content: XSS.slice(0, 20) } }] },
  { choices: [{ index: 0, delta: { content: XSS.slice(20) } }] },
  { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
];

interface Thread {
  conversation: Conversation;
  messages: ChatMessage[];
}

function deltas(events: ChatStreamEvent[]): string {
  return events.flatMap((e) => (e.type === 'delta' ? [e.text] : [])).join('');
}

function chatRequests(upstream: MockUpstream) {
  return upstream.requests.filter((r) => r.path === '/v1/chat/completions');
}

type UpstreamBody = {
  model: string;
  messages: Array<{ role: string; content: string }>;
  stream: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
};

function lastBody(upstream: MockUpstream): UpstreamBody {
  return chatRequests(upstream).at(-1)?.body as UpstreamBody;
}

async function create(client: WebClient, body: unknown = {}): Promise<Conversation> {
  const response = await client.post('/api/conversations', body);
  assert.equal(response.status, 201, response.text);
  return response.body as Conversation;
}

async function read(client: WebClient, id: string): Promise<Thread> {
  const response = await client.get(`/api/conversations/${id}`);
  assert.equal(response.status, 200, response.text);
  return response.body as Thread;
}

async function list(client: WebClient, query?: string): Promise<Conversation[]> {
  const path = query === undefined ? '/api/conversations' : `/api/conversations?q=${query}`;
  const response = await client.get(path);
  assert.equal(response.status, 200, response.text);
  return (response.body as { conversations: Conversation[] }).conversations;
}

/** What a refused request must leave as it was: the web tables and the upstream's requests. */
async function unchanged(palisade: TestPalisade, upstreams: MockUpstream[]) {
  const tables = await snapshot(palisade);
  for (const table of Object.values(tables)) {
    for (const row of table) delete (row as { last_seen_at?: unknown }).last_seen_at;
  }
  // Health checks (GET /v1/models) may come at any time; only what a send would ask counts.
  return { tables, calls: upstreams.map((u) => chatRequests(u).length) };
}

function assertJsonAnswer(response: WebResponse, what: string): void {
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/, what);
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff', what);
  assert.equal(
    response.headers.get('content-security-policy'),
    "default-src 'none'; frame-ancestors 'none'",
    what,
  );
}

describe('the web chat through real sign-in', () => {
  let palisade: TestPalisade;
  let local: MockUpstream;
  let keyed: MockUpstream;
  let alice: WebClient;
  let bob: WebClient;

  before(async () => {
    local = await startMockUpstream({
      models: ['mock-small', 'mock-large', 'endless-stream', 'xss-model'],
      scripts: { 'xss-model': { chunks: XSS_CHUNKS } },
    });
    // An upstream that wants a key: the operator's shared key is stored with it, sealed, as
    // `palisade upstreams add keyed URL --api-key-stdin` does.
    keyed = await startMockUpstream({ models: ['keyed-model'], apiKey: SHARED_KEY });
    const home = tempHome();
    const store = await openStore(home);
    try {
      await addUpstream(store, Buffer.from(SECRET_HEX, 'hex'), {
        name: 'keyed',
        url: keyed.url,
        apiKey: SHARED_KEY,
      });
    } finally {
      await store.close();
    }
    palisade = await startPalisade({
      home,
      env: {
        ...FAST_SCRYPT_ENV,
        PALISADE_SECRET: SECRET_HEX,
        PALISADE_UPSTREAMS: `local=${local.url}`,
        PALISADE_MAX_TOKENS: String(MAX_TOKENS),
      },
    });
    alice = await newSignedInUser(palisade, 'alice');
    bob = await newSignedInUser(palisade, 'bob');
  });

  after(async () => {
    await palisade.close();
    await local.close();
    await keyed.close();
  });

  test('both upstreams are in service: the keyed one answered its health check with the shared key', async () => {
    const models = await alice.get('/api/models');
    assert.equal(models.status, 200, models.text);
    assert.deepEqual((models.body as { models: unknown[] }).models, [
      { id: 'mock-small', upstream: 'local' },
      { id: 'mock-large', upstream: 'local' },
      { id: 'endless-stream', upstream: 'local' },
      { id: 'xss-model', upstream: 'local' },
      { id: 'keyed-model', upstream: 'keyed' },
    ]);
    assert.equal(keyed.requests.at(-1)?.headers.authorization, `Bearer ${SHARED_KEY}`);
  });

  test('create, list, search, rename, system prompt and delete', async () => {
    const blank = await create(alice);
    assert.equal(blank.title, 'New chat');
    assert.equal(blank.system_prompt, '');
    assert.equal(blank.model, null);
    const named = await create(alice, {
      title: 'Trip to Lisbon',
      model: 'mock-small',
      system_prompt: 'You are terse.',
    });
    assert.deepEqual(
      { title: named.title, model: named.model, system_prompt: named.system_prompt },
      { title: 'Trip to Lisbon', model: 'mock-small', system_prompt: 'You are terse.' },
    );

    // Newest activity first.
    const ids = (await list(alice)).map((c) => c.id);
    assert.ok(ids.indexOf(named.id) < ids.indexOf(blank.id), 'newest first');

    // Search: titles, and message contents once a message is sent.
    assert.deepEqual(
      (await list(alice, 'lisbon')).map((c) => c.id),
      [named.id],
    );
    const events = await sendMessage(alice, blank.id, {
      content: 'pastel de nata recipe',
      model: 'mock-small',
    });
    assert.equal(events.at(-1)?.type, 'done');
    assert.deepEqual(
      (await list(alice, encodeURIComponent('nata recipe'))).map((c) => c.id),
      [blank.id],
    );
    assert.deepEqual(await list(alice, 'no-such-words-anywhere'), []);
    // The first message named the untitled conversation.
    assert.equal((await read(alice, blank.id)).conversation.title, 'pastel de nata recipe');

    // Rename and change the system prompt; the model is shown the new prompt first.
    const renamed = await alice.patch(`/api/conversations/${named.id}`, { title: 'Lisbon, May' });
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal((renamed.body as Conversation).title, 'Lisbon, May');
    const prompted = await alice.patch(`/api/conversations/${named.id}`, {
      system_prompt: 'Answer in Portuguese.',
    });
    assert.equal((prompted.body as Conversation).system_prompt, 'Answer in Portuguese.');
    assert.equal((prompted.body as Conversation).title, 'Lisbon, May');
    await sendMessage(alice, named.id, { content: 'Where to eat?' });
    assert.deepEqual(lastBody(local).messages, [
      { role: 'system', content: 'Answer in Portuguese.' },
      { role: 'user', content: 'Where to eat?' },
    ]);
    assert.equal(lastBody(local).model, 'mock-small', 'the conversation’s model');
    // A chosen title is kept when the first message arrives.
    assert.equal((await read(alice, named.id)).conversation.title, 'Lisbon, May');

    // Delete: gone from reads, lists and the store, messages too.
    assert.equal((await alice.delete(`/api/conversations/${named.id}`)).status, 204);
    assertApiError(
      await alice.get(`/api/conversations/${named.id}`),
      404,
      'conversation_not_found',
    );
    assertApiError(
      await alice.delete(`/api/conversations/${named.id}`),
      404,
      'conversation_not_found',
    );
    assert.ok(!(await list(alice)).some((c) => c.id === named.id));
    const left = await withStore(palisade, (store) =>
      store.sqlite
        .prepare('select count(*) as n from chat_message where conversation_id = ?')
        .get(named.id),
    );
    assert.deepEqual(left, { n: 0 });
  });

  test('a streamed answer: user, assistant, deltas, done, in that order; then stored as sent', async () => {
    const conversation = await create(alice);
    const response = await postStream(alice, `/api/conversations/${conversation.id}/messages`, {
      content: 'Say hello',
      model: 'mock-small',
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.match(response.headers.get('cache-control') ?? '', /no-store|no-cache/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    const events = await readEvents(response);
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 2), ['user', 'assistant']);
    assert.equal(types.at(-1), 'done');
    const middle = types.slice(2, -1);
    assert.ok(middle.length >= 2 && middle.every((t) => t === 'delta'), types.join(' '));
    assert.equal(deltas(events), 'Hello from mock-small');

    const [user, assistant, ...rest] = events;
    const done = rest.at(-1);
    assert.ok(user?.type === 'user' && assistant?.type === 'assistant' && done?.type === 'done');
    assert.equal(user.message.content, 'Say hello');
    assert.equal(assistant.message.status, 'streaming');
    assert.equal(assistant.message.content, '');
    assert.equal(done.message.id, assistant.message.id);
    assert.equal(done.message.status, 'complete');
    assert.equal(done.message.content, 'Hello from mock-small');
    assert.equal(done.message.prompt_tokens, 8);
    assert.equal(done.message.completion_tokens, 5);

    const stored = await read(alice, conversation.id);
    assert.deepEqual(stored.messages, [user.message, done.message]);
    assert.deepEqual(stored.conversation, done.conversation);
    assert.equal(stored.conversation.model, 'mock-small');
    assert.equal(stored.conversation.title, 'Say hello');
  });

  test('max_tokens is clamped to PALISADE_MAX_TOKENS in what the upstream gets', async () => {
    const conversation = await create(alice, { model: 'mock-large' });
    await sendMessage(alice, conversation.id, { content: 'Write a very long essay' });
    const body = lastBody(local);
    assert.equal(body.model, 'mock-large');
    assert.equal(body.stream, true);
    assert.equal(body.max_tokens, MAX_TOKENS);
    assert.equal(body.max_completion_tokens, undefined);
    // The client cannot ask for more: the send body has no such field.
    assertApiError(
      await alice.post(`/api/conversations/${conversation.id}/messages`, {
        content: 'more',
        max_tokens: 100_000,
      }),
      400,
      'invalid_request',
    );
  });

  test('stop: the answer aborted mid-stream is stored as stopped with its partial text', async () => {
    const conversation = await create(alice);
    const abortedBefore = local.abortedStreams;
    const controller = new AbortController();
    const response = await postStream(
      alice,
      `/api/conversations/${conversation.id}/messages`,
      { content: 'count forever', model: 'endless-stream' },
      controller.signal,
    );
    assert.equal(response.status, 200);
    const events = await readEvents(
      response,
      (seen) => seen.filter((e) => e.type === 'delta').length >= 3,
      true,
    );
    controller.abort();
    const received = deltas(events);
    assert.match(received, /^(tick )+$/);

    const stopped = await eventually(async () => {
      const { messages } = await read(alice, conversation.id);
      const last = messages.at(-1);
      return last?.status === 'streaming' ? undefined : last;
    });
    assert.equal(stopped.role, 'assistant');
    assert.equal(stopped.status, 'stopped');
    assert.equal(stopped.error, null);
    assert.match(stopped.content, /^(tick )+$/);
    assert.ok(stopped.content.startsWith(received), 'what the client saw was kept');
    // The upstream saw its stream cut: the server did not read on after the client left.
    await eventually(() => (local.abortedStreams > abortedBefore ? true : undefined));
    assert.equal(local.openStreams, 0);

    // The conversation is free again, and the stopped text is part of the next prompt.
    await sendMessage(alice, conversation.id, { content: 'go on', model: 'mock-small' });
    assert.deepEqual(lastBody(local).messages.slice(-2), [
      { role: 'assistant', content: stopped.content },
      { role: 'user', content: 'go on' },
    ]);
  });

  test('regenerate replaces the last answer with a new one', async () => {
    const conversation = await create(alice);
    await sendMessage(alice, conversation.id, { content: 'Hi', model: 'mock-small' });
    const first = await read(alice, conversation.id);
    const old = first.messages.at(-1) as ChatMessage;
    assert.equal(old.content, 'Hello from mock-small');

    const response = await postStream(alice, `/api/conversations/${conversation.id}/regenerate`, {
      model: 'mock-large',
    });
    assert.equal(response.status, 200);
    const events = await readEvents(response);
    const types = events.map((e) => e.type);
    assert.equal(types[0], 'assistant', 'no user event: the question is the same');
    assert.equal(types.at(-1), 'done');
    assert.ok(types.slice(1, -1).every((t) => t === 'delta'));
    assert.equal(deltas(events), 'Hello from mock-large');
    // The model was asked the same question, without the old answer.
    assert.deepEqual(lastBody(local).messages, [{ role: 'user', content: 'Hi' }]);

    const after = await read(alice, conversation.id);
    assert.equal(after.messages.length, 2);
    assert.deepEqual(after.messages[0], first.messages[0], 'the question stays');
    const replaced = after.messages[1] as ChatMessage;
    assert.notEqual(replaced.id, old.id);
    assert.equal(replaced.content, 'Hello from mock-large');
    assert.equal(replaced.model, 'mock-large');
    assert.equal(replaced.status, 'complete');
    assert.equal(after.conversation.model, 'mock-large');
  });

  test('export as Markdown and JSON downloads, never HTML', async () => {
    const conversation = await create(alice, { title: 'Export me', system_prompt: 'Be brief.' });
    await sendMessage(alice, conversation.id, { content: 'Question?', model: 'mock-small' });
    const thread = await read(alice, conversation.id);

    for (const query of ['', '?format=markdown']) {
      const markdown = await alice.get(`/api/conversations/${conversation.id}/export${query}`);
      assert.equal(markdown.status, 200, markdown.text);
      assert.equal(markdown.headers.get('content-type'), 'text/markdown; charset=utf-8');
      assert.equal(
        markdown.headers.get('content-disposition'),
        'attachment; filename="Export-me.md"',
      );
      assert.equal(markdown.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(markdown.headers.get('cache-control'), 'no-store');
      assert.equal(
        markdown.text,
        [
          '# Export me',
          '**System prompt**',
          '> Be brief.',
          '## User',
          'Question?',
          '## Assistant (mock-small)',
          'Hello from mock-small',
        ].join('\n\n') + '\n',
      );
    }
    const json = await alice.get(`/api/conversations/${conversation.id}/export?format=json`);
    assert.equal(json.status, 200, json.text);
    assert.equal(json.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(json.headers.get('content-disposition'), 'attachment; filename="Export-me.json"');
    assert.equal(json.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(json.body, thread);

    assertApiError(
      await alice.get(`/api/conversations/${conversation.id}/export?format=html`),
      400,
      'invalid_request',
    );
  });

  test('HTML in a title and in model output is stored and answered verbatim, as JSON text', async () => {
    const conversation = await create(alice, { title: XSS_TITLE });
    const response = await postStream(alice, `/api/conversations/${conversation.id}/messages`, {
      content: XSS,
      model: 'xss-model',
    });
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = await readEvents(response);
    assert.equal(deltas(events), XSS, 'the stream carries the text as it came');
    assert.equal(events.at(-1)?.type, 'done');

    // Stored byte for byte: nothing escaped, nothing stripped (the web app sanitizes on display).
    const rows = await withStore(palisade, (store) => ({
      title: store.sqlite
        .prepare('select title from conversation where id = ?')
        .get(conversation.id),
      contents: store.sqlite
        .prepare('select role, content from chat_message where conversation_id = ? order by id')
        .all(conversation.id),
    }));
    assert.deepEqual(rows, {
      title: { title: XSS_TITLE },
      contents: [
        { role: 'user', content: XSS },
        { role: 'assistant', content: XSS },
      ],
    });

    // Every answer that carries it is JSON, never HTML, and holds the text as a JSON string.
    for (const path of [
      `/api/conversations/${conversation.id}`,
      '/api/conversations',
      `/api/conversations?q=${encodeURIComponent('<script>')}`,
    ]) {
      const answer = await alice.get(path);
      assert.equal(answer.status, 200, answer.text);
      assertJsonAnswer(answer, path);
      assert.ok(
        answer.text.includes(JSON.stringify(XSS_TITLE)),
        `${path}: the title as a JSON string`,
      );
    }
    const thread = await read(alice, conversation.id);
    assert.equal(thread.conversation.title, XSS_TITLE);
    assert.deepEqual(
      thread.messages.map((m) => m.content),
      [XSS, XSS],
    );
    const renamed = await alice.patch(`/api/conversations/${conversation.id}`, {
      title: `${XSS_TITLE} (2)`,
    });
    assertJsonAnswer(renamed, 'PATCH');
    assert.equal((renamed.body as Conversation).title, `${XSS_TITLE} (2)`);

    // The downloads: Markdown or JSON with nosniff, a filename made of safe characters only.
    const markdown = await alice.get(
      `/api/conversations/${conversation.id}/export?format=markdown`,
    );
    assert.equal(markdown.headers.get('content-type'), 'text/markdown; charset=utf-8');
    assert.equal(markdown.headers.get('x-content-type-options'), 'nosniff');
    assert.match(
      markdown.headers.get('content-disposition') ?? '',
      /^attachment; filename="[A-Za-z0-9-]+\.md"$/,
    );
    assert.ok(markdown.text.includes(XSS), 'the text as it is, for a Markdown reader to handle');
    const json = await alice.get(`/api/conversations/${conversation.id}/export?format=json`);
    assert.equal(json.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(json.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(
      (json.body as Thread).messages.map((m) => m.content),
      [XSS, XSS],
    );
    for (const answer of [markdown, json]) {
      assert.ok(!/html/i.test(answer.headers.get('content-type') ?? ''));
      assert.match(answer.headers.get('content-disposition') ?? '', /^attachment;/);
    }
  });

  test('a personal upstream key is sent instead of the shared one, for its owner only', async () => {
    const [aliceKey, aliceKeyed] = PERSONAL_KEYS;
    const set = await alice.put('/api/settings/upstream-keys/local', { key: aliceKey });
    assert.equal(set.status, 200, set.text);
    assert.ok(!set.text.includes(aliceKey), 'the key is never answered');

    // An upstream with no key of its own: alice's goes with her requests, none with bob's.
    const hers = await create(alice);
    const answered = await sendMessage(alice, hers.id, { content: 'hi', model: 'mock-small' });
    assert.equal(answered.at(-1)?.type, 'done');
    assert.equal(chatRequests(local).at(-1)?.headers.authorization, `Bearer ${aliceKey}`);
    const his = await create(bob);
    await sendMessage(bob, his.id, { content: 'hi', model: 'mock-small' });
    assert.equal(chatRequests(local).at(-1)?.headers.authorization, undefined);

    // An upstream with the operator's shared key: bob's requests carry it and are answered.
    const bobKeyed = await sendMessage(bob, his.id, { content: 'keyed?', model: 'keyed-model' });
    assert.equal(bobKeyed.at(-1)?.type, 'done', JSON.stringify(bobKeyed.at(-1)));
    assert.equal(chatRequests(keyed).at(-1)?.headers.authorization, `Bearer ${SHARED_KEY}`);

    // Alice's own key for it replaces the shared one: the upstream sees hers, once, and no
    // retry with the shared key follows when it refuses hers.
    assert.equal(
      (await alice.put('/api/settings/upstream-keys/keyed', { key: aliceKeyed })).status,
      200,
    );
    const before = await unchanged(palisade, [local, keyed]);
    const refused = await alice.post(`/api/conversations/${hers.id}/messages`, {
      content: 'keyed?',
      model: 'keyed-model',
    });
    assertApiError(refused, 502, 'upstream_auth_failed');
    assert.match(
      (refused.body as { error: { message: string } }).error.message,
      /your personal API key/,
    );
    assert.ok(!refused.text.includes(aliceKeyed) && !refused.text.includes(SHARED_KEY));
    const sent = chatRequests(keyed).slice(before.calls[1]);
    assert.deepEqual(
      sent.map((r) => r.headers.authorization),
      [`Bearer ${aliceKeyed}`],
      'one request, with her key, and no retry with the shared one',
    );
    const afterRefusal = await unchanged(palisade, [local]);
    assert.deepEqual(afterRefusal.tables, before.tables, 'nothing stored');

    // Without her key, the shared one serves her again.
    assert.equal((await alice.delete('/api/settings/upstream-keys/keyed')).status, 200);
    const shared = await sendMessage(alice, hers.id, { content: 'keyed?', model: 'keyed-model' });
    assert.equal(shared.at(-1)?.type, 'done');
    assert.equal(chatRequests(keyed).at(-1)?.headers.authorization, `Bearer ${SHARED_KEY}`);
    assert.equal((await alice.delete('/api/settings/upstream-keys/local')).status, 200);
  });

  test('usage is counted per user', async () => {
    const carol = await newSignedInUser(palisade, 'carol');
    const dave = await newSignedInUser(palisade, 'dave');
    const zero = { prompt_tokens: 0, completion_tokens: 0, messages: 0 };
    assert.deepEqual((await carol.get('/api/usage')).body, zero);
    const mine = await create(carol);
    await sendMessage(carol, mine.id, { content: 'one', model: 'mock-small' });
    await sendMessage(carol, mine.id, { content: 'two', model: 'mock-small' });
    const theirs = await create(dave);
    await sendMessage(dave, theirs.id, { content: 'one', model: 'mock-small' });
    // The mock reports 8 prompt and 5 completion tokens per answer.
    assert.deepEqual((await carol.get('/api/usage')).body, {
      prompt_tokens: 16,
      completion_tokens: 10,
      messages: 4,
    });
    assert.deepEqual((await dave.get('/api/usage')).body, {
      prompt_tokens: 8,
      completion_tokens: 5,
      messages: 2,
    });
    // Deleting a conversation does not erase what it cost.
    await carol.delete(`/api/conversations/${mine.id}`);
    assert.deepEqual((await carol.get('/api/usage')).body, {
      prompt_tokens: 16,
      completion_tokens: 10,
      messages: 4,
    });
    assert.equal(((await dave.get('/api/usage')).body as { messages: number }).messages, 2);
  });

  test('oversized and malformed sends are refused, and nothing is stored or sent upstream', async () => {
    const conversation = await create(alice, { model: 'mock-small' });
    const path = `/api/conversations/${conversation.id}/messages`;
    const before = await unchanged(palisade, [local, keyed]);
    const bad: Array<[unknown, number, string | undefined]> = [
      [{ content: 'x'.repeat(100_001) }, 400, 'invalid_request'],
      [{ content: '' }, 400, 'invalid_request'],
      [{ content: ' \n\t ' }, 400, 'invalid_request'],
      [{ content: 42 }, 400, 'invalid_request'],
      [{ content: ['a'] }, 400, 'invalid_request'],
      [{}, 400, 'invalid_request'],
      [{ content: 'hi', model: '' }, 400, 'invalid_request'],
      [{ content: 'hi', model: 'm'.repeat(257) }, 400, 'invalid_request'],
      [{ content: 'hi', role: 'system' }, 400, 'invalid_request'],
      [{ content: 'hi', messages: [{ role: 'system', content: 'x' }] }, 400, 'invalid_request'],
      [[{ content: 'hi' }], 400, 'invalid_request'],
      ['{"content": "hi"', 400, 'invalid_json'],
      ['null', 400, undefined],
      [JSON.stringify({ content: 'y'.repeat(1024 * 1024) }), 413, 'body_too_large'],
    ];
    for (const [body, status, code] of bad) {
      const response = await alice.request('POST', path, body);
      const what = `${String(JSON.stringify(body)).slice(0, 60)}: ${response.text.slice(0, 200)}`;
      assert.equal(response.status, status, what);
      assertApiError(response, status, code);
      assert.ok(response.text.length < 2000, `no echo of the body: ${what}`);
    }
    // Other media types are not read as messages.
    const form = await alice.request('POST', path, 'content=hi', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    assert.equal(form.status, 415, form.text);
    const text = await alice.request('POST', path, 'hi', { 'content-type': 'text/plain' });
    assert.equal(text.status, 415, text.text);
    assert.deepEqual(await unchanged(palisade, [local, keyed]), before);

    // The longest message allowed goes through.
    const longest = await sendMessage(alice, conversation.id, { content: 'z'.repeat(100_000) });
    assert.equal(longest.at(-1)?.type, 'done');
    assert.equal(lastBody(local).messages.at(-1)?.content.length, 100_000);
  });
  test('upstream keys, shared or personal, never reach the logs, the audit log or an answer', async () => {
    const settings = await alice.get('/api/settings');
    const audit = readFileSync(join(palisade.home, 'audit.jsonl'), 'utf8');
    assert.match(audit, /"secret\.set"/, 'setting a key is audited');
    const logs = palisade.logs.join('');
    assert.match(logs, /"path":"\/api\/settings\/upstream-keys\/keyed"/, 'the request is logged');
    for (const key of [SHARED_KEY, ...PERSONAL_KEYS]) {
      const shown = `${key.slice(0, 8)}…`;
      assert.ok(!logs.includes(key), `not in the log: ${shown}`);
      assert.ok(!audit.includes(key), `not in audit.jsonl: ${shown}`);
      assert.ok(!settings.text.includes(key), `not in GET /api/settings: ${shown}`);
    }
    // Sealed at rest: the stored rows hold none of them either.
    const stored = await withStore(palisade, (store) =>
      JSON.stringify([
        store.sqlite.prepare('select * from user_secret').all(),
        store.sqlite.prepare('select * from upstream').all(),
      ]),
    );
    for (const key of [SHARED_KEY, ...PERSONAL_KEYS]) assert.ok(!stored.includes(key));
  });
});

describe('the per-user send limit', () => {
  test('PALISADE_CHAT_BURST=2: the third send is a 429 with Retry-After, and nothing is stored', async () => {
    const upstream = await startMockUpstream({ models: ['mock-small'] });
    const palisade = await startPalisade({
      env: {
        ...FAST_SCRYPT_ENV,
        PALISADE_UPSTREAMS: `local=${upstream.url}`,
        PALISADE_CHAT_RATE: '0.1',
        PALISADE_CHAT_BURST: '2',
      },
    });
    try {
      const alice = await newSignedInUser(palisade, 'alice');
      const bob = await newSignedInUser(palisade, 'bob');
      const conversation = await create(alice, { model: 'mock-small' });
      for (const content of ['one', 'two']) {
        const events = await sendMessage(alice, conversation.id, { content });
        assert.equal(events.at(-1)?.type, 'done');
      }
      const before = await unchanged(palisade, [upstream]);
      const third = await alice.post(`/api/conversations/${conversation.id}/messages`, {
        content: 'three',
      });
      assertApiError(third, 429, 'rate_limited');
      const retryAfter = Number(third.headers.get('retry-after'));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${retryAfter}`);
      // A regenerate takes from the same bucket.
      assertApiError(
        await alice.post(`/api/conversations/${conversation.id}/regenerate`, {}),
        429,
        'rate_limited',
      );
      assert.deepEqual(await unchanged(palisade, [upstream]), before, 'nothing stored or sent');
      const thread = await read(alice, conversation.id);
      assert.deepEqual(
        thread.messages.map((m) => m.content),
        ['one', 'Hello from mock-small', 'two', 'Hello from mock-small'],
      );
      // Reading is not limited, and the bucket is alice's alone.
      assert.equal((await alice.get(`/api/conversations/${conversation.id}`)).status, 200);
      const his = await create(bob, { model: 'mock-small' });
      assert.equal((await sendMessage(bob, his.id, { content: 'mine' })).at(-1)?.type, 'done');
    } finally {
      await palisade.close();
      await upstream.close();
    }
  });
});

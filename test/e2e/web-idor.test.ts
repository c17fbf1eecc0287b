import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createApiKey } from '../../src/auth/index.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import {
  assertApiError,
  eventually,
  FAST_SCRYPT_ENV,
  listRoutes,
  newSignedInUser,
  postStream,
  readEvents,
  sendMessage,
  signIn,
  snapshot,
  userIdOf,
  withoutRequestId,
  withStore,
  type WebClient,
  type WebResponse,
} from '../support/web.js';

/*
 * Another user's ids, tried on every route that takes one: each attempt is answered exactly
 * as a made-up id is, and changes nothing of the owner's. Routes are read from the running
 * app, so a route added later fails here until it is given a case.
 */

// Text only alice's data holds: none of it may show in another user's answers.
const ALICE_TITLE = 'Alice plans qx7-title';
const ALICE_SYSTEM = 'Alice system prompt qx7-system';
const ALICE_MESSAGE = 'Alice private message qx7-message';
const ALICE_MODEL = 'alice-default-qx7-model';
const ALICE_KEY = 'sk-alice-personal-qx7-key-0123456789';
const ALICE_MCP = { name: 'Alice tools qx7-mcp', url: 'https://mcp.example.com/alice-qx7-mcp' };

interface Conversation {
  id: string;
  title: string;
}
interface Settings {
  default_model: string | null;
  upstream_keys: Array<{ upstream: string; masked: string }>;
  mcp_servers: Array<{ id: string; name: string; url: string }>;
}

/** The per-user tables and the owner column that names the user in each. */
const OWNED_ROWS: Record<string, string> = {
  user: 'select * from user where id = @user order by rowid',
  session: 'select * from session where user_id = @user order by rowid',
  login_challenge: 'select * from login_challenge where user_id = @user order by rowid',
  recovery_code: 'select * from recovery_code where user_id = @user order by rowid',
  user_setting: 'select * from user_setting where user_id = @user order by rowid',
  user_secret: 'select * from user_secret where user_id = @user order by rowid',
  conversation: 'select * from conversation where user_id = @user order by rowid',
  chat_usage: 'select * from chat_usage where user_id = @user order by rowid',
  chat_message: `select chat_message.* from chat_message
    join conversation on conversation.id = chat_message.conversation_id
    where conversation.user_id = @user order by chat_message.rowid`,
};

/** Every stored row of one user, to compare byte for byte. */
function rowsOf(palisade: TestPalisade, userId: string): Promise<Record<string, unknown[]>> {
  return withStore(palisade, (store) =>
    Object.fromEntries(
      Object.entries(OWNED_ROWS).map(([table, query]) => [
        table,
        store.sqlite.prepare(query).all({ user: userId }),
      ]),
    ),
  );
}

/**
 * The web tables and the stored upstreams, without the one column a request may move on its
 * own: a session's `last_seen_at`, written at most once a minute by any signed-in request.
 */
async function state(palisade: TestPalisade): Promise<Record<string, unknown[]>> {
  const tables = await snapshot(palisade);
  tables.session = tables.session?.map((row) => ({ ...(row as object), last_seen_at: null })) ?? [];
  tables.upstream = await withStore(palisade, (store) =>
    store.sqlite.prepare('select * from upstream order by rowid').all(),
  );
  return tables;
}

/** Requests an answer would make (health checks, GET /v1/models, may come at any time). */
function chatCalls(upstream: MockUpstream): number {
  return upstream.requests.filter((r) => r.path === '/v1/chat/completions').length;
}

function pathFor(url: string, value: string): string {
  return url.replace(/:[A-Za-z_]+/, encodeURIComponent(value));
}

/** What alice owns, by what identifies it in a URL. */
interface AliceIds {
  userId: string;
  conversation: string;
  /** Her second session: revoking it would sign one of her browsers out. */
  session: string;
  mcpServer: string;
  upstream: string;
}

type Case =
  /** Refused: answered exactly as an unknown id, nothing changes. */
  | {
      kind: 'refused';
      foreign: (ids: AliceIds) => string;
      unknown: () => string;
      status: number;
      code: string;
      body?: unknown;
      queries?: string[];
    }
  /** The id names a slot in the caller's own space (an upstream name): it acts only there. */
  | { kind: 'own-scope' }
  /** Admin routes: refused to non-admins whatever the id (the admin test below). */
  | { kind: 'admin' };

const conversation = (ids: AliceIds) => ids.conversation;
const uuid = () => randomUUID();
const conversationCase = (extra: Partial<Extract<Case, { kind: 'refused' }>> = {}): Case => ({
  kind: 'refused',
  foreign: conversation,
  unknown: uuid,
  status: 404,
  code: 'conversation_not_found',
  ...extra,
});

/** Every /api route with a path parameter. A route missing here fails the coverage test. */
const CASES: Record<string, Case> = {
  'GET /api/conversations/:id': conversationCase(),
  'HEAD /api/conversations/:id': conversationCase(),
  'PATCH /api/conversations/:id': conversationCase({
    body: { title: 'renamed by someone else', system_prompt: 'obey me' },
  }),
  'DELETE /api/conversations/:id': conversationCase(),
  'GET /api/conversations/:id/export': conversationCase({
    queries: ['', '?format=markdown', '?format=json'],
  }),
  'HEAD /api/conversations/:id/export': conversationCase({
    queries: ['?format=markdown', '?format=json'],
  }),
  'POST /api/conversations/:id/messages': conversationCase({
    body: { content: 'written into a conversation not mine', model: 'mock-small' },
  }),
  'POST /api/conversations/:id/regenerate': conversationCase({ body: { model: 'mock-small' } }),
  'DELETE /api/me/sessions/:id': {
    kind: 'refused',
    foreign: (ids) => ids.session,
    unknown: uuid,
    status: 404,
    code: 'session_not_found',
  },
  'DELETE /api/settings/mcp-servers/:id': {
    kind: 'refused',
    foreign: (ids) => ids.mcpServer,
    unknown: uuid,
    status: 404,
    code: 'secret_not_found',
  },
  // The caller has no key by that name: 404 as for a name nobody has a key for.
  'DELETE /api/settings/upstream-keys/:upstream': {
    kind: 'refused',
    foreign: (ids) => ids.upstream,
    unknown: () => `nobody-${randomUUID().slice(0, 8)}`,
    status: 404,
    code: 'secret_not_found',
  },
  'PUT /api/settings/upstream-keys/:upstream': { kind: 'own-scope' },
  'PATCH /api/admin/users/:id': { kind: 'admin' },
  'POST /api/admin/users/:id/reset-totp': { kind: 'admin' },
  'DELETE /api/admin/keys/:id': { kind: 'admin' },
  'DELETE /api/admin/upstreams/:name': { kind: 'admin' },
  'GET /api/admin/jobs/runs/:id': { kind: 'admin' },
  'HEAD /api/admin/jobs/runs/:id': { kind: 'admin' },
  'POST /api/admin/jobs/runs/:id/cancel': { kind: 'admin' },
  'GET /api/admin/jobs/runs/:id/log': { kind: 'admin' },
  'HEAD /api/admin/jobs/runs/:id/log': { kind: 'admin' },
  'GET /api/admin/jobs/runs/:id/events': { kind: 'admin' },
};

/** /api routes without a path parameter that act on the caller's own data. */
const OWN_WRITES = new Set([
  'POST /api/conversations',
  'PUT /api/settings',
  'POST /api/settings/mcp-servers',
]);
/**
 * Signing in and out, the caller's own TOTP and password: they name no resource, and
 * web-auth, web-totp and web-sessions cover them.
 */
const OWN_ACCOUNT = new Set([
  'POST /api/me/password',
  'POST /api/auth/setup',
  'POST /api/auth/login',
  'POST /api/auth/logout',
  'POST /api/auth/totp/verify',
  'POST /api/auth/totp/enroll',
  'POST /api/auth/totp/confirm',
  'POST /api/auth/totp/disable',
]);

describe('one user cannot reach another user’s data', () => {
  let palisade: TestPalisade;
  let upstream: MockUpstream;
  let alice: WebClient;
  let aliceElsewhere: WebClient;
  let bob: WebClient;
  let carol: WebClient;
  let ids: AliceIds;
  /** Strings only alice's data holds, looked for in everyone else's answers. */
  let aliceMarkers: string[];
  /** Alice's rows and answers before anyone tried anything. */
  let aliceRowsBefore: Record<string, unknown[]>;
  let aliceViews: Map<string, string>;

  /** Alice's own answers, to compare byte for byte at the end. */
  async function viewsOfAlice(): Promise<Map<string, string>> {
    const views = new Map<string, string>();
    for (const path of [
      `/api/conversations/${ids.conversation}`,
      `/api/conversations/${ids.conversation}/export?format=markdown`,
      `/api/conversations/${ids.conversation}/export?format=json`,
      '/api/conversations',
      '/api/settings',
      '/api/usage',
    ]) {
      const response = await alice.get(path);
      assert.equal(response.status, 200, `${path}: ${response.text}`);
      views.set(path, response.text);
    }
    return views;
  }

  before(async () => {
    upstream = await startMockUpstream({ models: ['mock-small', 'mock-large', 'endless-stream'] });
    palisade = await startPalisade({
      env: {
        ...FAST_SCRYPT_ENV,
        PALISADE_UPSTREAMS: `local=${upstream.url}`,
        // Many requests per user below; the /api limit is web-hostile's subject.
        PALISADE_API_BURST: '100000',
      },
    });
    alice = await newSignedInUser(palisade, 'alice');
    aliceElsewhere = await signIn(palisade, 'alice');
    bob = await newSignedInUser(palisade, 'bob');
    carol = await newSignedInUser(palisade, 'carol', 'admin');

    // Alice: a conversation answered by the real upstream, twice.
    const created = await alice.post('/api/conversations', {
      title: ALICE_TITLE,
      system_prompt: ALICE_SYSTEM,
    });
    assert.equal(created.status, 201, created.text);
    const conversationId = (created.body as Conversation).id;
    for (const content of [ALICE_MESSAGE, `${ALICE_MESSAGE} again`]) {
      const events = await sendMessage(alice, conversationId, { content, model: 'mock-small' });
      assert.equal(events.at(-1)?.type, 'done', JSON.stringify(events.at(-1)));
    }
    // Her personal upstream key, an MCP server and a default model.
    const key = await alice.put('/api/settings/upstream-keys/local', { key: ALICE_KEY });
    assert.equal(key.status, 200, key.text);
    const mcp = await alice.post('/api/settings/mcp-servers', ALICE_MCP);
    assert.equal(mcp.status, 201, mcp.text);
    const settings = await alice.put('/api/settings', { default_model: ALICE_MODEL });
    assert.equal(settings.status, 200, settings.text);
    const mine = settings.body as Settings;
    const mcpServer = mine.mcp_servers[0]?.id as string;
    const masked = mine.upstream_keys[0]?.masked as string;
    // Her second session, the one signed in elsewhere.
    const sessions = (await aliceElsewhere.get('/api/me/sessions')).body as {
      sessions: Array<{ id: string; current: boolean }>;
    };
    assert.equal(sessions.sessions.length, 2);
    const elsewhere = sessions.sessions.find((s) => s.current)?.id as string;

    ids = {
      userId: await userIdOf(palisade, 'alice'),
      conversation: conversationId,
      session: elsewhere,
      mcpServer,
      upstream: 'local',
    };
    aliceMarkers = [
      ids.userId,
      ids.conversation,
      ...sessions.sessions.map((s) => s.id),
      mcpServer,
      ALICE_TITLE,
      'qx7',
      masked,
    ];

    // Bob and carol have data of their own, so their lists are not empty by accident.
    for (const [client, title] of [
      [bob, 'Bob notes'],
      [carol, 'Carol notes'],
    ] as const) {
      const own = await client.post('/api/conversations', { title });
      assert.equal(own.status, 201, own.text);
      await sendMessage(client, (own.body as Conversation).id, {
        content: `${title}: hello`,
        model: 'mock-small',
      });
    }

    aliceRowsBefore = await rowsOf(palisade, ids.userId);
    aliceViews = await viewsOfAlice();
  });

  after(async () => {
    await palisade.close();
    await upstream.close();
  });

  /** Asserts nothing of alice's changed and her answers read as before. */
  async function assertAliceUnchanged(): Promise<void> {
    assert.deepEqual(await rowsOf(palisade, ids.userId), aliceRowsBefore, 'alice’s rows');
    assert.deepEqual(await viewsOfAlice(), aliceViews, 'alice’s answers');
    assert.equal((await aliceElsewhere.get('/api/me')).status, 200, 'her other session lives');
  }

  function apiRoutes(): Array<[string, string]> {
    return listRoutes(palisade).filter(([, url]) => url.startsWith('/api/'));
  }

  test('every /api route is in a case table; every route with an id has its case', () => {
    const unlisted: string[] = [];
    for (const [method, url] of apiRoutes()) {
      const route = `${method} ${url}`;
      if (url.includes(':') || url.includes('*')) {
        if (!(route in CASES)) unlisted.push(route);
        continue;
      }
      if (url.startsWith('/api/admin/')) continue; // the admin test walks them all
      if (method === 'GET' || method === 'HEAD') continue; // the list test reads them all
      if (!OWN_WRITES.has(route) && !OWN_ACCOUNT.has(route)) unlisted.push(route);
    }
    assert.deepEqual(unlisted, [], 'routes this suite has no case for: add them');
    // And no stale case: each still names a served route.
    const served = new Set(apiRoutes().map(([method, url]) => `${method} ${url}`));
    for (const route of Object.keys(CASES)) assert.ok(served.has(route), `${route} is served`);
  });

  /** Sends one attempt with alice's id and one with an unknown id; both must read the same. */
  async function attempt(
    attacker: WebClient,
    method: string,
    url: string,
    value: string,
    unknown: string,
    query: string,
    body: unknown,
  ): Promise<[WebResponse, WebResponse]> {
    const foreign = await attacker.request(method, pathFor(url, value) + query, body);
    const madeUp = await attacker.request(method, pathFor(url, unknown) + query, body);
    return [foreign, madeUp];
  }

  test('another user’s ids are answered exactly as unknown ids, and change nothing', async () => {
    let tried = 0;
    for (const [who, attacker] of [
      ['bob', bob],
      ['carol (an admin)', carol],
    ] as const) {
      for (const [method, url] of apiRoutes()) {
        const route = `${method} ${url}`;
        const entry = CASES[route];
        if (entry?.kind !== 'refused') continue;
        for (const query of entry.queries ?? ['']) {
          const what = `${who}: ${route}${query}`;
          const before = await state(palisade);
          const upstreamCalls = chatCalls(upstream);
          const [foreign, unknown] = await attempt(
            attacker,
            method,
            url,
            entry.foreign(ids),
            entry.unknown(),
            query,
            entry.body,
          );
          assert.equal(foreign.status, entry.status, `${what}: ${foreign.text}`);
          assert.equal(unknown.status, foreign.status, `${what}: as for an unknown id`);
          assert.equal(
            foreign.headers.get('content-type'),
            unknown.headers.get('content-type'),
            what,
          );
          if (method === 'HEAD') {
            assert.equal(foreign.text, '', what);
          } else {
            assertApiError(foreign, entry.status, entry.code);
            assert.deepEqual(withoutRequestId(foreign), withoutRequestId(unknown), what);
            for (const marker of aliceMarkers) {
              assert.ok(!foreign.text.includes(marker), `${what} shows nothing of alice’s`);
            }
          }
          assert.equal(foreign.headers.get('content-disposition'), null, what);
          assert.deepEqual(await state(palisade), before, `${what}: nothing changed`);
          assert.equal(chatCalls(upstream), upstreamCalls, `${what}: no upstream call`);
          tried += 1;
        }
      }
    }
    const expected = Object.values(CASES).reduce(
      (sum, entry) => sum + (entry.kind === 'refused' ? (entry.queries ?? ['']).length : 0),
      0,
    );
    assert.equal(tried, 2 * expected, 'every refused case was tried by both');
    await assertAliceUnchanged();
  });

  test('while alice’s answer streams, her conversation is still unknown to others (no 409)', async () => {
    const created = await alice.post('/api/conversations', { title: 'Alice streaming qx7' });
    const busy = (created.body as Conversation).id;
    const controller = new AbortController();
    const streaming = await postStream(
      alice,
      `/api/conversations/${busy}/messages`,
      { content: 'count forever', model: 'endless-stream' },
      controller.signal,
    );
    assert.equal(streaming.status, 200);
    await readEvents(streaming, (seen) => seen.some((e) => e.type === 'delta'), true);
    try {
      // Alice herself is told it is busy...
      assertApiError(
        await alice.post(`/api/conversations/${busy}/messages`, { content: 'meanwhile' }),
        409,
        'conversation_busy',
      );
      // ...others are told it does not exist, exactly as for a made-up id.
      const before = await state(palisade);
      for (const [method, url, body] of [
        ['POST', '/api/conversations/:id/messages', { content: 'x', model: 'mock-small' }],
        ['POST', '/api/conversations/:id/regenerate', {}],
        ['GET', '/api/conversations/:id', undefined],
        ['DELETE', '/api/conversations/:id', undefined],
      ] as const) {
        const [foreign, unknown] = await attempt(bob, method, url, busy, randomUUID(), '', body);
        assertApiError(foreign, 404, 'conversation_not_found');
        assert.deepEqual(withoutRequestId(foreign), withoutRequestId(unknown), `${method} ${url}`);
      }
      assert.deepEqual(await state(palisade), before, 'nothing changed');
    } finally {
      controller.abort();
    }
    const stopped = await eventually(async () => {
      const thread = (await alice.get(`/api/conversations/${busy}`)).body as {
        messages: Array<{ status: string }>;
      };
      const last = thread.messages.at(-1)?.status;
      return last === 'streaming' ? undefined : last;
    });
    assert.equal(stopped, 'stopped');
    assert.equal((await alice.delete(`/api/conversations/${busy}`)).status, 204);
    // What that answer cost stays in her usage (deleting a conversation does not erase it):
    // that is her own doing, so it joins the baseline the other tests compare with.
    aliceRowsBefore = await rowsOf(palisade, ids.userId);
    aliceViews = await viewsOfAlice();
  });

  test('lists, searches, settings, sessions and usage show only the caller’s own data', async () => {
    const reads = apiRoutes().filter(
      ([method, url]) => method === 'GET' && !url.includes(':') && !url.startsWith('/api/admin/'),
    );
    const searches = [ALICE_TITLE, 'qx7', ALICE_MESSAGE, 'Alice', '%', '_'].map(
      (q) => `/api/conversations?q=${encodeURIComponent(q)}`,
    );
    for (const [who, client, username] of [
      ['bob', bob, 'bob'],
      ['carol (an admin)', carol, 'carol'],
    ] as const) {
      for (const path of [...reads.map(([, url]) => url), ...searches]) {
        const response = await client.get(path);
        assert.equal(response.status, 200, `${who} ${path}: ${response.text}`);
        for (const marker of aliceMarkers) {
          assert.ok(!response.text.includes(marker), `${who} ${path} holds "${marker}"`);
        }
      }
      for (const path of searches) {
        const found = (await client.get(path)).body as { conversations: Conversation[] };
        assert.ok(
          found.conversations.every((c) => !c.title.startsWith('Alice')),
          `${who}: ${path}`,
        );
      }
      const own = (await client.get('/api/conversations')).body as {
        conversations: Conversation[];
      };
      assert.deepEqual(
        own.conversations.map((c) => c.title),
        [`${username === 'bob' ? 'Bob' : 'Carol'} notes`],
      );
      const settings = (await client.get('/api/settings')).body as Settings;
      assert.deepEqual(settings, { default_model: null, upstream_keys: [], mcp_servers: [] });
      const sessions = (await client.get('/api/me/sessions')).body as {
        sessions: Array<{ id: string }>;
      };
      assert.equal(sessions.sessions.length, 1, `${who} sees one session, their own`);
      const usage = (await client.get('/api/usage')).body as { messages: number };
      assert.equal(usage.messages, 2, `${who}: their own two messages`);
    }
    // Alice's own list does hold her data: the markers were worth looking for.
    const hers = await alice.get(`/api/conversations?q=${encodeURIComponent(ALICE_TITLE)}`);
    assert.ok(hers.text.includes(ids.conversation));
    const usage = (await alice.get('/api/usage')).body as { messages: number };
    // Two exchanges, and the stopped one of the streaming test (its conversation deleted).
    assert.equal(usage.messages, 6);
    await assertAliceUnchanged();
  });

  test('writes without an id, and keys set by upstream name, touch only the writer’s rows', async () => {
    const bobId = await userIdOf(palisade, 'bob');
    // The same names alice used are free for bob: no 409 telling him she has one.
    const mcp = await bob.post('/api/settings/mcp-servers', ALICE_MCP);
    assert.equal(mcp.status, 201, mcp.text);
    const key = await bob.put('/api/settings/upstream-keys/local', {
      key: 'sk-bob-own-key-for-local-9999',
    });
    assert.equal(key.status, 200, key.text);
    const mine = key.body as Settings;
    assert.deepEqual(
      mine.upstream_keys.map((k) => [k.upstream, k.masked]),
      [['local', '••••9999']],
    );
    assert.equal(mine.mcp_servers.length, 1);
    assert.notEqual(mine.mcp_servers[0]?.id, ids.mcpServer);
    const model = await bob.put('/api/settings', { default_model: 'bob-model' });
    assert.equal((model.body as Settings).default_model, 'bob-model');
    const created = await bob.post('/api/conversations', { title: 'Bob second' });
    assert.equal(created.status, 201);
    await assertAliceUnchanged();

    // Bob's answers go out with his key, alice's with hers.
    const bobConversation = (created.body as Conversation).id;
    await sendMessage(bob, bobConversation, { content: 'hi', model: 'mock-small' });
    const last = upstream.requests.filter((r) => r.path === '/v1/chat/completions').at(-1);
    assert.equal(last?.headers.authorization, 'Bearer sk-bob-own-key-for-local-9999');

    // Bob removes what he added; alice's rows of the same names stay.
    assert.equal((await bob.delete('/api/settings/upstream-keys/local')).status, 200);
    const removed = await bob.delete(`/api/settings/mcp-servers/${mine.mcp_servers[0]?.id}`);
    assert.equal(removed.status, 200, removed.text);
    assert.equal((await bob.delete(`/api/conversations/${bobConversation}`)).status, 204);
    assert.equal((await bob.put('/api/settings', { default_model: null })).status, 200);
    const bobRows = await rowsOf(palisade, bobId);
    assert.deepEqual(bobRows.user_secret, []);
    assert.deepEqual(bobRows.user_setting, []);
    await assertAliceUnchanged();
  });

  test('non-admins get 403 admin_required on every /api/admin route, and nothing changes', async () => {
    const keyId = await withStore(
      palisade,
      async (store) => (await createApiKey(store, { name: 'carol-key', scope: 'admin' })).apiKey.id,
    );
    const values: Record<string, string> = {
      '/api/admin/users/:id': ids.userId,
      '/api/admin/users/:id/reset-totp': ids.userId,
      '/api/admin/keys/:id': keyId,
      '/api/admin/upstreams/:name': 'local',
    };
    const bodies: Record<string, unknown> = {
      'POST /api/admin/users': {
        username: 'mallory',
        password: 'a long enough passphrase',
        role: 'admin',
      },
      'PATCH /api/admin/users/:id': { role: 'admin', disabled: true },
      'POST /api/admin/users/:id/reset-totp': {},
      'POST /api/admin/keys': { name: 'mallory-key', scope: 'admin' },
      'POST /api/admin/upstreams': { name: 'mallory', url: upstream.url },
      'PUT /api/admin/settings': { require_totp: true },
    };
    const routes = apiRoutes().filter(([, url]) => url.startsWith('/api/admin/'));
    assert.ok(routes.length >= 12, `the admin routes are served (${routes.length})`);
    const before = await state(palisade);
    const modelsBefore = (await bob.get('/api/models')).text;
    for (const [who, client] of [
      ['bob', bob],
      ['alice', alice],
    ] as const) {
      for (const [method, url] of [...routes, ['GET', '/api/admin/no-such-route'] as const]) {
        const path = url.includes(':') ? pathFor(url, values[url] ?? 'x') : url;
        const body = method === 'GET' || method === 'HEAD' ? undefined : bodies[`${method} ${url}`];
        const response = await client.request(method, path, body);
        const what = `${who}: ${method} ${path}`;
        if (method === 'HEAD') {
          assert.equal(response.status, 403, what);
        } else {
          assertApiError(response, 403, 'admin_required');
          assert.ok(!response.text.includes('carol-key'), what);
        }
      }
    }
    assert.deepEqual(await state(palisade), before, 'nothing changed');
    assert.equal((await bob.get('/api/models')).text, modelsBefore, 'the upstreams are as before');
    assert.deepEqual(
      palisade.server.registry.list().map((u) => u.name),
      ['local'],
    );
    // The same requests from an admin do act: the 403s above were about who asked.
    const promoted = await carol.patch(`/api/admin/users/${await userIdOf(palisade, 'bob')}`, {
      role: 'admin',
    });
    assert.equal(promoted.status, 200, promoted.text);
    assert.equal((await bob.get('/api/admin/users')).status, 200, 'bob is an admin now');
    const demoted = await carol.patch(`/api/admin/users/${await userIdOf(palisade, 'bob')}`, {
      role: 'user',
    });
    assert.equal(demoted.status, 200, demoted.text);
    assertApiError(await bob.get('/api/admin/users'), 403, 'admin_required');
    await assertAliceUnchanged();
  });
});

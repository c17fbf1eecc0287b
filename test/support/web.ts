import assert from 'node:assert/strict';
import { createUser, totpCode } from '../../src/auth/index.js';
import type { ChatStreamEvent } from '../../src/chat/index.js';
import type { Store, UserRole } from '../../src/store/index.js';
import { openStore } from '../../src/store/index.js';
import type { RawResponse } from './http.js';
import type { TestPalisade } from './palisade.js';

/** Cheap scrypt for tests: the defaults cost ~0.3 s and 128 MB per hash. */
export const FAST_SCRYPT = { n: 1024, r: 8, p: 1 };
export const FAST_SCRYPT_ENV = { PALISADE_SCRYPT_N: '1024' };
export const PASSWORD = 'correct horse battery staple';

export interface WebResponse {
  status: number;
  headers: Headers;
  /** The JSON body, or undefined when there was none or it was not JSON. */
  body: unknown;
  text: string;
}

/**
 * A browser-like client of the web API: it keeps cookies, sends the served Origin and the
 * `X-Requested-With: palisade` header, as the web app does.
 *
 * @example
 * const alice = await signIn(palisade, 'alice');
 * (await alice.post('/api/conversations', { title: 'x' })).status; // 201
 */
export class WebClient {
  readonly cookies = new Map<string, string>();
  constructor(
    readonly base: string,
    readonly origin = base,
  ) {}

  get cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  async request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string | undefined> = {},
  ): Promise<WebResponse> {
    const sent: Record<string, string> = {
      'x-requested-with': 'palisade',
      origin: this.origin,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(this.cookies.size > 0 ? { cookie: this.cookieHeader } : {}),
    };
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) delete sent[name];
      else sent[name] = value;
    }
    const response = await fetch(this.base + path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      redirect: 'manual',
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      if (value === '' || /max-age=0\b/i.test(line) || /expires=thu, 01 jan 1970/i.test(line)) {
        this.cookies.delete(name);
      } else this.cookies.set(name, value);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: response.status, headers: response.headers, body: parsed, text };
  }

  get(path: string, headers?: Record<string, string | undefined>) {
    return this.request('GET', path, undefined, headers);
  }
  post(path: string, body: unknown = {}, headers?: Record<string, string | undefined>) {
    return this.request('POST', path, body, headers);
  }
  put(path: string, body: unknown = {}, headers?: Record<string, string | undefined>) {
    return this.request('PUT', path, body, headers);
  }
  patch(path: string, body: unknown = {}, headers?: Record<string, string | undefined>) {
    return this.request('PATCH', path, body, headers);
  }
  delete(path: string, headers?: Record<string, string | undefined>) {
    return this.request('DELETE', path, undefined, headers);
  }
}

/** Creates a user through a store connection of its own, as `palisade users create` does. */
export async function addUser(
  palisade: TestPalisade,
  username: string,
  role: UserRole = 'user',
  password = PASSWORD,
): Promise<void> {
  const store = await openStore(palisade.home);
  try {
    await createUser(store, { username, password, role }, FAST_SCRYPT);
  } finally {
    await store.close();
  }
}

/** Signs in with a password (no TOTP) and returns the signed-in client; throws if refused. */
export async function signIn(
  palisade: TestPalisade,
  username: string,
  password = PASSWORD,
): Promise<WebClient> {
  const client = new WebClient(palisade.url);
  const response = await client.post('/api/auth/login', { username, password });
  if (response.status !== 200) {
    throw new Error(`sign-in of ${username} failed: ${response.status} ${response.text}`);
  }
  return client;
}

/** Creates a user and signs them in. */
export async function newSignedInUser(
  palisade: TestPalisade,
  username: string,
  role: UserRole = 'user',
): Promise<WebClient> {
  await addUser(palisade, username, role);
  return signIn(palisade, username);
}

/** Runs `fn` with a store connection of its own (as the CLI has beside a live server). */
export async function withStore<T>(
  palisade: Pick<TestPalisade, 'home'>,
  fn: (store: Store) => T | Promise<T>,
): Promise<T> {
  const store = await openStore(palisade.home);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The tables a web request may change (the audit log is meant to grow on refusals). */
export const WEB_TABLES = [
  'user',
  'session',
  'login_challenge',
  'recovery_code',
  'instance_setting',
  'user_setting',
  'user_secret',
  'conversation',
  'chat_message',
  'api_key',
] as const;

/** Every row of the web tables, to compare before and after a refused request. */
export function snapshot(palisade: Pick<TestPalisade, 'home'>): Promise<Record<string, unknown[]>> {
  return withStore(palisade, (store) =>
    Object.fromEntries(
      WEB_TABLES.map((table) => [
        table,
        store.sqlite.prepare(`select * from "${table}" order by rowid`).all(),
      ]),
    ),
  );
}

/** Asserts an /api error: its status, its JSON shape and code, and a request id matching the header. */
export function assertApiError(response: WebResponse, status: number, code?: string): void {
  const context = `${response.status} ${response.text}`;
  assert.equal(response.status, status, context);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/, context);
  const body = response.body as {
    error?: { message?: unknown; code?: unknown };
    request_id?: unknown;
  };
  assert.ok(body?.error, `an error object: ${context}`);
  assert.equal(typeof body.error.message, 'string', context);
  if (code !== undefined) assert.equal(body.error.code, code, context);
  assert.match(String(body.request_id), /^req_[0-9a-f]+$/, context);
  assert.equal(body.request_id, response.headers.get('x-request-id'), context);
}

/** The body of an error without its request id, to compare two answers. */
export function withoutRequestId(response: WebResponse): unknown {
  const { request_id: _id, ...rest } = response.body as Record<string, unknown>;
  return rest;
}

/** Parses one Set-Cookie line into its name, value and attributes (lower-cased names). */
export function parseSetCookie(line: string): {
  name: string;
  value: string;
  attributes: Map<string, string>;
} {
  const [pair = '', ...parts] = line.split(';').map((p) => p.trim());
  const eq = pair.indexOf('=');
  const attributes = new Map<string, string>();
  for (const part of parts) {
    const at = part.indexOf('=');
    if (at === -1) attributes.set(part.toLowerCase(), '');
    else attributes.set(part.slice(0, at).toLowerCase(), part.slice(at + 1));
  }
  return { name: pair.slice(0, eq), value: pair.slice(eq + 1), attributes };
}

/** The Set-Cookie of `name` in a response, parsed, or undefined. */
export function setCookieOf(response: WebResponse, name: string) {
  return response.headers
    .getSetCookie()
    .map(parseSetCookie)
    .find((cookie) => cookie.name === name);
}

/**
 * Turns TOTP on for a signed-in client, confirming with the code of `now`; returns the secret
 * and the recovery codes. That code's step is used up: sign in with the next step's code.
 */
export async function enrollTotp(
  client: WebClient,
  now = Date.now(),
  password = PASSWORD,
): Promise<{ secret: string; recoveryCodes: string[] }> {
  const enrolled = await client.post('/api/auth/totp/enroll', { password });
  assert.equal(enrolled.status, 200, enrolled.text);
  const { secret } = enrolled.body as { secret: string };
  const confirmed = await client.post('/api/auth/totp/confirm', { code: totpCode(secret, now) });
  assert.equal(confirmed.status, 200, confirmed.text);
  return { secret, recoveryCodes: (confirmed.body as { recovery_codes: string[] }).recovery_codes };
}

/** A raw response (test/support/http.ts) as a WebResponse, for assertApiError. */
export function fromRaw(raw: RawResponse): WebResponse {
  let body: unknown;
  try {
    body = JSON.parse(raw.body);
  } catch {
    body = undefined;
  }
  return { status: raw.status, headers: new Headers(raw.headers), body, text: raw.body };
}

/**
 * Every route the running app serves, as `[method, url]` (read from Fastify's route tree),
 * so door tests cover routes added later without being told.
 */
export function listRoutes(palisade: TestPalisade): Array<[string, string]> {
  const tree = palisade.server.app.printRoutes({ commonPrefix: false });
  const routes: Array<[string, string]> = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^([\s│]*)[└├]── (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (!match) continue;
    const [, indent = '', segment = '', methods] = match;
    const depth = indent.length / 4;
    stack.length = depth;
    const parent = depth === 0 ? '' : (stack[depth - 1] as string);
    const url = depth === 0 ? segment : depth === 1 ? `/${segment}` : parent + segment;
    stack[depth] = url;
    for (const method of methods?.split(', ') ?? []) routes.push([method, url]);
  }
  return routes;
}

/**
 * A POST from a signed-in client whose answer is read as it arrives (a chat send or
 * regenerate): the raw fetch Response, to read with `readEvents` or abort with `signal`.
 */
export function postStream(
  client: WebClient,
  path: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(client.base + path, {
    method: 'POST',
    headers: {
      'x-requested-with': 'palisade',
      origin: client.origin,
      'content-type': 'application/json',
      accept: 'text/event-stream',
      ...(client.cookies.size > 0 ? { cookie: client.cookieHeader } : {}),
    },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

/**
 * Parses the `data:` frames of a chat answer as they arrive. `until` may stop reading early:
 * the body is then cancelled (the client goes away) unless `keepOpen`.
 */
export async function readEvents(
  response: Response,
  until?: (events: ChatStreamEvent[]) => boolean,
  keepOpen = false,
): Promise<ChatStreamEvent[]> {
  assert.ok(response.body, 'a response body');
  const events: ChatStreamEvent[] = [];
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return events;
    buffered += value;
    let end: number;
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      const frame = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      assert.ok(frame.startsWith('data: '), `an SSE data frame: ${frame}`);
      events.push(JSON.parse(frame.slice(6)) as ChatStreamEvent);
      if (until?.(events)) {
        if (!keepOpen) await reader.cancel();
        return events;
      }
    }
  }
}

/** Sends a chat message through the real API and reads the whole answer (status 200 asserted). */
export async function sendMessage(
  client: WebClient,
  conversationId: string,
  body: { content: string; model?: string },
): Promise<ChatStreamEvent[]> {
  const response = await postStream(client, `/api/conversations/${conversationId}/messages`, body);
  assert.equal(response.status, 200, await response.clone().text());
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  return readEvents(response);
}

/** Polls until `probe` answers something other than undefined (a state the server reaches on its own). */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The id of a user, read from the store. */
export function userIdOf(palisade: Pick<TestPalisade, 'home'>, username: string): Promise<string> {
  return withStore(palisade, (store) => {
    const row = store.sqlite.prepare('select id from user where username = ?').get(username) as
      { id: string } | undefined;
    assert.ok(row, `a user named ${username}`);
    return row.id;
  });
}

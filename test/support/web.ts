import { createUser } from '../../src/auth/index.js';
import type { UserRole } from '../../src/store/index.js';
import { openStore } from '../../src/store/index.js';
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

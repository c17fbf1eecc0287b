import assert from 'node:assert/strict';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { findUser, type SessionUser } from '../../src/auth/index.js';
import { createErrorHandler } from '../../src/server/errors.js';
import type { Store } from '../../src/store/index.js';

export interface ApiAnswer {
  status: number;
  text: string;
  /** The parsed body; undefined for an empty one. */
  json: unknown;
}

export interface CallOptions {
  /** Sent as `x-test-user`. */
  user?: string;
  /** Sent as `x-test-role`. */
  role?: 'admin' | 'user';
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as it is, as `application/json`. */
  raw?: string;
}

export interface ApiHarness {
  app: FastifyInstance;
  /** `http://127.0.0.1:PORT`; the routes are under `/api`. */
  url: string;
  /** Sends a request to `url + path` (path with `/api`) and reads the whole answer. */
  call(method: string, path: string, options?: CallOptions): Promise<ApiAnswer>;
  close(): Promise<void>;
}

export interface ApiHarnessOptions {
  /**
   * Test-only stand-in for the session hook: who the request is signed in as, if anyone.
   * `testUserById(store)` reads the usual `x-test-user` header.
   */
  user: (request: FastifyRequest) => SessionUser | null | undefined;
  /** Registers the routes under test, inside `/api`. */
  routes: (api: FastifyInstance) => PromiseLike<unknown>;
  /** The body limit the error handler names in a 413; 64 KiB unless given. */
  bodyLimit?: number;
}

/**
 * The user whose id is in `x-test-user`; `x-test-role` (admin or user) stands for a session
 * resolved before a concurrent change of role.
 */
export function testUserById(store: Store): (request: FastifyRequest) => SessionUser | undefined {
  return (request) => {
    const id = request.headers['x-test-user'];
    const row = typeof id === 'string' ? findUser(store, id) : undefined;
    if (!row) return undefined;
    const role = request.headers['x-test-role'];
    return {
      id: row.id,
      username: row.username,
      role: role === 'admin' || role === 'user' ? role : row.role,
    };
  };
}

/**
 * A Fastify app serving `routes` under `/api` on a free loopback port, with the server's
 * error handler and `request.user` set by `user` instead of a session cookie.
 *
 * @example
 * const h = await startApiHarness({
 *   user: testUserById(store),
 *   routes: (api) => api.register(settings, { store, audit, secrets }),
 * });
 * await fetch(`${h.url}/api/settings`, { headers: { 'x-test-user': aliceId } });
 */
export async function startApiHarness(options: ApiHarnessOptions): Promise<ApiHarness> {
  const app = Fastify();
  await app.register(
    async (api) => {
      api.decorateRequest('user', null);
      api.decorateRequest('sessionId', null);
      api.setErrorHandler(createErrorHandler(options.bodyLimit ?? 64 * 1024));
      api.addHook('onRequest', async (request) => {
        const user = options.user(request);
        if (user) request.user = user;
      });
      await options.routes(api);
    },
    { prefix: '/api' },
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  assert.ok(address && typeof address === 'object');
  const url = `http://127.0.0.1:${address.port}`;
  return {
    app,
    url,
    call: (method, path, call) => callApi(url, method, path, call),
    close: () => app.close(),
  };
}

async function callApi(
  url: string,
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<ApiAnswer> {
  const headers: Record<string, string> = {};
  if (options.user) headers['x-test-user'] = options.user;
  if (options.role) headers['x-test-role'] = options.role;
  let body: string | undefined;
  if (options.raw !== undefined || options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = options.raw ?? JSON.stringify(options.body);
  }
  const response = await fetch(url + path, { method, headers, body });
  const text = await response.text();
  return { status: response.status, text, json: text === '' ? undefined : JSON.parse(text) };
}

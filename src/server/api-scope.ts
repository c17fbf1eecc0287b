import fastifyCookie from '@fastify/cookie';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  countOtherUsers,
  isLocalRequest,
  readCookie,
  resolveSession,
  setCookie,
  type CookiePolicy,
  type RateLimiter,
  type SessionUser,
} from '../auth/index.js';
import type { Store } from '../store/index.js';
import { createErrorHandler, HttpError } from './errors.js';

export interface ApiScopeOptions {
  store: Store;
  cookies: CookiePolicy;
  sessionTtlMs: number;
  /** Single-user mode: every request is this user, without a session. */
  localUser?: SessionUser;
  /** Every /api request, per user (or per client IP before sign-in). */
  limiter: RateLimiter;
  isTotpRequired: () => boolean;
  bodyLimit: number;
  /** The web app's route plugins, each registering itself (with its options) inside /api. */
  routes: FastifyPluginAsync[];
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** What a user who must enroll in TOTP (an admin requires it) may still do. */
const ALLOWED_BEFORE_TOTP = new Set([
  'GET /api/auth/state',
  'GET /api/me',
  'POST /api/auth/logout',
  'POST /api/auth/totp/enroll',
  'POST /api/auth/totp/confirm',
]);

/** The origin the browser is on: scheme from the cookie policy (HTTPS or not), host as sent. */
export function servedOrigin(request: FastifyRequest, cookies: CookiePolicy): string {
  return `${cookies.secure(request) ? 'https' : 'http'}://${request.host}`;
}

/**
 * The web app's JSON API under `/api`: CSRF defence (the `X-Requested-With: palisade` header
 * on every request, and on state changes an `Origin` equal to the served origin), the session
 * cookie turned into `request.user`, a per-user rate limit, and the TOTP-enrollment gate. The
 * route plugins registered inside it get all of that.
 *
 * @example
 * app.register(apiScope, { prefix: '/api', store, cookies, ..., routes: [(api) => api.register(authRoutes, {...})] });
 */
export const apiScope: FastifyPluginAsync<ApiScopeOptions> = async (app, options) => {
  const { store, cookies } = options;
  // Cookies are parsed here only: the gateway's /v1 requests, a hot path, never pay for it.
  await app.register(fastifyCookie);
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('user', null);
  app.decorateRequest('sessionId', null);
  app.setErrorHandler(createErrorHandler(options.bodyLimit, undefined, 'the web API limit'));
  app.addHook('onRoute', (route) => {
    route.bodyLimit = options.bodyLimit;
  });

  app.addHook('onRequest', async (request) => {
    if (request.headers['x-requested-with'] !== 'palisade') {
      throw new HttpError(
        403,
        'csrf_header_missing',
        'requests to /api must carry the header X-Requested-With: palisade',
      );
    }
    if (request.headers['sec-fetch-site'] === 'cross-site') {
      throw new HttpError(403, 'cross_site_request', 'cross-site requests to /api are refused');
    }
    if (STATE_CHANGING.has(request.method)) {
      const origin = request.headers.origin;
      if (origin === undefined) {
        throw new HttpError(
          403,
          'origin_missing',
          'a state-changing /api request must carry an Origin header',
        );
      }
      if (origin !== servedOrigin(request, cookies)) {
        throw new HttpError(403, 'origin_mismatch', `Origin ${origin} is not this site`);
      }
    }
  });

  app.addHook('onRequest', async (request, reply) => {
    if (options.localUser) {
      request.user = singleUser(request, options.localUser);
    } else {
      const token = readCookie(request, cookies, 'session');
      const resolved =
        token === undefined ? undefined : resolveSession(store, token, options.sessionTtlMs);
      if (resolved && token !== undefined) {
        const { user, session } = resolved;
        request.user = { id: user.id, username: user.username, role: user.role };
        request.sessionId = session.id;
        if (resolved.renewed) {
          setCookie(request, reply, cookies, 'session', token, options.sessionTtlMs);
        }
      }
    }
    const wait = options.limiter.take(
      request.user ? `user:${request.user.id}` : `ip:${request.ip}`,
    );
    if (wait > 0) {
      throw new HttpError(429, 'rate_limited', `too many requests; retry in ${wait} s`, {
        headers: { 'retry-after': String(wait) },
      });
    }
  });

  // Nothing the API answers is for a shared cache: TOTP secrets, recovery codes, new keys.
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
  });

  /**
   * Single-user mode's user, for clients on this machine only, and only while the home has no
   * other account: one created since start ends the mode at once, not at the next restart.
   */
  function singleUser(request: FastifyRequest, local: SessionUser): SessionUser | null {
    if (!isLocalRequest(request)) return null;
    if (countOtherUsers(store, local.id) > 0) {
      throw new HttpError(
        403,
        'single_user_mode_ended',
        'this home now has user accounts, so single-user mode (PALISADE_AUTH=false) has ended: restart Palisade without it and sign in',
      );
    }
    return local;
  }

  app.addHook('preHandler', async (request) => {
    if (!request.user || options.localUser || !options.isTotpRequired()) return;
    const route = `${request.method} ${request.routeOptions.url ?? ''}`;
    if (ALLOWED_BEFORE_TOTP.has(route)) return;
    const enabled = store.sqlite
      .prepare<[string], { on: number }>(
        'select totp_enabled_at is not null as "on" from user where id = ?',
      )
      .get(request.user.id);
    if (!enabled?.on) {
      throw new HttpError(
        403,
        'totp_enrollment_required',
        'an admin requires two-factor sign-in: set it up under Settings first',
      );
    }
  });

  for (const routes of options.routes) await app.register(routes);
};

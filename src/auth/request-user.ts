import type { FastifyRequest } from 'fastify';
import { isLoopbackHost } from '../config/index.js';
import { HttpError } from '../server/errors.js';
import type { UserRole } from '../store/index.js';

/** The signed-in user of a web (`/api/*`) request, as the session resolved it. */
export interface SessionUser {
  id: string;
  username: string;
  role: UserRole;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the /api session hook when the request carries a valid session cookie. */
    user: SessionUser | null;
    /** The public id of that session (not its secret). */
    sessionId: string | null;
  }
}

/** The signed-in user, or 401 naming the fix. */
export function requireUser(request: FastifyRequest): SessionUser {
  if (request.user === null) {
    throw new HttpError(401, 'not_signed_in', 'sign in first: POST /api/auth/login');
  }
  return request.user;
}

/** The signed-in user if an admin, else 401 (not signed in) or 403. */
export function requireAdmin(request: FastifyRequest): SessionUser {
  const user = requireUser(request);
  if (user.role !== 'admin') {
    throw new HttpError(403, 'admin_required', 'this needs an admin account');
  }
  return user;
}

/**
 * True when the client is on this machine: both the TCP peer and, behind a trusted proxy, the
 * forwarded client are loopback. Neither a spoofed X-Forwarded-For nor a remote user behind a
 * local proxy passes.
 */
export function isLocalRequest(request: FastifyRequest): boolean {
  return isLoopbackHost(request.socket.remoteAddress ?? '') && isLoopbackHost(request.ip);
}

import type { FastifyReply, FastifyRequest } from 'fastify';

/** How the web app's cookies are named and flagged for one request. */
export interface CookiePolicy {
  /** Served over HTTPS (PALISADE_HTTPS, or a trusted proxy's X-Forwarded-Proto). */
  secure(request: FastifyRequest): boolean;
}

type CookieName = 'session' | 'login';

/** `__Host-` binds a cookie to this exact origin (Secure, Path=/, no Domain); it needs HTTPS. */
function cookieName(name: CookieName, secure: boolean): string {
  return `${secure ? '__Host-' : ''}palisade_${name}`;
}

export function readCookie(
  request: FastifyRequest,
  policy: CookiePolicy,
  name: CookieName,
): string | undefined {
  const value = request.cookies[cookieName(name, policy.secure(request))];
  return value === undefined || value === '' ? undefined : value;
}

/** Sets an HttpOnly, SameSite=Strict cookie for the whole site; Secure over HTTPS. */
export function setCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  policy: CookiePolicy,
  name: CookieName,
  value: string,
  maxAgeMs: number,
): void {
  const secure = policy.secure(request);
  reply.setCookie(cookieName(name, secure), value, {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure,
    maxAge: Math.floor(maxAgeMs / 1000),
  });
}

export function clearCookie(
  request: FastifyRequest,
  reply: FastifyReply,
  policy: CookiePolicy,
  name: CookieName,
): void {
  const secure = policy.secure(request);
  reply.clearCookie(cookieName(name, secure), {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure,
  });
}

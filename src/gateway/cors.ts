import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpError } from '../server/errors.js';

const ALLOWED_HEADERS =
  'authorization, content-type, x-api-key, anthropic-version, anthropic-beta, x-stainless-os, x-stainless-lang, x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, x-stainless-arch, x-stainless-retry-count, x-stainless-timeout, x-stainless-helper, x-stainless-helper-method, anthropic-dangerous-direct-browser-access, openai-organization, openai-project';

/**
 * Browser access to `/v1/*`. A request carrying an `Origin` comes from a web page; it is
 * refused unless that origin is listed in PALISADE_CORS_ORIGINS, so a page a user happens
 * to visit cannot spend their local models. Listed origins get CORS headers.
 */
export function createCorsCheck(allowedOrigins: string[]) {
  const allowed = new Set(allowedOrigins);
  return async function checkCors(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const origin = request.headers.origin;
    if (origin === undefined) return;
    if (!allowed.has(origin)) {
      throw new HttpError(
        403,
        'origin_not_allowed',
        `requests from the web page origin ${JSON.stringify(origin.slice(0, 200))} are refused; list it in PALISADE_CORS_ORIGINS to allow it`,
      );
    }
    reply.header('access-control-allow-origin', origin).header('vary', 'Origin');
    if (request.method === 'OPTIONS') {
      await reply
        .code(204)
        .header('access-control-allow-methods', 'GET, POST, OPTIONS')
        .header('access-control-allow-headers', ALLOWED_HEADERS)
        .header('access-control-max-age', '600')
        .send();
    }
  };
}

import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createErrorHandler, HttpError } from './errors.js';

/** The web app's CSP: nothing inline, nothing from elsewhere, no framing. */
export const WEB_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'";

/** The paths the single-page app answers with its index.html. */
const APP_PATHS = ['/', '/login', '/setup', '/settings', '/admin', '/admin/*', '/c/*'];

/** dist/web of this package, whether running from src/ (tsx) or dist/ (built). */
export function webAppDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i += 1) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'web');
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'web');
}

export interface WebAppOptions {
  /** Folder holding the built app (index.html, assets/); default: this package's dist/web. */
  root?: string;
}

/**
 * Serves the built web app: hashed files under /assets with a year of immutable cache, and
 * index.html (never cached) for the app's own paths. Every response here carries the strict CSP.
 *
 * @example
 * app.register(webApp);
 */
export const webApp: FastifyPluginAsync<WebAppOptions> = async (app, options) => {
  const root = options.root ?? webAppDir();
  const indexPath = join(root, 'index.html');
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('content-security-policy', WEB_CSP);
  });
  // The static file server refuses folders, dotfiles and escapes with a bare 403: to a client
  // they are all files that are not there.
  const answerError = createErrorHandler(0);
  app.setErrorHandler((error, request, reply) => {
    const status = (error as { statusCode?: number }).statusCode;
    if (!(error instanceof HttpError) && (status === 403 || status === 404)) {
      const path = request.url.split('?', 1)[0];
      return answerError(new HttpError(404, 'not_found', `no file ${path}`), request, reply);
    }
    return answerError(error, request, reply);
  });

  if (!existsSync(indexPath)) {
    for (const path of APP_PATHS) {
      app.get(path, async () => {
        throw new HttpError(
          503,
          'web_app_not_built',
          'the web app is not built: run `npm run build` (or `npm start`, which builds it)',
        );
      });
    }
    return;
  }

  const index = readFileSync(indexPath);
  for (const path of APP_PATHS) {
    app.get(path, async (_request, reply) =>
      reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .send(index),
    );
  }
  const faviconPath = join(root, 'favicon.svg');
  if (existsSync(faviconPath)) {
    const favicon = readFileSync(faviconPath);
    app.get('/favicon.svg', async (_request, reply) =>
      reply
        .header('content-type', 'image/svg+xml')
        .header('cache-control', 'public, max-age=86400')
        .send(favicon),
    );
  }
  await app.register(fastifyStatic, {
    root: join(root, 'assets'),
    prefix: '/assets/',
    immutable: true,
    maxAge: '365d',
    index: false,
    dotfiles: 'deny',
    wildcard: true,
  });
};

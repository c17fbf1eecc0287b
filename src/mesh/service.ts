import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Store } from '../store/index.js';
import { createMeshBroker, type MeshBroker, type MeshLimits } from './broker.js';
import { meshRoutes } from './routes.js';
import { writeMeshToken, writeMeshUrl } from './token.js';
import { createWindowLimiter } from './window-limiter.js';

export interface MeshOptions {
  store: Store;
  home: string;
  logger: Logger;
  version: string;
  startedAt: number;
  limits: MeshLimits;
  /** Requests per peer in any 10 s. */
  rateLimit: number;
  now?: () => number;
}

export interface Mesh {
  broker: MeshBroker;
  /** This start's bearer token (also in PALISADE_HOME/mesh.token). */
  token: string;
  /** Register under /mesh. */
  routes: FastifyPluginAsync;
  /** Records where loopback clients reach the broker, once the server listens. */
  announce(url: string): void;
  close(): void;
}

/**
 * The agent mesh inside `palisade serve`: a fresh token on every start, the broker over the
 * store, its routes, and a timer that marks silent peers gone and prunes old rows.
 *
 * @example
 * const mesh = createMesh({ store, home, logger, version, startedAt, limits, rateLimit: 100 });
 * app.register(mesh.routes, { prefix: '/mesh' });
 */
export function createMesh(options: MeshOptions): Mesh {
  const { logger } = options;
  const broker = createMeshBroker({
    store: options.store,
    limits: options.limits,
    ...(options.now ? { now: options.now } : {}),
  });
  const token = writeMeshToken(options.home);
  const limiter = createWindowLimiter({ limit: options.rateLimit, windowMs: 10_000 });

  const sweepEveryMs = Math.min(5000, Math.max(250, Math.floor(options.limits.peerTimeoutMs / 4)));
  const timer = setInterval(() => {
    try {
      const swept = broker.sweep();
      if (swept.gone + swept.expiredClaims + swept.messages + swept.events + swept.peers > 0) {
        logger.debug({ swept }, 'mesh sweep');
      }
    } catch (error) {
      logger.warn({ err: error }, 'mesh sweep failed; retrying on the next tick');
    }
  }, sweepEveryMs);
  timer.unref();

  const routes: FastifyPluginAsync = async (app) =>
    app.register(meshRoutes, {
      broker,
      token,
      limiter,
      rateLimit: options.rateLimit,
      version: options.version,
      startedAt: options.startedAt,
    });

  return {
    broker,
    token,
    routes,
    announce: (url) => writeMeshUrl(options.home, url),
    close: () => clearInterval(timer),
  };
}

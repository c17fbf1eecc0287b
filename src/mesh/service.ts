import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { createWindowLimiter } from '../auth/index.js';
import { isLoopbackHost } from '../config/index.js';
import type { Store } from '../store/index.js';
import { createMeshBroker, type MeshBroker, type MeshLimits } from './broker.js';
import { meshRoutes } from './routes.js';
import { removeMeshUrl, writeMeshToken, writeMeshUrl } from './token.js';

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
  /**
   * Once the server listens: records in `mesh.url` where clients on this machine reach the
   * broker, or warns that none can (a server bound to one non-loopback address).
   */
  announce(host: string, port: number): void;
  /** Stops the timer and removes `mesh.url`, so clients see at once that no broker runs. */
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
    announce(host, port) {
      const url = loopbackUrl(host, port);
      if (url !== undefined) writeMeshUrl(options.home, url);
      else {
        logger.warn(
          `the agent mesh serves loopback clients only, and a server bound to ${host} cannot be reached on loopback; bind to 0.0.0.0 or 127.0.0.1 to use it`,
        );
      }
    },
    close() {
      clearInterval(timer);
      removeMeshUrl(options.home);
    },
  };
}

/** Where a client on this machine reaches a server bound to `host`, if it can. */
function loopbackUrl(host: string, port: number): string | undefined {
  if (host === '0.0.0.0' || host === 'localhost') return `http://127.0.0.1:${port}`;
  if (host === '::') return `http://[::1]:${port}`;
  if (!isLoopbackHost(host)) return undefined;
  return host.includes(':')
    ? `http://[${host.replace(/^\[|\]$/g, '')}]:${port}`
    : `http://${host}:${port}`;
}

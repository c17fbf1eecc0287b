import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import { isLocalRequest } from '../auth/index.js';
import { gateway, type GatewayOptions } from '../gateway/index.js';
import {
  answerClientError,
  createErrorHandler,
  HttpError,
  openAiErrorBody,
  sendError,
  type ErrorBody,
} from './errors.js';
import { apiScope, type ApiScopeOptions } from './api-scope.js';
import { createHostGuard } from './host-guard.js';
import { webApp } from './web-app.js';
import type { Metrics } from './metrics.js';
import { newRequestId } from './request-id.js';

export interface AppOptions {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  version: string;
  startedAt: number;
  gateway: Omit<GatewayOptions, 'metrics'>;
  /** The error shape for a request outside any face's own handler (unknown routes, bad URLs). */
  errorBodyFor?: (request: FastifyRequest) => ErrorBody;
  /** Further faces under /v1 that reuse the gateway's door and dispatcher (`v1.gateway`). */
  faces?: FastifyPluginAsync[];
  /** The agent mesh broker's routes, registered under /mesh when the mesh is on. */
  mesh?: FastifyPluginAsync;
  /** The web app: its JSON API under /api and the built front end at `/`. */
  web?: {
    api: Omit<ApiScopeOptions, 'bodyLimit'>;
    /** Folder of the built front end (default: dist/web). */
    root?: string;
  };
  /** Strict-Transport-Security to send on HTTPS responses, if any. */
  hsts?: { header: string; isHttps: (request: FastifyRequest) => boolean };
  /** Jobs in status running, for /healthz (0 when there is no job runner). */
  activeJobs?: () => number;
  /** True when the admin key check passes for /metrics from a non-loopback client. */
  isAdminRequest: (headers: Record<string, string | string[] | undefined>) => boolean;
}

/** Headers every response carries: a JSON API has nothing to frame, sniff or refer. */
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
};

/** Largest /api request body: a chat message of 100,000 characters fits with room to spare. */
const API_BODY_LIMIT = 1024 * 1024;

/**
 * Assembles the HTTP app: cross-cutting hooks (request id, Host guard, security headers,
 * error shape, access log, metrics), then each face as its own plugin.
 */
export function buildApp(options: AppOptions): FastifyInstance {
  const { config, metrics } = options;
  const errorBodyFor = options.errorBodyFor ?? (() => openAiErrorBody);
  const app = Fastify({
    // URLs Fastify cannot decode (`/%ZZ`) get the usual error shape and headers too.
    frameworkErrors: (_error, request, reply) => {
      reply.header('x-request-id', request.id).headers(SECURITY_HEADERS);
      return sendError(
        request,
        reply,
        new HttpError(400, 'bad_request', 'the request URL is not valid'),
        errorBodyFor(request),
      );
    },
    loggerInstance: options.logger as FastifyBaseLogger,
    // One access line per request is written in onResponse, with the request id under this label.
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'request_id',
    }),
    genReqId: newRequestId,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    requestTimeout: config.requestTimeoutMs,
    // Requests arriving while shutting down get our own 503 (below), in the usual error shape.
    return503OnClosing: false,
    clientErrorHandler: (error, socket) => answerClientError(error, socket, options.logger),
    forceCloseConnections: 'idle',
    http: {
      maxHeaderSize: config.maxHeaderSize,
      headersTimeout: config.headersTimeoutMs,
      // How often Node checks for clients past their header/request deadlines (default 30 s).
      connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
    },
  });

  const hostAllowed = createHostGuard({ bindHost: config.host, allowedHosts: config.allowedHosts });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });

  const { hsts } = options;
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id).headers(SECURITY_HEADERS);
    if (hsts && hsts.isHttps(request)) reply.header('strict-transport-security', hsts.header);
    if (closing) {
      reply.header('connection', 'close');
      throw new HttpError(503, 'shutting_down', 'Palisade is shutting down; retry in a moment');
    }
    if (!hostAllowed(request.headers.host)) {
      throw new HttpError(
        403,
        'host_not_allowed',
        'this Host is not served here (DNS-rebinding guard); add the name to PALISADE_ALLOWED_HOSTS to allow it',
      );
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const seconds = reply.elapsedTime / 1000;
    metrics.observeRequest(route, reply.statusCode, seconds);
    request.log.info(
      {
        method: request.method,
        path: request.url.split('?', 1)[0],
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        ip: request.ip,
        key_id: request.apiKey?.id,
        user_id: request.user?.id,
        upstream: request.upstream ?? undefined,
      },
      'request',
    );
  });

  app.setErrorHandler(createErrorHandler(config.bodyLimit, errorBodyFor));

  app.setNotFoundHandler((request, reply) =>
    sendError(
      request,
      reply,
      new HttpError(
        404,
        'not_found',
        `no route for ${request.method} ${request.url.split('?', 1)[0]}`,
      ),
      errorBodyFor(request),
    ),
  );

  app.get('/healthz', async () => {
    const upstreams = options.gateway.registry.list();
    return {
      status: upstreams.some((u) => u.healthy) ? 'ok' : 'degraded',
      version: options.version,
      uptime_s: Math.floor((Date.now() - options.startedAt) / 1000),
      active_jobs: options.activeJobs?.() ?? 0,
      upstreams: upstreams.map((u) => ({
        name: u.name,
        healthy: u.healthy,
        models: u.models.length,
      })),
    };
  });

  app.get('/metrics', async (request, reply) => {
    // Both the peer and, behind a proxy, the forwarded client must be local: a remote client
    // cannot pass by sending X-Forwarded-For: 127.0.0.1, nor a remote user through a local proxy.
    if (!isLocalRequest(request) && !options.isAdminRequest(request.headers)) {
      throw new HttpError(
        403,
        'metrics_forbidden',
        '/metrics is served to loopback clients or with an admin key (palisade keys create NAME --admin)',
      );
    }
    for (const upstream of options.gateway.registry.list()) {
      metrics.upstreamUp.set({ upstream: upstream.name }, upstream.healthy ? 1 : 0);
    }
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.register(
    async (v1) => {
      await v1.register(gateway, { ...options.gateway, metrics });
      for (const face of options.faces ?? []) await v1.register(face);
    },
    { prefix: '/v1' },
  );
  if (options.mesh) app.register(options.mesh, { prefix: '/mesh' });
  if (options.web) {
    const { web } = options;
    app.register(apiScope, {
      ...web.api,
      bodyLimit: Math.min(API_BODY_LIMIT, config.bodyLimit),
      prefix: '/api',
    });
    app.register(webApp, web.root === undefined ? {} : { root: web.root });
  }
  return app;
}

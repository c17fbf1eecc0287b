import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import type { AuditLog } from '../audit/index.js';
import {
  matchesAny,
  type ApiKey,
  type BucketLimits,
  type KeyRing,
  type RateLimiter,
} from '../auth/index.js';
import type { Metrics } from '../server/metrics.js';
import { createAccessCheck } from './access.js';
import { createCorsCheck } from './cors.js';
import { createDispatcher, type Dispatcher } from './dispatch.js';
import { applyPolicy, type Endpoint, type RequestPolicy } from './policy.js';
import { findUsage, openAiSse, readResponse } from './relay.js';
import type { ModelEntry, UpstreamRegistry } from './upstreams.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key that authenticated this request; null when the gateway is open. */
    apiKey: ApiKey | null;
    /** The upstream that served the request, for the access log. */
    upstream: string | null;
  }
  interface FastifyInstance {
    /** Sends OpenAI-format bodies to upstreams; shared with the other /v1 faces. */
    gateway: Dispatcher;
  }
}

export interface GatewayOptions {
  registry: UpstreamRegistry;
  keys: KeyRing;
  limiter: RateLimiter;
  metrics: Metrics;
  audit: AuditLog;
  policy: RequestPolicy;
  exposed: boolean;
  corsOrigins: string[];
  limits: BucketLimits;
  maxStreamsPerKey: number;
  upstreamTimeoutMs: number;
  streamIdleTimeoutMs: number;
  /**
   * Another face's model list format, chosen per request (e.g. Anthropic's when the request
   * carries `anthropic-version`); undefined keeps OpenAI's.
   */
  modelListFormat?: (request: FastifyRequest, models: ModelEntry[]) => unknown;
}

/** Largest non-streaming upstream response relayed (embeddings of a big batch fit easily). */
const RESPONSE_LIMIT = 256 * 1024 * 1024;
/** Usage sits near the end of a completion; big bodies (embeddings) are only searched at the tail. */
const USAGE_WINDOW = 16 * 1024;

const ROUTES: ReadonlyArray<{ url: string; endpoint: Endpoint }> = [
  { url: '/chat/completions', endpoint: 'chat' },
  { url: '/completions', endpoint: 'completion' },
  { url: '/embeddings', endpoint: 'embedding' },
];

/**
 * The OpenAI-compatible gateway, registered under `/v1`: key checks and limits, request
 * policy, routing by model, and the relay (streaming or not) to the chosen upstream.
 * Its hooks and the `gateway` dispatcher apply to the whole `/v1` scope, so other faces
 * registered beside it (Anthropic Messages) get the same door and the same routing.
 *
 * @example
 * app.register(async (v1) => {
 *   await v1.register(gateway, { registry, keys, limiter, ... });
 *   await v1.register(messages, { ... }); // uses v1.gateway.dispatch()
 * }, { prefix: '/v1' });
 */
const gatewayPlugin: FastifyPluginAsync<GatewayOptions> = async (app, options) => {
  const { registry, policy } = options;
  const dispatcher = createDispatcher(options);

  // The wire formats here are JSON only; anything else is a 415 rather than a confusing 400.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('apiKey', null);
  app.decorateRequest('upstream', null);
  app.decorate('gateway', dispatcher);
  app.addHook('onRequest', createCorsCheck(options.corsOrigins));
  app.addHook('onRequest', createAccessCheck(options));

  app.options('/*', async (_request, reply) => reply.code(204).send());

  app.get('/models', async (request) => {
    const patterns = request.apiKey?.modelPatterns ?? null;
    const data = registry.models().filter((m) => patterns === null || matchesAny(m.id, patterns));
    return options.modelListFormat?.(request, data) ?? { object: 'list', data };
  });

  async function relay(
    endpoint: Endpoint,
    path: string,
    request: FastifyRequest,
    reply: FastifyReply,
  ) {
    const body = applyPolicy(endpoint, request.body, policy);
    const dispatched = await dispatcher.dispatch(request, reply, body, path);
    const { upstream, response } = dispatched;

    const contentType = String(response.headers['content-type'] ?? 'application/json');
    if (body.stream === true && contentType.startsWith('text/event-stream')) {
      return dispatcher.sendStream(reply, dispatched, openAiSse(dispatcher.countTokens));
    }
    const payload = await readResponse(
      upstream,
      response.body,
      RESPONSE_LIMIT,
      options.streamIdleTimeoutMs,
    );
    dispatcher.countTokens(
      findUsage(payload.toString('latin1', Math.max(0, payload.length - USAGE_WINDOW))),
    );
    return reply.code(response.statusCode).header('content-type', contentType).send(payload);
  }

  for (const { url, endpoint } of ROUTES) {
    app.post(url, (request, reply) => relay(endpoint, `/v1${url}`, request, reply));
  }
};

export const gateway = fastifyPlugin(gatewayPlugin, { name: 'palisade-gateway', fastify: '5.x' });

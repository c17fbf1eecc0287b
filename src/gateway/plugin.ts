import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { AuditLog } from '../audit/index.js';
import {
  matchesAny,
  type ApiKey,
  type BucketLimits,
  type KeyRing,
  type RateLimiter,
} from '../auth/index.js';
import { HttpError } from '../server/errors.js';
import type { Metrics } from '../server/metrics.js';
import { createAccessCheck, createStreamSlots } from './access.js';
import { createCorsCheck } from './cors.js';
import { applyPolicy, type Endpoint, type RequestPolicy } from './policy.js';
import { findUsage, forward, readCapped, relayStream, upstreamError, type Usage } from './relay.js';
import type { UpstreamRegistry } from './upstreams.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key that authenticated this request; null when the gateway is open. */
    apiKey: ApiKey | null;
    /** The upstream that served the request, for the access log. */
    upstream: string | null;
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
}

/** Largest non-streaming upstream response relayed (embeddings of a big batch fit easily). */
const RESPONSE_LIMIT = 256 * 1024 * 1024;
const USAGE_WINDOW = 16 * 1024;

/** The client hung up before the upstream answered (logged as 499, as nginx does). */
const CLIENT_GONE = new HttpError(499, 'client_closed_request', 'the client closed the connection');

const ROUTES: ReadonlyArray<{ url: string; endpoint: Endpoint }> = [
  { url: '/chat/completions', endpoint: 'chat' },
  { url: '/completions', endpoint: 'completion' },
  { url: '/embeddings', endpoint: 'embedding' },
];

/**
 * The OpenAI-compatible gateway, registered under `/v1`: key checks and limits, request
 * policy, routing by model, and the relay (streaming or not) to the chosen upstream.
 *
 * @example
 * app.register(gateway, { prefix: '/v1', registry, keys, limiter, ... });
 */
export const gateway: FastifyPluginAsync<GatewayOptions> = async (app, options) => {
  const { registry, metrics, policy } = options;
  const streams = createStreamSlots(options.maxStreamsPerKey);

  // OpenAI's wire format is JSON only; anything else is a 415 rather than a confusing 400.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('apiKey', null);
  app.decorateRequest('upstream', null);
  app.addHook('onRequest', createCorsCheck(options.corsOrigins));
  app.addHook('onRequest', createAccessCheck(options));

  app.options('/*', async (_request, reply) => reply.code(204).send());

  app.get('/models', async (request) => {
    const patterns = request.apiKey?.modelPatterns ?? null;
    const data = registry.models().filter((m) => patterns === null || matchesAny(m.id, patterns));
    return { object: 'list', data };
  });

  function countTokens(usage: Usage | undefined) {
    if (!usage) return;
    if (typeof usage.prompt_tokens === 'number')
      metrics.tokens.inc({ kind: 'prompt' }, usage.prompt_tokens);
    if (typeof usage.completion_tokens === 'number') {
      metrics.tokens.inc({ kind: 'completion' }, usage.completion_tokens);
    }
  }

  async function relay(
    endpoint: Endpoint,
    path: string,
    request: FastifyRequest,
    reply: FastifyReply,
  ) {
    const body = applyPolicy(endpoint, request.body, policy);
    const key = request.apiKey;
    if (key?.modelPatterns && !matchesAny(body.model, key.modelPatterns)) {
      throw new HttpError(
        403,
        'model_not_allowed',
        `key "${key.name}" may not use model "${body.model}" (allowed: ${key.models?.join(', ')})`,
      );
    }
    const candidates = registry.candidates(body.model);
    if (candidates.length === 0) {
      throw new HttpError(
        404,
        'model_not_found',
        `model "${body.model}" is not served by any upstream; GET /v1/models lists the models available`,
      );
    }
    const streaming = body.stream === true;
    const release = streaming ? streams.acquire(key) : () => undefined;
    const controller = new AbortController();
    reply.raw.once('close', () => {
      release();
      if (!reply.raw.writableFinished) controller.abort();
    });

    const { upstream, response } = await forward(candidates, {
      path,
      body: JSON.stringify(body),
      signal: controller.signal,
      headersTimeoutMs: options.upstreamTimeoutMs,
      bodyTimeoutMs: options.streamIdleTimeoutMs,
    }).catch((error: unknown) => {
      if (controller.signal.aborted) throw CLIENT_GONE;
      throw error;
    });
    request.upstream = upstream.name;
    if (response.statusCode >= 300) throw await upstreamError(upstream, response);

    const contentType = String(response.headers['content-type'] ?? 'application/json');
    if (streaming && contentType.startsWith('text/event-stream')) {
      metrics.activeStreams.inc();
      reply.raw.once('close', () => metrics.activeStreams.dec());
      return reply
        .header('content-type', 'text/event-stream; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('x-accel-buffering', 'no')
        .send(
          relayStream(response.body, {
            upstreamName: upstream.name,
            idleTimeoutMs: options.streamIdleTimeoutMs,
            signal: controller.signal,
            onUsage: countTokens,
          }),
        );
    }
    const payload = await readCapped(response.body, RESPONSE_LIMIT);
    // Usage sits near the end of a completion; big bodies (embeddings) are only searched at the tail.
    countTokens(findUsage(payload.toString('latin1', Math.max(0, payload.length - USAGE_WINDOW))));
    return reply.code(response.statusCode).header('content-type', contentType).send(payload);
  }

  for (const { url, endpoint } of ROUTES) {
    app.post(url, (request, reply) => relay(endpoint, `/v1${url}`, request, reply));
  }
};

import type { FastifyReply, FastifyRequest } from 'fastify';
import { matchesAny } from '../auth/index.js';
import { HttpError } from '../server/errors.js';
import type { Metrics } from '../server/metrics.js';
import { createStreamSlots } from './access.js';
import type { ForwardBody } from './policy.js';
import {
  ClientGone,
  forward,
  keyFor,
  relayStream,
  upstreamError,
  type StreamTranslation,
  type AbortFlag,
  type Forwarded,
  type Usage,
} from './relay.js';
import type { Upstream, UpstreamRegistry } from './upstreams.js';

export interface DispatchOptions {
  registry: UpstreamRegistry;
  metrics: Metrics;
  maxStreamsPerKey: number;
  upstreamTimeoutMs: number;
  streamIdleTimeoutMs: number;
}

/** Per-request choices of the face calling `dispatch`. */
export interface DispatchCall {
  /** The key to send to an upstream instead of its own (a user's personal key), if any. */
  upstreamApiKey?: (upstream: Upstream) => string | undefined;
}

/** What a face gets back: the upstream's successful response and the signal tied to the client. */
export interface Dispatched extends Forwarded {
  signal: AbortFlag;
}

/** The client hung up before the upstream answered (logged as 499, as nginx does). */
const CLIENT_GONE = new HttpError(499, 'client_closed_request', 'the client closed the connection');

/** A token count an upstream may report: a finite number, not negative. */
function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/** Refuses a model the request's key may not use (403 `model_not_allowed`). */
function assertModelAllowed(request: FastifyRequest, model: string): void {
  const key = request.apiKey;
  if (key?.modelPatterns && !matchesAny(model, key.modelPatterns)) {
    throw new HttpError(
      403,
      'model_not_allowed',
      `key "${key.name}" may not use model "${model}" (allowed: ${key.models?.join(', ')})`,
    );
  }
}

/**
 * Sends a validated OpenAI-format body to an upstream serving its model. Shared by every
 * face that speaks to upstreams (OpenAI routes, Anthropic Messages): the key's model list,
 * routing, the per-key stream cap, abort on client disconnect and upstream error mapping
 * all live here, once.
 */
export function createDispatcher(options: DispatchOptions) {
  const { registry, metrics } = options;
  const streams = createStreamSlots(options.maxStreamsPerKey);

  return {
    assertModelAllowed,
    async dispatch(
      request: FastifyRequest,
      reply: FastifyReply,
      body: ForwardBody,
      path: string,
      call: DispatchCall = {},
    ): Promise<Dispatched> {
      // Null outside the /v1 scope (the web API has no API key).
      const key = request.apiKey ?? null;
      assertModelAllowed(request, body.model);
      const candidates = registry.candidates(body.model);
      if (candidates.length === 0) {
        throw new HttpError(
          404,
          'model_not_found',
          `model "${body.model}" is not served by any upstream; GET /v1/models lists the models available`,
        );
      }
      let release = () => undefined as void;
      if (body.stream === true) {
        try {
          release = streams.acquire(key);
        } catch (error) {
          metrics.rateLimited.inc({ reason: 'streams' });
          throw error;
        }
      }
      const gone = new ClientGone();
      reply.raw.once('close', () => {
        release();
        if (!reply.raw.writableFinished) gone.abort();
      });

      const forwarded = await forward(candidates, {
        path,
        body: JSON.stringify(body),
        signal: gone,
        headersTimeoutMs: options.upstreamTimeoutMs,
        bodyTimeoutMs: options.streamIdleTimeoutMs,
        upstreamApiKey: call.upstreamApiKey,
      }).catch((error: unknown) => {
        if (gone.aborted) throw CLIENT_GONE;
        throw error;
      });
      request.upstream = forwarded.upstream.name;
      if (forwarded.response.statusCode >= 300) {
        throw await upstreamError(
          forwarded.upstream,
          forwarded.response,
          keyFor(forwarded.upstream, call),
        );
      }
      return { ...forwarded, signal: gone };
    },

    /** Adds the tokens an upstream reported to the metrics (nonsense numbers are ignored). */
    countTokens(usage: Usage | undefined): void {
      if (!usage) return;
      const { prompt_tokens: prompt, completion_tokens: completion } = usage;
      if (isCount(prompt)) metrics.tokens.inc({ kind: 'prompt' }, prompt);
      if (isCount(completion)) metrics.tokens.inc({ kind: 'completion' }, completion);
    },

    /**
     * Answers with the upstream's SSE stream, translated for the face, counted in the
     * active-streams gauge until it closes.
     */
    sendStream(reply: FastifyReply, dispatched: Dispatched, translation: StreamTranslation) {
      metrics.activeStreams.inc();
      reply.raw.once('close', () => metrics.activeStreams.dec());
      return reply
        .header('content-type', 'text/event-stream; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('x-accel-buffering', 'no')
        .send(
          relayStream(dispatched.response.body, {
            upstreamName: dispatched.upstream.name,
            idleTimeoutMs: options.streamIdleTimeoutMs,
            signal: dispatched.signal,
            translation,
          }),
        );
    },

    streamIdleTimeoutMs: options.streamIdleTimeoutMs,
  };
}

export type Dispatcher = ReturnType<typeof createDispatcher>;

import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { RequestPolicy, Upstream, UpstreamRegistry } from '../gateway/index.js';
import { applyPolicy, readResponse, type StreamTranslation } from '../gateway/index.js';
import { createErrorHandler, HttpError } from '../server/errors.js';
import { estimateTokens } from './count-tokens.js';
import { anthropicErrorBody } from './errors.js';
import type { ModelMap } from './models.js';
import { parseCountTokensRequest, parseMessagesRequest, toChatCompletions } from './request.js';
import { fromChatCompletion, responseOptions } from './response.js';
import { createSseDecoder, createStreamTranslator } from './stream.js';
import type { CountTokensRequest } from './types.js';

export interface MessagesOptions {
  registry: UpstreamRegistry;
  policy: RequestPolicy;
  /** The current model map (it may change while the server runs). */
  models: () => ModelMap;
  bodyLimit: number;
}

const RESPONSE_LIMIT = 64 * 1024 * 1024;
const TOKENIZE_TIMEOUT_MS = 5_000;

/**
 * Anthropic's Messages API over the gateway: `/v1/messages` and `/v1/messages/count_tokens`,
 * registered beside the OpenAI routes so the same keys, limits, audit and routing apply.
 * Requests are translated to chat completions, sent through `app.gateway.dispatch()`, and
 * the answer (JSON or SSE) translated back. Errors use Anthropic's shape.
 *
 * @example
 * v1.register(messages, { registry, policy, models: createModelMap({ 'claude-*': 'qwen3:8b' }) });
 */
export const messages: FastifyPluginAsync<MessagesOptions> = async (app, options) => {
  const { registry, policy } = options;

  const handleError = createErrorHandler(options.bodyLimit, () => anthropicErrorBody);
  app.setErrorHandler((error, request, reply) => {
    reply.header('request-id', request.id);
    return handleError(error, request, reply);
  });
  // Anthropic's SDK reads the id from `request-id` (x-request-id is set for every route).
  app.addHook('onRequest', async (request, reply) => {
    reply.header('request-id', request.id);
  });

  /** The local model for the name an Anthropic client asked for, or a 404 naming the fix. */
  function localModel(name: string): string {
    const model = options.models().resolve(name, (m) => registry.serves(m));
    if (model === undefined) {
      throw new HttpError(
        404,
        'not_found_error',
        `model "${name}" is not a local model and has no mapping; map it with palisade anthropic map 'claude-*' MODEL or PALISADE_ANTHROPIC_MODELS or ask for a model GET /v1/models lists`,
      );
    }
    return model;
  }

  app.post('/messages', async (request, reply) => {
    const req = parseMessagesRequest(request.body);
    const body = applyPolicy('chat', toChatCompletions(req, localModel(req.model)), policy);
    const dispatcher = app.gateway;
    const dispatched = await dispatcher.dispatch(request, reply, body, '/v1/chat/completions');
    const { upstream, response } = dispatched;
    const options = responseOptions(req);
    const contentType = String(response.headers['content-type'] ?? '');

    if (req.stream === true && contentType.startsWith('text/event-stream')) {
      const translator = createStreamTranslator({
        ...options,
        inputTokens: estimateTokens(req),
        requestId: request.id,
      });
      const decoder = createSseDecoder();
      const translation: StreamTranslation = {
        start: () => translator.start().join(''),
        push(bytes) {
          const frames: string[] = [];
          for (const chunk of decoder.push(bytes)) {
            countUsage(chunk);
            frames.push(...translator.push(chunk));
          }
          return frames.join('');
        },
        finish() {
          const frames: string[] = [];
          for (const chunk of decoder.end()) frames.push(...translator.push(chunk));
          frames.push(...translator.finish());
          return frames.join('');
        },
        fail: (message, idle) =>
          translator.error(message, idle ? 'overloaded_error' : 'api_error').join(''),
      };
      return dispatcher.sendStream(reply, dispatched, translation);
    }

    const payload = await readResponse(
      upstream,
      response.body,
      RESPONSE_LIMIT,
      dispatcher.streamIdleTimeoutMs,
    );
    let completion: unknown;
    try {
      completion = JSON.parse(payload.toString('utf8'));
    } catch {
      throw new HttpError(502, 'upstream_error', `upstream ${upstream.name} did not answer JSON`);
    }
    countUsage(completion);
    return reply.send(fromChatCompletion(completion, options));
  });

  function countUsage(chunk: unknown) {
    const usage = (chunk as { usage?: unknown } | null)?.usage;
    if (typeof usage === 'object' && usage !== null) app.gateway.countTokens(usage);
  }

  app.post('/messages/count_tokens', async (request) => {
    const req = parseCountTokensRequest(request.body);
    const model = localModel(req.model);
    app.gateway.assertModelAllowed(request, model);
    const counted = await countWithTokenizer(req, model, request, registry);
    return { input_tokens: counted ?? estimateTokens(req) };
  });
};

/** POSTs JSON to an upstream path other than the OpenAI routes; undefined unless it answers 200 JSON. */
async function upstreamJson(upstream: Upstream, path: string, body: unknown): Promise<unknown> {
  const response = await upstream.pool.request({
    method: 'POST',
    path: `${upstream.basePath}${path}`,
    headers: {
      'content-type': 'application/json',
      ...(upstream.apiKey ? { authorization: `Bearer ${upstream.apiKey}` } : {}),
    },
    body: JSON.stringify(body),
    headersTimeout: TOKENIZE_TIMEOUT_MS,
    bodyTimeout: TOKENIZE_TIMEOUT_MS,
  });
  const text = await readResponse(upstream, response.body, 16 * 1024 * 1024, TOKENIZE_TIMEOUT_MS);
  if (response.statusCode !== 200) return undefined;
  return JSON.parse(text.toString('utf8')) as unknown;
}

/** Upstreams that answered without a chat-template endpoint: not asked again (not llama.cpp). */
const NO_TOKENIZER = new WeakSet<Upstream>();

/**
 * Counts with the upstream's own tokenizer where it has one: llama.cpp renders the chat
 * template (`/apply-template`) and tokenizes the prompt (`/tokenize`). Undefined when no
 * upstream serving the model offers that, so the caller falls back to the estimate.
 */
async function countWithTokenizer(
  req: CountTokensRequest,
  model: string,
  request: FastifyRequest,
  registry: UpstreamRegistry,
): Promise<number | undefined> {
  const chat = toChatCompletions(req, model) as { messages?: unknown[]; tools?: unknown[] };
  for (const upstream of registry.candidates(model)) {
    if (!upstream.healthy || NO_TOKENIZER.has(upstream)) continue;
    try {
      const rendered = (await upstreamJson(upstream, '/apply-template', {
        messages: chat.messages,
        ...(chat.tools ? { tools: chat.tools } : {}),
      })) as { prompt?: unknown } | undefined;
      if (typeof rendered?.prompt !== 'string') {
        NO_TOKENIZER.add(upstream);
        continue;
      }
      const tokenized = (await upstreamJson(upstream, '/tokenize', {
        content: rendered.prompt,
        add_special: true,
      })) as { tokens?: unknown } | undefined;
      if (Array.isArray(tokenized?.tokens)) return tokenized.tokens.length;
    } catch (error) {
      request.log.debug({ upstream: upstream.name, err: (error as Error).message }, 'no tokenizer');
    }
  }
  return undefined;
}

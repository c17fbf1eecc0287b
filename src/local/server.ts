/**
 * The embedded models as an OpenAI-compatible server on a loopback port, which the gateway
 * registers as the upstream `local`. Going through the gateway's own upstream path means
 * keys, limits, policy, audit and metrics apply unchanged. The port takes only requests that
 * carry a random token the gateway holds, so nothing else on the machine can skip the gateway.
 */
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Catalog, LocalModel } from './catalog.js';
import { ContextLengthError, type ChatTurn, type Engine, type Generated } from './engine.js';
import { GgufError } from './gguf.js';
import { ModelProbeError } from './probe.js';
import { QueueFullError } from './queue.js';

export interface LocalServerOptions {
  logger: Logger;
  engine: Engine;
  catalog: Catalog;
  bodyLimit: number;
  /** Largest max_tokens, and what an absent one becomes (the gateway has clamped it already). */
  maxTokens: number;
}

export interface LocalServer {
  url: string;
  token: string;
  close(): Promise<void>;
}

class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param?: string,
  ) {
    super(message);
  }
}

const text = z.string().max(50_000_000);
const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const samplingFields = {
  model: z.string().min(1).max(256),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  n: z
    .number()
    .int()
    .min(1)
    .max(1, 'the embedded model answers with one choice (n must be 1)')
    .nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
};
const chatSchema = z.looseObject({
  ...samplingFields,
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
        content: z.union([text, z.array(contentPart), z.null()]).optional(),
      }),
    )
    .min(1),
});
const completionSchema = z.looseObject({
  ...samplingFields,
  prompt: z.union([text, z.array(text).length(1, 'the embedded model takes one prompt')]),
});
const embeddingSchema = z.looseObject({
  model: z.string().min(1).max(256),
  input: z.union([text, z.array(text).min(1).max(2048)]),
  encoding_format: z.enum(['float', 'base64']).optional(),
});

export async function startLocalServer(options: LocalServerOptions): Promise<LocalServer> {
  const token = randomBytes(32).toString('base64url');
  const expected = Buffer.from(`Bearer ${token}`);

  const server = createServer((request, response) => {
    void handle(request, response).catch((error: unknown) => {
      logFailure(options.logger, error);
      sendError(response, error);
    });
  });
  server.keepAliveTimeout = 15_000;

  async function handle(request: IncomingMessage, response: ServerResponse) {
    const presented = Buffer.from(request.headers.authorization ?? '');
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      throw new RequestError(401, 'invalid_api_key', 'this port serves the Palisade gateway only');
    }
    const path = (request.url ?? '/').split('?')[0];
    if (request.method === 'GET' && path === '/v1/models') {
      const models = await options.catalog.list();
      return sendJson(response, 200, {
        object: 'list',
        data: models.map((m) => ({
          id: m.id,
          object: 'model',
          created: Math.floor(m.modifiedMs / 1000),
          owned_by: 'local',
        })),
      });
    }
    if (request.method !== 'POST') throw new RequestError(404, 'not_found', `no route ${path}`);
    const abort = new AbortController();
    // The gateway closes its connection when its client goes away: stop generating then.
    response.on('close', () => {
      if (!response.writableFinished) abort.abort(new Error('client closed the connection'));
    });
    const body = await readJson(request, options.bodyLimit);
    if (path === '/v1/chat/completions') return chat(body, response, abort.signal);
    if (path === '/v1/completions') return complete(body, response, abort.signal);
    if (path === '/v1/embeddings') return embed(body, response, abort.signal);
    throw new RequestError(404, 'not_found', `no route ${path}`);
  }

  async function resolveModel(name: string): Promise<LocalModel> {
    const models = await options.catalog.list();
    const found = models.find((m) => m.id === name);
    if (found) return found;
    // Like llama.cpp, a lone model answers to any name.
    if (models.length === 1) return models[0] as LocalModel;
    throw new RequestError(
      404,
      'model_not_found',
      models.length === 0
        ? 'no local model is installed: palisade models pull URL, or serve --model FILE.gguf'
        : `no local model "${name}"; installed: ${models.map((m) => m.id).join(', ')}`,
      'model',
    );
  }

  function samplingOf(body: z.infer<typeof completionSchema> | z.infer<typeof chatSchema>) {
    const stop = body.stop == null ? [] : Array.isArray(body.stop) ? body.stop : [body.stop];
    return {
      maxTokens: Math.min(
        body.max_completion_tokens ?? body.max_tokens ?? options.maxTokens,
        options.maxTokens,
      ),
      ...(body.temperature != null ? { temperature: body.temperature } : {}),
      ...(body.top_p != null ? { topP: body.top_p } : {}),
      ...(body.seed != null ? { seed: body.seed } : {}),
      stop: stop.filter((s) => s.length > 0),
    };
  }

  async function chat(raw: unknown, response: ServerResponse, signal: AbortSignal) {
    const body = parse(chatSchema, raw);
    const model = await resolveModel(body.model);
    const turns: ChatTurn[] = body.messages.map((message) => ({
      role:
        message.role === 'developer' ? 'system' : message.role === 'tool' ? 'user' : message.role,
      text: contentText(message.content),
    }));
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const sampling = samplingOf(body);
    if (!body.stream) {
      const result = await options.engine.chat(model, turns, { ...sampling, signal });
      if (result.cancelled) return;
      return sendJson(response, 200, {
        id,
        object: 'chat.completion',
        created,
        model: model.id,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: result.text },
            finish_reason: result.finishReason,
          },
        ],
        usage: usageOf(result),
      });
    }
    const chunk = (delta: object, finish: string | null) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: model.id,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    await stream(options.logger, response, body.stream_options?.include_usage === true, {
      first: chunk({ role: 'assistant', content: '' }, null),
      piece: (text) => chunk({ content: text }, null),
      last: (result) => chunk({}, result.finishReason),
      usage: (result) => ({
        id,
        object: 'chat.completion.chunk',
        created,
        model: model.id,
        choices: [],
        usage: usageOf(result),
      }),
      run: (onText) => options.engine.chat(model, turns, { ...sampling, signal, onText }),
    });
  }

  async function complete(raw: unknown, response: ServerResponse, signal: AbortSignal) {
    const body = parse(completionSchema, raw);
    const model = await resolveModel(body.model);
    const prompt = Array.isArray(body.prompt) ? (body.prompt[0] as string) : body.prompt;
    const id = `cmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const sampling = samplingOf(body);
    const choice = (textPiece: string, finish: string | null) => ({
      id,
      object: 'text_completion',
      created,
      model: model.id,
      choices: [{ index: 0, text: textPiece, logprobs: null, finish_reason: finish }],
    });
    if (!body.stream) {
      const result = await options.engine.complete(model, prompt, { ...sampling, signal });
      if (result.cancelled) return;
      return sendJson(response, 200, {
        ...choice(result.text, result.finishReason),
        usage: usageOf(result),
      });
    }
    await stream(options.logger, response, body.stream_options?.include_usage === true, {
      piece: (textPiece) => choice(textPiece, null),
      last: (result) => choice('', result.finishReason),
      usage: (result) => ({
        id,
        object: 'text_completion',
        created,
        model: model.id,
        choices: [],
        usage: usageOf(result),
      }),
      run: (onText) => options.engine.complete(model, prompt, { ...sampling, signal, onText }),
    });
  }

  async function embed(raw: unknown, response: ServerResponse, signal: AbortSignal) {
    const body = parse(embeddingSchema, raw);
    const model = await resolveModel(body.model);
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const { vectors, promptTokens } = await options.engine.embed(model, inputs, signal);
    sendJson(response, 200, {
      object: 'list',
      model: model.id,
      data: vectors.map((vector, index) => ({
        object: 'embedding',
        index,
        embedding:
          body.encoding_format === 'base64'
            ? Buffer.from(new Float32Array(vector).buffer).toString('base64')
            : vector,
      })),
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Writes an SSE answer: headers at once, then each piece as it is generated. */
async function stream(
  logger: Logger,
  response: ServerResponse,
  includeUsage: boolean,
  frames: {
    first?: object;
    piece: (text: string) => object;
    last: (result: Generated) => object;
    usage: (result: Generated) => object;
    run: (onText: (text: string) => void) => Promise<Generated>;
  },
) {
  let started = false;
  const send = (frame: object) => {
    if (!started) {
      response.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
      });
      started = true;
      if (frames.first) response.write(`data: ${JSON.stringify(frames.first)}\n\n`);
    }
    response.write(`data: ${JSON.stringify(frame)}\n\n`);
  };
  try {
    const result = await frames.run((piece) => send(frames.piece(piece)));
    if (result.cancelled) return void response.destroy();
    send(frames.last(result));
    if (includeUsage) send(frames.usage(result));
    response.end('data: [DONE]\n\n');
  } catch (error) {
    if (!started) throw error;
    logFailure(logger, error);
    const { status, body } = errorBody(error);
    response.end(`data: ${JSON.stringify({ ...body, status })}\n\n`);
  }
}

function usageOf(result: Generated) {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    total_tokens: result.promptTokens + result.completionTokens,
  };
}

function contentText(content: string | Array<{ type: string; text?: string }> | null | undefined) {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content
    .map((part) => {
      if (part.type === 'text' || part.type === 'input_text') return part.text ?? '';
      throw new RequestError(
        400,
        'unsupported_content',
        `the embedded model takes text only; a "${part.type}" part was sent`,
        'messages',
      );
    })
    .join('');
}

function parse<T extends z.ZodType>(schema: T, raw: unknown): z.infer<T> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = issue?.path.join('.') ?? '';
  throw new RequestError(
    400,
    'invalid_request',
    `${param || 'body'}: ${issue?.message ?? 'invalid'}`,
    param,
  );
}

async function readJson(request: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit)
      throw new RequestError(413, 'body_too_large', `the body is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new RequestError(400, 'invalid_json', 'the body is not valid JSON');
  }
}

function errorBody(error: unknown): { status: number; body: object } {
  let status = 500;
  let code = 'local_model_error';
  let message = error instanceof Error ? error.message : String(error);
  let param: string | null = null;
  if (error instanceof RequestError) {
    status = error.status;
    code = error.code;
    param = error.param ?? null;
  } else if (error instanceof QueueFullError) {
    status = 503;
    code = 'local_queue_full';
    message = `the embedded model is busy (${message}); retry shortly, or raise PALISADE_LOCAL_QUEUE`;
  } else if (error instanceof ContextLengthError) {
    status = 400;
    code = 'context_length_exceeded';
  } else if (error instanceof GgufError) {
    code = 'model_invalid';
    message = `the model file is not valid GGUF: ${message}`;
  } else if (error instanceof ModelProbeError) {
    code = 'model_invalid';
    message = `the model file cannot be served: ${message}`;
  } else {
    // Anything else may carry paths or internals: the detail goes to the server log only.
    message = 'the embedded model failed to answer; the server log has the reason';
  }
  return {
    status,
    body: {
      error: {
        message,
        type: status >= 500 ? 'server_error' : 'invalid_request_error',
        code,
        param,
      },
    },
  };
}

function sendJson(
  response: ServerResponse,
  status: number,
  body: object,
  headers: Record<string, string> = {},
) {
  const payload = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  response.end(payload);
}

/** Failures that are not the client's or the queue's go to the log, with their detail. */
function logFailure(logger: Logger, error: unknown) {
  if (errorBody(error).status >= 500 && !(error instanceof QueueFullError)) {
    logger.error({ err: error }, 'embedded model request failed');
  }
}

function sendError(response: ServerResponse, error: unknown) {
  if (response.headersSent) return void response.destroy();
  const { status, body } = errorBody(error);
  sendJson(response, status, body, status === 503 ? { 'retry-after': '1' } : {});
}

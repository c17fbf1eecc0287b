/**
 * A real `node:http` server speaking the OpenAI wire format (JSON and SSE), used by the
 * integration tests and the benchmarks. Response bodies are built once per (route, model,
 * options) and reused, so the mock stays cheap under load.
 *
 * Behaviour switches by the requested `model`:
 * - `error-400`: 400 OpenAI error; `error-500`: 500 plain text `upstream exploded`
 * - `slow-headers`: waits 2 s before sending anything
 * - `stall-stream`: sends the role chunk, then nothing until the client goes
 * - `endless-stream`: a content chunk every 20 ms until the client goes
 * - `not-json`: 200 `<html>oops</html>` as text/html
 *
 * @example
 * const upstream = await startMockUpstream({ apiKey: 'sk-test' });
 * // ... point the gateway at upstream.url, then inspect upstream.requests
 * await upstream.close();
 */
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body, or undefined when there was none or it was not JSON. */
  body: unknown;
}

export interface MockUpstream {
  /** `http://127.0.0.1:PORT`, without a trailing slash or `/v1`. */
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Streaming responses currently open. */
  openStreams: number;
  /** Streaming responses whose connection closed before the stream ended. */
  abortedStreams: number;
  close(): Promise<void>;
}

export interface MockUpstreamOptions {
  /** Listed by `GET /v1/models`; default `['mock-small', 'mock-large']`. */
  models?: string[];
  /** When set, requests without `Authorization: Bearer <apiKey>` get a 401 OpenAI error. */
  apiKey?: string;
  /** Content deltas per streamed choice; default 5. */
  streamChunks?: number;
  /** Pause between streamed events; default 0 (the whole stream is written at once). */
  chunkDelayMs?: number;
  /** Keep every request in `requests`; default true, benchmarks pass false. */
  record?: boolean;
  port?: number;
  /**
   * Scripted answers by model name: `json` for a non-streaming chat request, `chunks` (each
   * a `chat.completion.chunk`) sent as SSE then `[DONE]` for a streaming one.
   */
  scripts?: Record<string, MockScript>;
  /**
   * A scripted answer chosen per chat request (its model and parsed body), before `scripts`:
   * undefined lets the request through. E.g. `tool_calls` chunks first, then a text answer
   * once the request carries a `tool` message.
   */
  scriptFor?: (request: { model: string; body: Record<string, unknown> }) => MockScript | undefined;
  /** Serve llama.cpp's `/apply-template` and `/tokenize` (one token per 4 characters). */
  tokenizer?: boolean;
}

/** A scripted chat answer: see `MockUpstreamOptions.scripts`. */
export interface MockScript {
  json?: unknown;
  chunks?: unknown[];
  status?: number;
}

const ENDLESS_INTERVAL_MS = 20;
const SLOW_HEADERS_MS = 2000;
const BODY_LIMIT = 64 * 1024 * 1024;
const CACHE_LIMIT = 512;
const EMBEDDING_DIMENSIONS = 8;
const PROMPT_TOKENS = 8;
const MAX_CHOICES = 128;

type Json = Record<string, unknown>;

interface Settings {
  models: string[];
  authorization: string | undefined;
  streamChunks: number;
  chunkDelayMs: number;
  record: boolean;
  created: number;
  scripts: NonNullable<MockUpstreamOptions['scripts']>;
  scriptFor: MockUpstreamOptions['scriptFor'];
  tokenizer: boolean;
}

interface Context {
  settings: Settings;
  state: MockUpstream;
  timers: Set<NodeJS.Timeout>;
  streams: Set<http.ServerResponse>;
  cache: Map<string, Buffer | string[]>;
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const settings: Settings = {
    models: options.models ?? ['mock-small', 'mock-large'],
    authorization: options.apiKey === undefined ? undefined : `Bearer ${options.apiKey}`,
    streamChunks: Math.max(1, options.streamChunks ?? 5),
    chunkDelayMs: Math.max(0, options.chunkDelayMs ?? 0),
    record: options.record ?? true,
    created: Math.floor(Date.now() / 1000),
    scripts: options.scripts ?? {},
    scriptFor: options.scriptFor,
    tokenizer: options.tokenizer ?? false,
  };
  const server = http.createServer({ keepAlive: true, noDelay: true });
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;
  server.requestTimeout = 0;

  const timers = new Set<NodeJS.Timeout>();
  const state: MockUpstream = {
    url: '',
    port: 0,
    requests: [],
    openStreams: 0,
    abortedStreams: 0,
    close: () => closeServer(ctx, server),
  };
  const ctx: Context = { settings, state, timers, streams: new Set(), cache: new Map() };
  server.on('request', (req, res) => receive(ctx, req, res));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}`;
  return state;
}

/** Resolves once the port is free and every open stream has been counted as closed. */
async function closeServer(ctx: Context, server: http.Server): Promise<void> {
  for (const timer of ctx.timers) clearTimeout(timer);
  ctx.timers.clear();
  const streamsClosed = [...ctx.streams].map((res) => once(res, 'close'));
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  await Promise.all(streamsClosed);
}

// ---------------------------------------------------------------- request intake

function receive(ctx: Context, req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= BODY_LIMIT) chunks.push(chunk);
  });
  req.on('end', () => {
    if (size > BODY_LIMIT) {
      sendError(res, 413, 'Request body too large.', null);
      return;
    }
    handle(ctx, req, res, chunks.length === 0 ? undefined : Buffer.concat(chunks));
  });
  req.on('error', () => res.destroy());
}

function parseBody(raw: Buffer | undefined): { ok: boolean; body: unknown } {
  if (raw === undefined || raw.length === 0) return { ok: true, body: undefined };
  try {
    return { ok: true, body: JSON.parse(raw.toString('utf8')) as unknown };
  } catch {
    return { ok: false, body: undefined };
  }
}

function handle(
  ctx: Context,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  raw: Buffer | undefined,
): void {
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const parsed = parseBody(raw);
  if (ctx.settings.record) {
    ctx.state.requests.push({ method, path, headers: req.headers, body: parsed.body });
  }
  if (
    ctx.settings.authorization !== undefined &&
    req.headers.authorization !== ctx.settings.authorization
  ) {
    sendError(res, 401, 'Incorrect API key provided.', 'invalid_api_key');
    return;
  }
  const route = `${method} ${path}`;
  if (route === 'GET /v1/models') {
    sendModels(ctx, res);
    return;
  }
  if (ctx.settings.tokenizer && (route === 'POST /apply-template' || route === 'POST /tokenize')) {
    const input = isObject(parsed.body) ? parsed.body : {};
    if (route === 'POST /apply-template') {
      sendJson(res, 200, { prompt: JSON.stringify(input.messages ?? []) });
    } else {
      const content = typeof input.content === 'string' ? input.content : '';
      sendJson(res, 200, {
        tokens: Array.from({ length: Math.ceil(content.length / 4) }, (_, i) => i),
      });
    }
    return;
  }
  const kind = POST_ROUTES[route];
  if (kind === undefined) {
    sendError(res, 404, `Unknown request URL: ${route}. Please check the URL.`, 'unknown_url');
    return;
  }
  if (!parsed.ok || !isObject(parsed.body)) {
    sendError(res, 400, 'We could not parse the JSON body of your request.', null);
    return;
  }
  const model = parsed.body.model;
  if (typeof model !== 'string' || model === '') {
    sendError(res, 400, 'you must provide a model parameter', null);
    return;
  }
  dispatch(ctx, res, kind, model, parsed.body);
}

type RouteKind = 'chat' | 'completion' | 'embedding';

const POST_ROUTES: Record<string, RouteKind | undefined> = {
  'POST /v1/chat/completions': 'chat',
  'POST /v1/completions': 'completion',
  'POST /v1/embeddings': 'embedding',
};

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------- behaviours

function dispatch(
  ctx: Context,
  res: http.ServerResponse,
  kind: RouteKind,
  model: string,
  body: Json,
): void {
  const script =
    kind === 'chat'
      ? (ctx.settings.scriptFor?.({ model, body }) ?? ctx.settings.scripts[model])
      : undefined;
  if (script !== undefined) {
    if (body.stream === true && script.chunks) {
      const events = script.chunks.map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`);
      sendStream(ctx, res, [...events, 'data: [DONE]\n\n']);
    } else {
      sendJson(res, script.status ?? 200, script.json ?? {});
    }
    return;
  }
  switch (model) {
    case 'error-400':
      sendError(res, 400, 'bad thing', 'bad');
      return;
    case 'error-500':
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('upstream exploded');
      return;
    case 'not-json':
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<html>oops</html>');
      return;
    case 'slow-headers':
      later(ctx, res, SLOW_HEADERS_MS, () => respond(ctx, res, kind, model, body));
      return;
    default:
      respond(ctx, res, kind, model, body);
  }
}

/** Runs `fn` after `ms` unless the client has gone by then. */
function later(ctx: Context, res: http.ServerResponse, ms: number, fn: () => void): void {
  const timer = setTimeout(() => {
    ctx.timers.delete(timer);
    if (!res.destroyed) fn();
  }, ms);
  ctx.timers.add(timer);
  res.once('close', () => {
    clearTimeout(timer);
    ctx.timers.delete(timer);
  });
}

function respond(
  ctx: Context,
  res: http.ServerResponse,
  kind: RouteKind,
  model: string,
  body: Json,
): void {
  if (kind === 'embedding') {
    sendJson(res, 200, embeddingResponse(model, body));
    return;
  }
  const n = choiceCount(body.n);
  if (model === 'stall-stream' || model === 'endless-stream') {
    openEndlessStream(ctx, res, kind, model, n, model === 'endless-stream');
    return;
  }
  if (body.stream === true) {
    const includeUsage =
      isObject(body.stream_options) && body.stream_options.include_usage === true;
    const events = cached(ctx, `s\0${kind}\0${model}\0${n}\0${includeUsage}`, () =>
      streamEvents(ctx.settings, kind, model, n, includeUsage),
    );
    sendStream(ctx, res, events);
    return;
  }
  const json = cached(ctx, `j\0${kind}\0${model}\0${n}`, () =>
    Buffer.from(JSON.stringify(completionBody(ctx.settings, kind, model, n))),
  );
  sendBuffer(res, 200, json);
}

function choiceCount(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) return 1;
  return Math.min(n, MAX_CHOICES);
}

function cached<T extends Buffer | string[]>(ctx: Context, key: string, build: () => T): T {
  const hit = ctx.cache.get(key);
  if (hit !== undefined) return hit as T;
  const value = build();
  if (ctx.cache.size < CACHE_LIMIT) ctx.cache.set(key, value);
  return value;
}

// ---------------------------------------------------------------- bodies

function replyText(model: string): string {
  return `Hello from ${model}`;
}

/** Splits the reply into `count` consecutive pieces (empty only when count > its length). */
function replyPieces(model: string, count: number): string[] {
  const text = replyText(model);
  const pieces: string[] = [];
  for (let i = 0; i < count; i++) {
    pieces.push(
      text.slice(
        Math.floor((i * text.length) / count),
        Math.floor(((i + 1) * text.length) / count),
      ),
    );
  }
  return pieces;
}

function usage(completionTokens: number): Json {
  return {
    prompt_tokens: PROMPT_TOKENS,
    completion_tokens: completionTokens,
    total_tokens: PROMPT_TOKENS + completionTokens,
  };
}

function completionBody(
  settings: Settings,
  kind: 'chat' | 'completion',
  model: string,
  n: number,
): Json {
  const text = replyText(model);
  const choices = Array.from({ length: n }, (_, index) =>
    kind === 'chat'
      ? {
          index,
          message: { role: 'assistant', content: text, refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        }
      : { index, text, logprobs: null, finish_reason: 'stop' },
  );
  return {
    id: kind === 'chat' ? 'chatcmpl-mock' : 'cmpl-mock',
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: settings.created,
    model,
    system_fingerprint: 'fp_mock',
    choices,
    usage: usage(settings.streamChunks * n),
  };
}

/** Builds one SSE event per chunk for a (kind, model) stream. */
function chunkMaker(
  settings: Settings,
  kind: 'chat' | 'completion',
  model: string,
  includeUsage: boolean,
) {
  const head = {
    id: kind === 'chat' ? 'chatcmpl-mock' : 'cmpl-mock',
    object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: settings.created,
    model,
    system_fingerprint: 'fp_mock',
  };
  return (index: number, delta: Json | undefined, text: string, finish: string | null): string => {
    const choice =
      kind === 'chat'
        ? { index, delta: delta ?? { content: text }, logprobs: null, finish_reason: finish }
        : { index, text, logprobs: null, finish_reason: finish };
    const chunk = includeUsage
      ? { ...head, choices: [choice], usage: null }
      : { ...head, choices: [choice] };
    return sse(chunk);
  };
}

function sse(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

const DONE = 'data: [DONE]\n\n';

function streamEvents(
  settings: Settings,
  kind: 'chat' | 'completion',
  model: string,
  n: number,
  includeUsage: boolean,
): string[] {
  const chunk = chunkMaker(settings, kind, model, includeUsage);
  const indexes = Array.from({ length: n }, (_, i) => i);
  const events: string[] = [];
  if (kind === 'chat') {
    for (const i of indexes) events.push(chunk(i, { role: 'assistant', content: '' }, '', null));
  }
  for (const piece of replyPieces(model, settings.streamChunks)) {
    for (const i of indexes) events.push(chunk(i, undefined, piece, null));
  }
  for (const i of indexes) events.push(chunk(i, kind === 'chat' ? {} : undefined, '', 'stop'));
  if (includeUsage) {
    events.push(
      sse({
        id: kind === 'chat' ? 'chatcmpl-mock' : 'cmpl-mock',
        object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
        created: settings.created,
        model,
        system_fingerprint: 'fp_mock',
        choices: [],
        usage: usage(settings.streamChunks * n),
      }),
    );
  }
  events.push(DONE);
  return events;
}

function embeddingResponse(model: string, body: Json): Json {
  const inputs = embeddingInputs(body.input);
  const base64 = body.encoding_format === 'base64';
  const data = inputs.map((input, index) => {
    const vector = embed(input);
    return {
      object: 'embedding',
      index,
      embedding: base64 ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector,
    };
  });
  const tokens = inputs.reduce((sum, input) => sum + Math.max(1, Math.ceil(input.length / 4)), 0);
  return { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}

/** OpenAI accepts a string, a token array, or an array of either. */
function embeddingInputs(input: unknown): string[] {
  if (!Array.isArray(input))
    return [typeof input === 'string' ? input : JSON.stringify(input ?? '')];
  if (input.length > 0 && typeof input[0] === 'number') return [JSON.stringify(input)];
  return input.map((item) => (typeof item === 'string' ? item : JSON.stringify(item)));
}

/** A deterministic unit vector derived from the text (FNV-1a seed, xorshift stream). */
function embed(text: string): number[] {
  let seed = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 0x01000193);
  const values: number[] = [];
  for (let i = 0; i < EMBEDDING_DIMENSIONS; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    values.push(((seed >>> 0) / 0xffffffff) * 2 - 1);
  }
  const norm = Math.hypot(...values) || 1;
  return values.map((v) => Math.fround(v / norm));
}

function sendModels(ctx: Context, res: http.ServerResponse): void {
  const body = cached(ctx, 'models', () =>
    Buffer.from(
      JSON.stringify({
        object: 'list',
        data: ctx.settings.models.map((id) => ({
          id,
          object: 'model',
          created: ctx.settings.created,
          owned_by: 'mock',
        })),
      }),
    ),
  );
  sendBuffer(res, 200, body);
}

// ---------------------------------------------------------------- writers

function sendBuffer(res: http.ServerResponse, status: number, body: Buffer): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  sendBuffer(res, status, Buffer.from(JSON.stringify(body)));
}

function sendError(
  res: http.ServerResponse,
  status: number,
  message: string,
  code: string | null,
): void {
  sendJson(res, status, { error: { message, type: 'invalid_request_error', param: null, code } });
}

/** Sends SSE headers and keeps the stream counters right however the stream ends. */
function beginStream(ctx: Context, res: http.ServerResponse): void {
  ctx.state.openStreams++;
  ctx.streams.add(res);
  res.once('close', () => {
    ctx.streams.delete(res);
    ctx.state.openStreams--;
    if (!res.writableFinished) ctx.state.abortedStreams++;
  });
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
  });
}

function sendStream(ctx: Context, res: http.ServerResponse, events: string[]): void {
  beginStream(ctx, res);
  if (ctx.settings.chunkDelayMs === 0) {
    res.end(events.join(''));
    return;
  }
  res.write(events[0] ?? '');
  let at = 1;
  const timer = setInterval(() => {
    const event = events[at++];
    if (event === undefined) {
      clearInterval(timer);
      ctx.timers.delete(timer);
      res.end();
      return;
    }
    res.write(event);
  }, ctx.settings.chunkDelayMs);
  ctx.timers.add(timer);
  res.once('close', () => {
    clearInterval(timer);
    ctx.timers.delete(timer);
  });
}

/** `stall-stream` and `endless-stream`: they end only when the client disconnects. */
function openEndlessStream(
  ctx: Context,
  res: http.ServerResponse,
  kind: 'chat' | 'completion',
  model: string,
  n: number,
  ticking: boolean,
): void {
  const chunk = chunkMaker(ctx.settings, kind, model, false);
  const first = Array.from({ length: n }, (_, i) =>
    kind === 'chat'
      ? chunk(i, { role: 'assistant', content: '' }, '', null)
      : chunk(i, undefined, '', null),
  ).join('');
  beginStream(ctx, res);
  res.write(first);
  if (!ticking) return;
  const tick = Array.from({ length: n }, (_, i) => chunk(i, undefined, 'tick ', null)).join('');
  const timer = setInterval(() => res.write(tick), ENDLESS_INTERVAL_MS);
  ctx.timers.add(timer);
  res.once('close', () => {
    clearInterval(timer);
    ctx.timers.delete(timer);
  });
}

import { EventEmitter } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { HttpError } from '../server/errors.js';
import type { Upstream } from './upstreams.js';

/** Errors raised before a byte of the request left: safe to try the next upstream. */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_SSRF_BLOCKED',
]);

function errorCode(error: unknown): string | undefined {
  const e = error as { code?: string; cause?: { code?: string } };
  return e?.code ?? e?.cause?.code;
}

/**
 * Cancels an upstream request when its client goes away. undici accepts an EventEmitter with
 * an `aborted` flag as a signal; it costs far less per request than an AbortController, whose
 * EventTarget machinery showed up as a quarter of the gateway's CPU time per request.
 */
export class ClientGone extends EventEmitter {
  aborted = false;
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }
}

/** What tells a relay the client has gone: `aborted` turns true and stays so. */
export interface AbortFlag {
  readonly aborted: boolean;
}

export interface ForwardOptions {
  path: string;
  body: string;
  signal: ClientGone;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** A key to send instead of the upstream's own (a user's personal key), when it returns one. */
  upstreamApiKey?: (upstream: Upstream) => string | undefined;
}

export interface Forwarded {
  upstream: Upstream;
  response: Dispatcher.ResponseData;
}

/** The key sent to `upstream`: the caller's override when it gives one, else the upstream's own. */
export function keyFor(upstream: Upstream, options: Pick<ForwardOptions, 'upstreamApiKey'>) {
  // The embedded models answer only the gateway's own token: no personal key replaces it.
  if (upstream.source === 'local') return upstream.apiKey;
  return options.upstreamApiKey?.(upstream) ?? upstream.apiKey;
}

/**
 * Sends the request to the first upstream that accepts a connection. Only failures before
 * anything was sent move on to the next; a timeout or a reset after sending is final.
 */
export async function forward(candidates: Upstream[], options: ForwardOptions): Promise<Forwarded> {
  let lastError: unknown;
  for (const upstream of candidates) {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    const apiKey = keyFor(upstream, options);
    if (apiKey) headers.authorization = `Bearer ${apiKey}`;
    try {
      const response = await upstream.pool.request({
        method: 'POST',
        path: upstream.basePath + options.path,
        headers,
        body: options.body,
        signal: options.signal,
        headersTimeout: options.headersTimeoutMs,
        bodyTimeout: options.bodyTimeoutMs,
      });
      return { upstream, response };
    } catch (error) {
      if (options.signal.aborted) throw error;
      const code = errorCode(error);
      if (code === 'UND_ERR_HEADERS_TIMEOUT') {
        throw new HttpError(
          504,
          'upstream_timeout',
          `upstream ${upstream.name} sent no response within ${options.headersTimeoutMs} ms (PALISADE_UPSTREAM_TIMEOUT)`,
        );
      }
      if (code === 'ERR_SSRF_BLOCKED') upstream.healthy = false;
      if (code === undefined || !NOT_SENT.has(code)) {
        throw new HttpError(
          502,
          'upstream_error',
          `upstream ${upstream.name} failed: ${code ?? 'connection error'}`,
        );
      }
      upstream.healthy = false;
      lastError = error;
    }
  }
  const code = errorCode(lastError);
  const names = candidates.map((u) => u.name).join(', ');
  throw new HttpError(
    502,
    code === 'ERR_SSRF_BLOCKED' ? 'upstream_blocked' : 'upstream_unreachable',
    code === 'ERR_SSRF_BLOCKED'
      ? `upstream refused by the SSRF guard: its address resolves to a forbidden range (${names})`
      : `no upstream could be reached (${names}: ${code ?? 'connection failed'}); is the model server running?`,
  );
}

const ERROR_BODY_LIMIT = 64 * 1024;

/** Reads at most `limit` bytes of a body, then drops the rest. */
export async function readCapped(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    if (size + buffer.length > limit) {
      chunks.push(buffer.subarray(0, limit - size));
      body.destroy();
      break;
    }
    chunks.push(buffer);
    size += buffer.length;
  }
  return Buffer.concat(chunks);
}

/**
 * Reads a whole non-streaming upstream response. An upstream that stalls mid-body is a 504,
 * one that breaks off is a 502, and one larger than `limit` is a 502 rather than a
 * silently truncated 200.
 */
export async function readResponse(
  upstream: Upstream,
  body: Readable,
  limit: number,
  idleTimeoutMs: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const buffer = chunk as Buffer;
      size += buffer.length;
      if (size > limit) {
        body.destroy();
        throw new HttpError(
          502,
          'upstream_response_too_large',
          `upstream ${upstream.name} sent a response larger than ${limit} bytes`,
        );
      }
      chunks.push(buffer);
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    if (errorCode(error) === 'UND_ERR_BODY_TIMEOUT') {
      throw new HttpError(
        504,
        'upstream_timeout',
        `upstream ${upstream.name} stopped sending for ${idleTimeoutMs} ms (PALISADE_STREAM_IDLE_TIMEOUT)`,
      );
    }
    throw new HttpError(502, 'upstream_error', `upstream ${upstream.name} broke off the response`);
  }
  return Buffer.concat(chunks);
}

/**
 * Turns an upstream's error response into an OpenAI-shaped error. The upstream's own
 * message, type and code pass through; a rejection of Palisade's upstream credentials
 * becomes a 502 so a client does not think its own key is wrong. `sentKey` is the key the
 * request carried when it was not the upstream's own (a user's personal key).
 */
export async function upstreamError(
  upstream: Upstream,
  response: Dispatcher.ResponseData,
  sentKey: string | undefined = upstream.apiKey,
): Promise<HttpError> {
  let text = (await readCapped(response.body, ERROR_BODY_LIMIT)).toString('utf8');
  // An upstream (or a proxy before it) may echo the Authorization it got: never pass it on.
  for (const key of [upstream.apiKey, sentKey]) {
    if (key) text = text.replaceAll(key, '[redacted]');
  }
  const status = response.statusCode;
  if ((status === 401 || status === 403) && sentKey !== upstream.apiKey) {
    return new HttpError(
      502,
      'upstream_auth_failed',
      `upstream ${upstream.name} refused your personal API key (${status}); check it in Settings`,
    );
  }
  if (status === 401 || status === 403) {
    return new HttpError(
      502,
      'upstream_auth_failed',
      `upstream ${upstream.name} refused Palisade's credentials (${status}); check its API key (palisade upstreams list)`,
    );
  }
  let message = `upstream ${upstream.name} answered ${status}`;
  let type: string | undefined;
  let code = 'upstream_error';
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown; detail?: unknown };
    const error = parsed.error;
    if (typeof error === 'object' && error !== null) {
      const e = error as { message?: unknown; type?: unknown; code?: unknown };
      if (typeof e.message === 'string') message = e.message;
      if (typeof e.type === 'string') type = e.type;
      if (typeof e.code === 'string' || typeof e.code === 'number') code = String(e.code);
    } else if (typeof error === 'string') {
      message = error;
    } else if (typeof parsed.message === 'string') {
      message = parsed.message;
    } else if (typeof parsed.detail === 'string') {
      message = parsed.detail;
    }
  } catch {
    const snippet = text
      .replace(/[^\x20-\x7e]+/g, ' ')
      .trim()
      .slice(0, 200);
    if (snippet) message = `${message}: ${snippet}`;
  }
  const code4xx = status >= 400 && status < 600 ? status : 502;
  // A busy upstream's hint of when to come back is passed on, if it is a plain number of seconds.
  const retryAfter = response.headers['retry-after'];
  const headers: Record<string, string> =
    (status === 429 || status === 503) &&
    typeof retryAfter === 'string' &&
    /^\d{1,6}$/.test(retryAfter)
      ? { 'retry-after': retryAfter }
      : {};
  return new HttpError(code4xx, code, message.slice(0, 2000), {
    ...(type ? { type } : {}),
    headers,
  });
}

/** Usage numbers an upstream reported. */
export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

/** Finds the last `"usage":{...}` object in some JSON or SSE text without parsing it all. */
export function findUsage(text: string): Usage | undefined {
  const at = text.lastIndexOf('"usage"');
  if (at === -1) return undefined;
  const open = text.indexOf('{', at);
  const close = text.indexOf('}', open);
  if (open === -1 || close === -1) return undefined;
  try {
    return JSON.parse(text.slice(open, close + 1)) as Usage;
  } catch {
    return undefined;
  }
}

const USAGE_TAIL = 4096;

/** How a face turns an upstream's OpenAI SSE bytes into its own stream. */
export interface StreamTranslation {
  /** Written before the first upstream byte (e.g. Anthropic's `message_start`). */
  start?(): string;
  push(bytes: Buffer): Buffer | string;
  /** Written when the upstream ends cleanly. */
  finish(): Buffer | string;
  /** The last event when the upstream stalls (`idle`) or breaks off. */
  fail(message: string, idle: boolean): string;
}

/**
 * The OpenAI face's translation: bytes pass through untouched; usage is read from the last
 * two chunks; a failure becomes an OpenAI-shaped SSE error event.
 */
export function openAiSse(onUsage: (usage: Usage) => void): StreamTranslation {
  let previous: Buffer | undefined;
  let last: Buffer | undefined;
  return {
    push(bytes) {
      previous = last;
      last = bytes;
      return bytes;
    },
    finish() {
      const tail = Buffer.concat([previous ?? Buffer.alloc(0), last ?? Buffer.alloc(0)]);
      const usage = findUsage(tail.toString('utf8', Math.max(0, tail.length - USAGE_TAIL)));
      if (usage) onUsage(usage);
      return '';
    },
    fail(message, idle) {
      const code = idle ? 'upstream_timeout' : 'upstream_error';
      return `data: ${JSON.stringify({ error: { message, type: 'api_error', code } })}\n\n`;
    },
  };
}

/**
 * Relays an upstream SSE body chunk by chunk, with no buffering: each chunk is translated
 * and passed on as it arrives (a PassThrough, so backpressure from a slow client reaches the
 * upstream). If the upstream goes quiet for too long or breaks, the client gets a final
 * error event instead of a silent hang; if the client goes, the upstream read stops.
 */
export function relayStream(
  body: Readable,
  options: {
    upstreamName: string;
    idleTimeoutMs: number;
    signal: AbortFlag;
    translation: StreamTranslation;
  },
): Readable {
  const { translation } = options;
  const out = new PassThrough();
  const send = (data: Buffer | string) => {
    if (data.length > 0 && !out.destroyed && !out.write(data)) body.pause();
  };
  // Whatever an upstream sends, a translator that throws ends this stream, not the process.
  const broken = (error: unknown) => {
    body.destroy();
    if (out.destroyed) return;
    const detail = error instanceof Error ? error.message : String(error);
    out.end(
      translation.fail(
        `upstream ${options.upstreamName} sent a stream Palisade could not relay (${detail})`,
        false,
      ),
    );
  };
  try {
    if (translation.start) send(translation.start());
  } catch (error) {
    broken(error);
    return out;
  }
  body.on('data', (chunk: Buffer) => {
    try {
      send(translation.push(chunk));
    } catch (error) {
      broken(error);
    }
  });
  out.on('drain', () => body.resume());
  body.once('end', () => {
    try {
      const last = translation.finish();
      if (!out.destroyed) out.end(last);
    } catch (error) {
      broken(error);
    }
  });
  body.once('error', (error) => {
    if (options.signal.aborted || out.destroyed) {
      out.destroy();
      return;
    }
    const idle = errorCode(error) === 'UND_ERR_BODY_TIMEOUT';
    const message = idle
      ? `upstream ${options.upstreamName} sent nothing for ${options.idleTimeoutMs} ms (PALISADE_STREAM_IDLE_TIMEOUT)`
      : `upstream ${options.upstreamName} broke off the stream`;
    out.end(translation.fail(message, idle));
  });
  // The client went away (Fastify destroys what it was sending): stop reading upstream.
  out.once('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  return out;
}

import type { FastifyBaseLogger } from 'fastify';
import type { PassThrough } from 'node:stream';
import { readResponse, type Dispatched, type Usage } from '../gateway/index.js';
import { HttpError } from '../server/errors.js';
import {
  toConversation,
  toMessage,
  type AnswerEnd,
  type Conversations,
  type StartedAnswer,
} from './conversations.js';
import { createSseReader, readPiece, type AnswerPiece } from './sse.js';
import type { ChatStreamEvent } from './types.js';

/** Longest answer kept (characters); an upstream that ignores max_tokens is cut off here. */
export const MAX_ANSWER = 2_000_000;
/** Largest non-streaming completion read when an upstream answers JSON to a streaming request. */
const JSON_LIMIT = 16 * 1024 * 1024;

export function sseFrame(event: ChatStreamEvent): string {
  return `data: ${JSON.stringify(event)}\n\n`;
}

/** Writes an event, waiting while the client is slow; a client gone takes nothing more. */
export async function sendEvent(out: PassThrough, event: ChatStreamEvent): Promise<void> {
  if (out.destroyed || out.writableEnded) return;
  if (out.write(sseFrame(event))) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

function errorCode(error: unknown): string | undefined {
  const e = error as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code ?? e?.cause?.code;
}

/** An upstream body that failed while read: stalled (504) or broken off (502). */
function bodyFailure(upstream: string, error: unknown, idleTimeoutMs: number): HttpError {
  if (error instanceof HttpError) return error;
  if (errorCode(error) === 'UND_ERR_BODY_TIMEOUT') {
    return new HttpError(
      504,
      'upstream_timeout',
      `upstream ${upstream} sent nothing for ${idleTimeoutMs} ms (PALISADE_STREAM_IDLE_TIMEOUT)`,
    );
  }
  return new HttpError(502, 'upstream_error', `upstream ${upstream} broke off the answer`);
}

/** The answer as the upstream sends it: chunk by chunk over SSE, or one JSON completion. */
async function* answerPieces(
  dispatched: Dispatched,
  idleTimeoutMs: number,
): AsyncGenerator<AnswerPiece> {
  const { upstream, response } = dispatched;
  const contentType = String(response.headers['content-type'] ?? '');
  if (!contentType.startsWith('text/event-stream')) {
    const payload = await readResponse(upstream, response.body, JSON_LIMIT, idleTimeoutMs);
    let completion: unknown;
    try {
      completion = JSON.parse(payload.toString('utf8'));
    } catch {
      throw new HttpError(502, 'upstream_error', `upstream ${upstream.name} did not answer JSON`);
    }
    yield readPiece(completion);
    return;
  }
  const reader = createSseReader();
  try {
    for await (const bytes of response.body) {
      for (const chunk of reader.push(bytes as Buffer)) yield readPiece(chunk);
    }
  } catch (error) {
    throw bodyFailure(upstream.name, error, idleTimeoutMs);
  }
  for (const chunk of reader.end()) yield readPiece(chunk);
}

export interface AnswerStreamOptions {
  /** The SSE body sent to the client; the `user`/`assistant` events are already in it. */
  out: PassThrough;
  dispatched: Dispatched;
  started: StartedAnswer;
  conversations: Conversations;
  userId: string;
  idleTimeoutMs: number;
  log: FastifyBaseLogger;
  onUsage: (usage: Usage) => void;
}

/**
 * Relays an upstream's answer to the client as `delta` events and stores how it ended, in
 * one transaction: `complete` (then a `done` event), `stopped` when the client went away (the
 * dispatcher aborted the upstream request), or `error` (then an `error` event). It never
 * rejects, and the assistant message never stays `streaming`.
 */
export async function streamAnswer(options: AnswerStreamOptions): Promise<void> {
  const { out, dispatched, started, log } = options;
  let content = '';
  let usage: Usage | undefined;
  let failure: HttpError | undefined;
  try {
    for await (const piece of answerPieces(dispatched, options.idleTimeoutMs)) {
      if (piece.usage) usage = piece.usage;
      if (piece.text === '') continue;
      if (content.length + piece.text.length > MAX_ANSWER) {
        throw new HttpError(
          502,
          'answer_too_large',
          `the answer grew past ${MAX_ANSWER} characters and was cut off`,
        );
      }
      content += piece.text;
      await sendEvent(out, { type: 'delta', text: piece.text });
    }
  } catch (error) {
    failure = bodyFailure(dispatched.upstream.name, error, options.idleTimeoutMs);
    if (!dispatched.signal.aborted) {
      log.warn({ upstream: dispatched.upstream.name, code: failure.code }, 'chat answer failed');
    }
  }
  if (usage) options.onUsage(usage);

  const end: AnswerEnd = {
    status: failure === undefined ? 'complete' : dispatched.signal.aborted ? 'stopped' : 'error',
    content,
    error: null,
    promptTokens: usage?.prompt_tokens ?? null,
    completionTokens: usage?.completion_tokens ?? null,
  };
  if (end.status === 'error' && failure) end.error = failure.message;
  try {
    const saved = await options.conversations.finish(options.userId, started.assistant, end);
    if (saved === undefined) {
      await sendEvent(out, {
        type: 'error',
        message: 'the conversation was deleted while it was answered',
        code: 'conversation_not_found',
      });
    } else if (end.status === 'complete') {
      await sendEvent(out, {
        type: 'done',
        message: toMessage(saved.message),
        conversation: toConversation(saved.conversation),
      });
    } else if (failure) {
      await sendEvent(out, { type: 'error', message: failure.message, code: failure.code });
    }
  } catch (error) {
    log.error({ err: error }, 'chat answer could not be stored');
    await sendEvent(out, {
      type: 'error',
      message: 'the answer could not be stored; the request id is in the server log',
      code: 'internal_error',
    });
  }
  if (!out.destroyed) out.end();
}

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
import type { ToolSession } from './mcp-tools.js';
import { createSseReader, readPiece } from './sse.js';
import { createToolCallReader, type ToolCall } from './tool-calls.js';
import { MAX_TOOL_ROUNDS, runToolRound, type PromptMessage } from './tool-loop.js';
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

/** The answer's chunks as the upstream sends them: over SSE, or one JSON completion. */
async function* answerChunks(
  dispatched: Dispatched,
  idleTimeoutMs: number,
): AsyncGenerator<unknown> {
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
    yield completion;
    return;
  }
  const reader = createSseReader();
  try {
    for await (const bytes of response.body) {
      for (const chunk of reader.push(bytes as Buffer)) yield chunk;
    }
  } catch (error) {
    throw bodyFailure(upstream.name, error, idleTimeoutMs);
  }
  for (const chunk of reader.end()) yield chunk;
}

/** How the model is asked again after its tool calls ran. */
export interface ToolUse {
  session: ToolSession;
  /** The first request's messages; each round's calls and results are appended. */
  prompt: PromptMessage[];
  /** Sends the grown prompt to the model, with the same tools and policy. */
  dispatch(prompt: PromptMessage[]): Promise<Dispatched>;
  /** Aborted when the client goes; it stops a tool call in flight too. */
  signal: AbortSignal;
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
  /** The request's id, carried by error events as by every error answer. */
  requestId: string;
  onUsage: (usage: Usage) => void;
  /** Sent first, as `notice` events (MCP servers left out, say). */
  notices?: readonly string[];
  /** Tools were offered: their calls are run and the model asked again, up to 8 rounds. */
  tools?: ToolUse;
}

/** The answer so far, over all rounds. */
interface Answer {
  content: string;
  usage: Usage | undefined;
  /** What the round being read reported, added to `usage` when the round is over. */
  roundUsage: Usage | undefined;
}

const STOPPED = new HttpError(499, 'client_closed_request', 'the client closed the connection');

function addUsage(total: Usage | undefined, more: Usage): Usage {
  if (total === undefined) return more;
  const sum = (a: number | undefined, b: number | undefined) =>
    a === undefined && b === undefined ? undefined : (a ?? 0) + (b ?? 0);
  return {
    prompt_tokens: sum(total.prompt_tokens, more.prompt_tokens),
    completion_tokens: sum(total.completion_tokens, more.completion_tokens),
  };
}

/** Adds text to the answer and sends it as a `delta` event. */
async function append(out: PassThrough, answer: Answer, text: string): Promise<void> {
  if (answer.content.length + text.length > MAX_ANSWER) {
    throw new HttpError(
      502,
      'answer_too_large',
      `the answer grew past ${MAX_ANSWER} characters and was cut off`,
    );
  }
  answer.content += text;
  await sendEvent(out, { type: 'delta', text });
}

/** A paragraph of its own after what the answer holds so far. */
function paragraph(content: string, text: string): string {
  if (content === '' || content.endsWith('\n\n')) return `${text}\n\n`;
  return `${content.endsWith('\n') ? '\n' : '\n\n'}${text}\n\n`;
}

/** Relays one model request's answer; returns its text and, when tools were offered, its calls. */
async function relayRound(
  dispatched: Dispatched,
  answer: Answer,
  options: AnswerStreamOptions,
  round: number,
): Promise<{ text: string; calls: ToolCall[] }> {
  const toolCalls = options.tools ? createToolCallReader() : undefined;
  let text = '';
  for await (const chunk of answerChunks(dispatched, options.idleTimeoutMs)) {
    const piece = readPiece(chunk);
    toolCalls?.push(chunk);
    if (piece.usage) answer.roundUsage = piece.usage;
    if (piece.text === '') continue;
    await append(options.out, answer, piece.text);
    text += piece.text;
  }
  return { text, calls: toolCalls?.calls(round) ?? [] };
}

/**
 * Relays an upstream's answer to the client as `delta` events and stores how it ended, in
 * one transaction: `complete` (then a `done` event), `stopped` when the client went away (the
 * dispatcher aborted the upstream request), or `error` (then an `error` event). With tools,
 * a round that ends in tool calls runs them (`tool_call`/`tool_result` events, a summary line
 * in the text) and asks the model again. It never rejects, and the assistant message never
 * stays `streaming`.
 */
export async function streamAnswer(options: AnswerStreamOptions): Promise<void> {
  const { out, started, log, tools } = options;
  let dispatched = options.dispatched;
  const stopped = () => dispatched.signal.aborted || tools?.signal.aborted === true;
  const answer: Answer = { content: '', usage: undefined, roundUsage: undefined };
  const settleUsage = () => {
    if (answer.roundUsage === undefined) return;
    options.onUsage(answer.roundUsage);
    answer.usage = addUsage(answer.usage, answer.roundUsage);
    answer.roundUsage = undefined;
  };
  let failure: HttpError | undefined;
  try {
    for (const message of options.notices ?? []) await sendEvent(out, { type: 'notice', message });
    for (let round = 1; ; round++) {
      const { text, calls } = await relayRound(dispatched, answer, options, round);
      settleUsage();
      if (tools === undefined || calls.length === 0) break;
      if (round === MAX_TOOL_ROUNDS) {
        throw new HttpError(
          502,
          'tool_rounds_exceeded',
          `the model was still calling tools after ${MAX_TOOL_ROUNDS} rounds; the answer was cut off`,
        );
      }
      const ran = await runToolRound({
        calls,
        text,
        session: tools.session,
        send: (event) => sendEvent(out, event),
      });
      await append(out, answer, paragraph(answer.content, ran.summary));
      if (stopped()) throw STOPPED;
      tools.prompt.push(...ran.messages);
      dispatched = await tools.dispatch(tools.prompt);
    }
  } catch (error) {
    settleUsage();
    failure = bodyFailure(dispatched.upstream.name, error, options.idleTimeoutMs);
    if (!stopped()) {
      log.warn({ upstream: dispatched.upstream.name, code: failure.code }, 'chat answer failed');
    }
  }

  const { content, usage } = answer;
  const end: AnswerEnd = {
    status: failure === undefined ? 'complete' : stopped() ? 'stopped' : 'error',
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
        request_id: options.requestId,
      });
    } else if (end.status === 'complete') {
      await sendEvent(out, {
        type: 'done',
        message: toMessage(saved.message),
        conversation: toConversation(saved.conversation),
      });
    } else if (failure) {
      await sendEvent(out, {
        type: 'error',
        message: failure.message,
        code: failure.code,
        request_id: options.requestId,
      });
    }
  } catch (error) {
    log.error({ err: error }, 'chat answer could not be stored');
    await sendEvent(out, {
      type: 'error',
      message:
        'the answer could not be stored; the server log has the details under this request id',
      code: 'internal_error',
      request_id: options.requestId,
    });
  }
  if (!out.destroyed) out.end();
}

import { HttpError } from '../server/errors.js';
import { createJsonRepairStream, safeStringify, type JsonRepairStream } from './json-repair.js';
import {
  createToolIds,
  field,
  findStopSequence,
  isRecord,
  newMessageId,
  reasoningText,
  stopReasonFor,
  THINKING_SIGNATURE,
  usageFrom,
} from './response.js';
import type { ResponseOptions, Usage } from './types.js';

export interface StreamTranslatorOptions extends ResponseOptions {
  messageId?: string;
  /** Input tokens to report in `message_start` (an estimate); the upstream's count, when it
   * sends one, is reported again in `message_delta`. */
  inputTokens?: number;
  /** Added to `error` events. */
  requestId?: string;
}

/**
 * Turns parsed OpenAI `chat.completion.chunk`s into Anthropic SSE frames, each a complete
 * `event: <type>\ndata: <json>\n\n` string ready to write.
 */
export interface StreamTranslator {
  /** `message_start` and `ping`. Called implicitly by the first `push` or `finish`. */
  start(): string[];
  push(chunk: unknown): string[];
  /** Closes open blocks, then `message_delta` and `message_stop`. */
  finish(): string[];
  /** An `error` event; the stream is over after it. */
  error(message: string, type?: string): string[];
  /** True after `finish` or `error`. */
  readonly done: boolean;
}

interface ToolCall {
  id: unknown;
  name: string;
  repair: JsonRepairStream;
  /** Repaired argument text not yet sent as `input_json_delta`. */
  unsent: string;
  state: 'new' | 'queued' | 'open' | 'closed';
}

type TextKind = 'thinking' | 'text';
type Segment = { kind: TextKind; text: string } | { kind: 'tool'; call: ToolCall };
type OpenBlock =
  { kind: TextKind; index: number } | { kind: 'tool'; index: number; call: ToolCall };

export function sseFrame(type: string, data: Record<string, unknown>): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

/** The key of tool calls that came without an `index`. */
const NO_INDEX = -1;

/**
 * Creates the translator for one response. Anthropic blocks cannot overlap, so when the
 * upstream interleaves (argument fragments of tool call 1 arrive while tool call 0's JSON is
 * still open, or text arrives mid tool call), the later block's pieces are held and sent,
 * in order, once the open tool call's JSON is complete or the stream ends. A tool call whose
 * arguments JSON has closed is closed as soon as anything else arrives.
 *
 * @example
 * const t = createStreamTranslator({ requestModel: req.model, thinking: false });
 * write(t.start()); for (const chunk of chunks) write(t.push(chunk)); write(t.finish());
 */
export function createStreamTranslator(options: StreamTranslatorOptions): StreamTranslator {
  const messageId = options.messageId ?? newMessageId();
  const toolId = createToolIds(messageId);
  const calls = new Map<number, ToolCall>();
  const callOrder: ToolCall[] = [];
  const queue: Segment[] = [];
  let open: OpenBlock | null = null;
  let nextIndex = 0;
  let started = false;
  let sawToolUse = false;
  let sawText = false;
  let finishReason: unknown = null;
  let stopSequence: string | null = null;
  let lastKey: number | undefined;
  /** Calls before this position in `callOrder` have all been routed. */
  let unrouted = 0;
  const usage: Partial<Usage> = {};
  // A data property, not a getter: object-literal getters are slow to create.
  const translator = {
    start,
    push,
    finish,
    error: (message: string, type = 'api_error') =>
      translator.done ? [] : errorFrames(message, type),
    done: false,
  };

  function start(): string[] {
    if (started || translator.done) return [];
    started = true;
    return [
      sseFrame('message_start', {
        message: {
          id: messageId,
          type: 'message',
          role: 'assistant',
          model: options.requestModel,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: options.inputTokens ?? 0, output_tokens: 0 },
        },
      }),
      sseFrame('ping', {}),
    ];
  }

  const blocked = () => open?.kind === 'tool' && !open.call.repair.complete;

  function textDelta(kind: TextKind, index: number, text: string): string {
    const delta =
      kind === 'text' ? { type: 'text_delta', text } : { type: 'thinking_delta', thinking: text };
    return sseFrame('content_block_delta', { index, delta });
  }

  function openText(kind: TextKind, out: string[]): number {
    const index = nextIndex++;
    const block =
      kind === 'text'
        ? { type: 'text', text: '' }
        : { type: 'thinking', thinking: '', signature: THINKING_SIGNATURE };
    out.push(sseFrame('content_block_start', { index, content_block: block }));
    open = { kind, index };
    if (kind === 'text') sawText = true;
    return index;
  }

  function flushTool(call: ToolCall, index: number, out: string[]) {
    if (call.unsent === '') return;
    out.push(
      sseFrame('content_block_delta', {
        index,
        delta: { type: 'input_json_delta', partial_json: call.unsent },
      }),
    );
    call.unsent = '';
  }

  function openTool(call: ToolCall, out: string[]) {
    const index = nextIndex++;
    call.state = 'open';
    sawToolUse = true;
    out.push(
      sseFrame('content_block_start', {
        index,
        content_block: { type: 'tool_use', id: toolId(call.id), name: call.name, input: {} },
      }),
    );
    open = { kind: 'tool', index, call };
    flushTool(call, index, out);
  }

  function closeOpen(out: string[]) {
    if (!open) return;
    if (open.kind === 'tool') {
      open.call.unsent += open.call.repair.end();
      flushTool(open.call, open.index, out);
      open.call.state = 'closed';
    }
    out.push(sseFrame('content_block_stop', { index: open.index }));
    open = null;
  }

  function openSegment(segment: Segment, out: string[]) {
    if (segment.kind === 'tool') return openTool(segment.call, out);
    const index = openText(segment.kind, out);
    out.push(textDelta(segment.kind, index, segment.text));
  }

  /** After the open tool call's JSON completed: sends held segments until one is incomplete. */
  function drain(out: string[]) {
    while (queue.length > 0 && !blocked()) {
      const segment = queue.shift();
      if (!segment) break;
      closeOpen(out);
      openSegment(segment, out);
    }
  }

  function emitText(kind: TextKind, text: string, out: string[]) {
    if (open?.kind === kind) {
      out.push(textDelta(kind, open.index, text));
      return;
    }
    if (blocked()) {
      const last = queue[queue.length - 1];
      if (last && last.kind === kind) last.text += text;
      else queue.push({ kind, text });
      return;
    }
    closeOpen(out);
    out.push(textDelta(kind, openText(kind, out), text));
  }

  /** Opens a call's block now, or queues it behind an open tool call that is incomplete. */
  function route(call: ToolCall, out: string[]) {
    if (blocked()) {
      call.state = 'queued';
      queue.push({ kind: 'tool', call });
      return;
    }
    closeOpen(out);
    openTool(call, out);
  }

  function emitArguments(call: ToolCall, fragment: string, out: string[]) {
    call.unsent += call.repair.push(fragment);
    if (open?.kind === 'tool' && open.call === call) {
      flushTool(call, open.index, out);
      drain(out);
      return;
    }
    if (call.state !== 'new') return;
    // Calls announced earlier without arguments yet keep their place in front of this one.
    for (; unrouted < callOrder.length; unrouted++) {
      const earlier = callOrder[unrouted];
      if (earlier === call) break;
      if (earlier?.state === 'new') route(earlier, out);
    }
    route(call, out);
  }

  /**
   * The call a tool_calls delta belongs to: by `index`, or the previous call when there is none.
   * Some servers send every parallel call as index 0; a new id under a known index is a new call.
   */
  function callFor(delta: unknown): ToolCall {
    const index = field(delta, 'index');
    const id = field(delta, 'id');
    const key =
      typeof index === 'number' && Number.isInteger(index) ? index : (lastKey ?? NO_INDEX);
    let call = calls.get(key);
    if (call && typeof id === 'string' && id !== '' && call.id !== undefined && call.id !== id) {
      call = undefined;
    }
    if (!call) {
      call = {
        id: undefined,
        name: '',
        repair: createJsonRepairStream(),
        unsent: '',
        state: 'new',
      };
      calls.set(key, call);
      callOrder.push(call);
    }
    lastKey = key;
    return call;
  }

  function toolDelta(delta: unknown, out: string[]) {
    const call = callFor(delta);
    const id = field(delta, 'id');
    const fn = field(delta, 'function');
    const name = field(fn, 'name');
    const args = field(fn, 'arguments');
    if (call.state === 'new') {
      if (typeof id === 'string' && id !== '' && call.id === undefined) call.id = id;
      if (typeof name === 'string' && name !== '' && call.name === '') call.name = name;
    }
    if (typeof args === 'string' && args !== '') emitArguments(call, args, out);
    else if (isRecord(args)) emitArguments(call, safeStringify(args), out);
  }

  function errorFrames(message: string, type: string): string[] {
    translator.done = true;
    const request = options.requestId ? { request_id: options.requestId } : {};
    return [sseFrame('error', { error: { type, message }, ...request })];
  }

  function push(chunk: unknown): string[] {
    if (translator.done) return [];
    const out = start();
    if (!isRecord(chunk)) return out;
    if (chunk.error !== undefined && chunk.error !== null) {
      const message = field(chunk.error, 'message');
      const text = typeof message === 'string' ? message : 'the upstream failed mid-stream';
      return [...out, ...errorFrames(text.slice(0, 2000), 'api_error')];
    }
    Object.assign(usage, usageFrom(chunk.usage));
    const choices = chunk.choices;
    const choice: unknown = Array.isArray(choices) ? choices[0] : undefined;
    stopSequence = findStopSequence(chunk, choice, options.stopSequences) ?? stopSequence;
    if (!isRecord(choice)) return out;

    const delta = choice.delta;
    if (options.thinking) {
      const reasoning = reasoningText(delta);
      if (reasoning) emitText('thinking', reasoning, out);
    }
    const content = field(delta, 'content');
    if (typeof content === 'string' && content !== '') emitText('text', content, out);
    const toolCalls = field(delta, 'tool_calls');
    if (Array.isArray(toolCalls)) {
      for (const call of toolCalls) if (isRecord(call)) toolDelta(call, out);
    }
    const legacy = field(delta, 'function_call');
    if (isRecord(legacy)) toolDelta({ index: 0, function: legacy }, out);
    if (typeof choice.finish_reason === 'string') finishReason = choice.finish_reason;
    return out;
  }

  function finish(): string[] {
    if (translator.done) return [];
    const out = start();
    for (;;) {
      closeOpen(out);
      const segment = queue.shift();
      if (!segment) break;
      openSegment(segment, out);
    }
    for (const call of callOrder) {
      if (call.state !== 'new') continue;
      openTool(call, out);
      closeOpen(out);
    }
    // As in a complete response: a text block, empty if need be, unless there are tool calls.
    if (!sawText && !sawToolUse) {
      openText('text', out);
      closeOpen(out);
    }
    const stopReason = stopReasonFor(finishReason, sawToolUse, stopSequence);
    const usageOut =
      usage.input_tokens !== undefined
        ? { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens ?? 0 }
        : { output_tokens: usage.output_tokens ?? 0 };
    out.push(
      sseFrame('message_delta', {
        delta: {
          stop_reason: stopReason,
          stop_sequence: stopReason === 'stop_sequence' ? stopSequence : null,
        },
        usage: usageOut,
      }),
      sseFrame('message_stop', {}),
    );
    translator.done = true;
    return out;
  }

  return translator;
}

/** Longest SSE line kept while waiting for its end; a longer one is an upstream fault. */
export const MAX_SSE_LINE = 16 * 1024 * 1024;

export interface SseChunks {
  /** Each `data:` line's JSON; an `error:` line (llama.cpp) becomes `{ error: <json> }`. */
  chunks: unknown[];
  /** The unfinished last line, to put before the next read. */
  rest: string;
  /** True once `data: [DONE]` was seen. */
  done: boolean;
}

const LINE_END = /\r\n|\r|\n/g;

/**
 * Splits OpenAI-style SSE text into parsed chunks. Lines may end in LF, CRLF or CR and may be
 * split across reads (pass `rest` back in front of the next read). Each `data:` line is one
 * JSON chunk, as every OpenAI-compatible server sends them; comments, `event:`/`id:` lines
 * and data that is not JSON are skipped.
 */
export function parseSseChunks(buffer: string): SseChunks {
  const chunks: unknown[] = [];
  let done = false;
  let start = 0;
  LINE_END.lastIndex = 0;
  for (let match = LINE_END.exec(buffer); match; match = LINE_END.exec(buffer)) {
    // A CR at the very end may be the first half of a CRLF split across reads.
    if (match[0] === '\r' && match.index === buffer.length - 1) break;
    const line = buffer.slice(start, match.index);
    start = match.index + match[0].length;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon);
    if (name !== 'data' && name !== 'error') continue;
    const value = line.slice(line[colon + 1] === ' ' ? colon + 2 : colon + 1);
    if (name === 'data' && value.trim() === '[DONE]') {
      done = true;
      continue;
    }
    try {
      const parsed: unknown = JSON.parse(value);
      chunks.push(name === 'error' ? { error: parsed } : parsed);
    } catch {
      // not JSON: nothing to translate
    }
  }
  LINE_END.lastIndex = 0;
  const rest = buffer.slice(start);
  if (rest.length > MAX_SSE_LINE) {
    throw new HttpError(
      502,
      'upstream_invalid_stream',
      `the upstream sent an SSE line longer than ${MAX_SSE_LINE} bytes`,
    );
  }
  return { chunks, rest, done };
}

/**
 * Byte-level wrapper around {@link parseSseChunks}: decodes UTF-8 across reads (a character
 * split between two reads stays whole) and keeps the unfinished line.
 */
export function createSseDecoder(): {
  push(bytes: Uint8Array | string): unknown[];
  end(): unknown[];
  readonly done: boolean;
} {
  const utf8 = new TextDecoder('utf-8');
  let rest = '';
  function take(text: string): unknown[] {
    const parsed = parseSseChunks(rest + text);
    rest = parsed.rest;
    decoder.done ||= parsed.done;
    return parsed.chunks;
  }
  const decoder = {
    push: (bytes: Uint8Array | string) =>
      take(typeof bytes === 'string' ? bytes : utf8.decode(bytes, { stream: true })),
    end: () => take(`${utf8.decode()}\n`),
    done: false,
  };
  return decoder;
}

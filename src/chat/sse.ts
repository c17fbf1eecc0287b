import type { Usage } from '../gateway/index.js';
import { HttpError } from '../server/errors.js';
import { createSseParser, SseLineTooLong } from '../server/sse-parser.js';

/** Longest SSE line taken from an upstream; past it the stream is treated as broken. */
export const MAX_SSE_LINE = 1024 * 1024;

/**
 * Splits an upstream's SSE bytes into the JSON payloads of its `data:` events (`[DONE]` and
 * comments dropped). Payloads that are not JSON are skipped, as OpenAI's clients do.
 *
 * @example
 * const reader = createSseReader();
 * for (const chunk of reader.push(bytes)) handle(chunk);
 */
export function createSseReader() {
  const utf8 = new TextDecoder('utf-8');
  let payloads: unknown[] = [];
  const parser = createSseParser({
    maxLine: MAX_SSE_LINE,
    onFrame: ({ data }) => {
      if (data === '' || data === '[DONE]') return;
      try {
        payloads.push(JSON.parse(data) as unknown);
      } catch {
        // Not JSON: skipped.
      }
    },
  });

  function taken(feed: () => void): unknown[] {
    try {
      feed();
    } catch (error) {
      if (!(error instanceof SseLineTooLong)) throw error;
      throw new HttpError(
        502,
        'upstream_error',
        `the upstream sent an SSE line longer than ${MAX_SSE_LINE} bytes`,
      );
    }
    const out = payloads;
    payloads = [];
    return out;
  }

  return {
    push: (bytes: Uint8Array) => taken(() => parser.push(utf8.decode(bytes, { stream: true }))),
    end: () =>
      taken(() => {
        parser.push(utf8.decode());
        parser.end();
      }),
  };
}

export interface AnswerPiece {
  text: string;
  usage: Usage | undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function usageOf(value: unknown): Usage | undefined {
  if (!isRecord(value)) return undefined;
  const usage: Usage = {};
  if (isCount(value.prompt_tokens)) usage.prompt_tokens = value.prompt_tokens;
  if (isCount(value.completion_tokens)) usage.completion_tokens = value.completion_tokens;
  return usage.prompt_tokens === undefined && usage.completion_tokens === undefined
    ? undefined
    : usage;
}

/**
 * The text and usage in a `chat.completion.chunk` (its first choice's `delta`) or a whole
 * `chat.completion` (its `message`). An `error` object, which servers such as llama.cpp and
 * vLLM send mid-stream, is thrown as a 502 carrying the upstream's message.
 */
export function readPiece(chunk: unknown): AnswerPiece {
  if (!isRecord(chunk)) return { text: '', usage: undefined };
  const error = chunk.error;
  if (error !== undefined && error !== null) {
    const message = isRecord(error) ? error.message : error;
    throw new HttpError(
      502,
      'upstream_error',
      typeof message === 'string' && message !== ''
        ? message.slice(0, 2000)
        : 'the upstream reported an error',
    );
  }
  const choice = Array.isArray(chunk.choices) ? (chunk.choices[0] as unknown) : undefined;
  let text = '';
  if (isRecord(choice)) {
    const part = isRecord(choice.delta) ? choice.delta : choice.message;
    if (isRecord(part) && typeof part.content === 'string') text = part.content;
  }
  return { text, usage: usageOf(chunk.usage) };
}

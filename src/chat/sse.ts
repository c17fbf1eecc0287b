import type { Usage } from '../gateway/index.js';
import { HttpError } from '../server/errors.js';

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
  let rest = '';
  let data: string[] = [];

  function event(): unknown[] {
    const payload = data.join('\n');
    data = [];
    if (payload === '' || payload === '[DONE]') return [];
    try {
      return [JSON.parse(payload) as unknown];
    } catch {
      return [];
    }
  }

  function checkLength(): void {
    if (rest.length <= MAX_SSE_LINE) return;
    throw new HttpError(
      502,
      'upstream_error',
      `the upstream sent an SSE line longer than ${MAX_SSE_LINE} bytes`,
    );
  }

  function take(text: string, final: boolean): unknown[] {
    // Without a line break nothing is complete; appending keeps a line sent byte by byte linear.
    if (!final && !/[\r\n]/.test(text)) {
      rest += text;
      checkLength();
      return [];
    }
    // A CR at the very end may be half of a CRLF: it stays with the rest until more arrives.
    const lines = (rest + text).split(/\r\n|\n|\r(?=[^\n])/);
    rest = final ? '' : (lines.pop() ?? '');
    checkLength();
    const out: unknown[] = [];
    for (const raw of lines) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line === '') out.push(...event());
      else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
    }
    if (final) out.push(...event());
    return out;
  }

  return {
    push: (bytes: Uint8Array) => take(utf8.decode(bytes, { stream: true }), false),
    end: () => take(utf8.decode(), true),
  };
}

/** What one chat-completion chunk (or a whole completion) brings to an answer. */
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

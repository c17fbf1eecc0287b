import { randomUUID } from 'node:crypto';
import { HttpError } from '../server/errors.js';
import { parseToolArguments } from './json-repair.js';
import type {
  AnthropicMessage,
  MessagesRequest,
  ResponseBlock,
  ResponseOptions,
  StopReason,
  ToolUseBlock,
  Usage,
} from './types.js';

/**
 * Local models have no signature to give. Thinking blocks carry an empty one; Palisade drops
 * thinking blocks a client sends back, so the value is never checked.
 */
export const THINKING_SIGNATURE = '';

export type JsonRecord = Record<string, unknown>;

export function isRecord(value: unknown): value is JsonRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function field(value: unknown, key: string): unknown {
  return isRecord(value) ? value[key] : undefined;
}

export function newMessageId(): string {
  return `msg_${randomUUID().replace(/-/g, '')}`;
}

/** The options both response translators need, read from the validated request. */
export function responseOptions(req: MessagesRequest): ResponseOptions {
  return {
    requestModel: req.model,
    thinking: req.thinking !== undefined && req.thinking.type !== 'disabled',
    ...(req.stop_sequences?.length ? { stopSequences: req.stop_sequences } : {}),
  };
}

const TOOL_ID = /^[a-zA-Z0-9_-]{1,128}$/;

/**
 * Gives each tool_use block of one message its id: the upstream's own when it fits Anthropic's
 * id pattern and is not already used in the message, otherwise `toolu_<message>_<n>`.
 */
export function createToolIds(messageId: string): (upstreamId: unknown) => string {
  const used = new Set<string>();
  const stem = messageId.replace(/^msg_/, '').replace(/[^a-zA-Z0-9_-]/g, '');
  let next = 0;
  return (upstreamId) => {
    let id =
      typeof upstreamId === 'string' && TOOL_ID.test(upstreamId) && !used.has(upstreamId)
        ? upstreamId
        : '';
    while (id === '' || used.has(id)) id = `toolu_${stem}_${next++}`;
    used.add(id);
    return id;
  };
}

/**
 * The request's stop sequence the upstream says it stopped on, or null. vLLM reports it as
 * the choice's `stop_reason`; llama.cpp only as `stopping_word` in its `__verbose` debug
 * output (server started with `--verbose`) or native fields. Other servers do not say,
 * so a stop on a sequence reads as `end_turn` there.
 */
export function findStopSequence(
  container: unknown,
  choice: unknown,
  stopSequences: readonly string[] | undefined,
): string | null {
  if (!stopSequences || stopSequences.length === 0) return null;
  const candidates = [
    field(choice, 'stop_reason'),
    field(choice, 'stopping_word'),
    field(container, 'stopping_word'),
    field(field(container, '__verbose'), 'stopping_word'),
  ];
  for (const candidate of candidates) {
    if (typeof candidate === 'string' && stopSequences.includes(candidate)) return candidate;
  }
  return null;
}

/**
 * Maps an OpenAI `finish_reason`. `content_filter` becomes `refusal` (Anthropic's reason for
 * a declined answer). Tool calls mean `tool_use` even from servers that report `stop` for them.
 */
export function stopReasonFor(
  finishReason: unknown,
  hasToolUse: boolean,
  stopSequence: string | null,
): StopReason {
  if (finishReason === 'length') return 'max_tokens';
  if (finishReason === 'content_filter') return 'refusal';
  if (hasToolUse) return 'tool_use';
  if (stopSequence !== null) return 'stop_sequence';
  return 'end_turn';
}

export function usageFrom(usage: unknown): Partial<Usage> {
  const out: Partial<Usage> = {};
  const prompt = field(usage, 'prompt_tokens');
  const completion = field(usage, 'completion_tokens');
  if (typeof prompt === 'number' && Number.isFinite(prompt)) out.input_tokens = prompt;
  if (typeof completion === 'number' && Number.isFinite(completion)) {
    out.output_tokens = completion;
  }
  return out;
}

/** Text of an OpenAI `content`: a string, or an array of text parts. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) => (typeof part === 'string' ? part : field(part, 'text')))
    .filter((t): t is string => typeof t === 'string')
    .join('');
}

export function reasoningText(message: unknown): string {
  const value = field(message, 'reasoning_content') ?? field(message, 'reasoning');
  return typeof value === 'string' ? value : '';
}

function toolCalls(message: unknown): unknown[] {
  const calls = field(message, 'tool_calls');
  if (Array.isArray(calls)) return calls.filter(isRecord);
  const legacy = field(message, 'function_call');
  return isRecord(legacy) ? [{ function: legacy }] : [];
}

function upstreamFailure(message: string): HttpError {
  return new HttpError(502, 'upstream_invalid_response', message);
}

/**
 * Translates an OpenAI chat completion into an Anthropic message. Blocks come in the order
 * thinking, text, tool_use; the text block is left out only when it is empty and there are
 * tool calls. Tool arguments that are not valid JSON are repaired (see json-repair.ts).
 */
export function fromChatCompletion(
  completion: unknown,
  options: ResponseOptions & { messageId?: string },
): AnthropicMessage {
  if (!isRecord(completion)) {
    throw upstreamFailure('the upstream answered with something that is not a chat completion');
  }
  const error = completion.error;
  if (error !== undefined && error !== null) {
    const message = field(error, 'message');
    throw upstreamFailure(
      `the upstream reported an error: ${typeof message === 'string' ? message : String(error)}`.slice(
        0,
        2000,
      ),
    );
  }
  const choices = completion.choices;
  const choice: unknown = Array.isArray(choices) ? choices[0] : undefined;
  if (!isRecord(choice)) throw upstreamFailure('the upstream chat completion has no choices');

  const id = options.messageId ?? newMessageId();
  const toolId = createToolIds(id);
  const message = choice.message;
  const content: ResponseBlock[] = [];

  const reasoning = options.thinking ? reasoningText(message) : '';
  if (reasoning) {
    content.push({ type: 'thinking', thinking: reasoning, signature: THINKING_SIGNATURE });
  }
  const tools: ToolUseBlock[] = toolCalls(message).map((call) => {
    const fn = field(call, 'function');
    const name = field(fn, 'name');
    return {
      type: 'tool_use',
      id: toolId(field(call, 'id')),
      name: typeof name === 'string' ? name : '',
      input: parseToolArguments(field(fn, 'arguments')),
    };
  });
  const text = contentText(field(message, 'content'));
  if (text || tools.length === 0) content.push({ type: 'text', text });
  content.push(...tools);

  const stopSequence = findStopSequence(completion, choice, options.stopSequences);
  const stopReason = stopReasonFor(choice.finish_reason, tools.length > 0, stopSequence);
  const usage = usageFrom(completion.usage);
  return {
    id,
    type: 'message',
    role: 'assistant',
    model: options.requestModel,
    content,
    stop_reason: stopReason,
    stop_sequence: stopReason === 'stop_sequence' ? stopSequence : null,
    usage: { input_tokens: usage.input_tokens ?? 0, output_tokens: usage.output_tokens ?? 0 },
  };
}

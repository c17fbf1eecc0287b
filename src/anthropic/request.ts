import { z } from 'zod';
import { HttpError } from '../server/errors.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from './json-repair.js';
import type {
  ContentBlock,
  CountTokensRequest,
  ImageBlock,
  MessageParam,
  MessagesRequest,
  TextBlock,
  ToolResultBlock,
} from './types.js';

/** Largest number of content blocks in one request, counted across messages, system and tool results. */
export const MAX_CONTENT_BLOCKS = 10_000;
export const MAX_MESSAGES = 10_000;
export const MAX_TOOLS = 1_000;
export const MAX_STOP_SEQUENCES = 16;

/**
 * Prefix put before the content of a `tool_result` with `is_error: true`, since OpenAI's
 * `tool` messages have no error flag. Not added when the content already starts with "error".
 */
export const TOOL_ERROR_PREFIX = 'Error: ';

/** Text blocks of one message (and system blocks) are joined with this when sent as a string. */
const BLOCK_SEPARATOR = '\n\n';

const BLOCK_TYPES = ['text', 'image', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'];
const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'] as const;
// One character class, so the check stays linear on hostile input.
const BASE64 = /^[A-Za-z0-9+/=\s]*$/;

const text = (field: string) => z.string({ error: `must be a string (${field})` });
const positiveInt = z
  .number({ error: 'must be a positive integer' })
  .int({ error: 'must be a positive integer' })
  .positive({ error: 'must be a positive integer' });
const unitInterval = z
  .number({ error: 'must be a number from 0 to 1' })
  .min(0, { error: 'must be a number from 0 to 1' })
  .max(1, { error: 'must be a number from 0 to 1' });

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A JSON object kept as sent (not copied), with its nesting bounded. */
const jsonObject = z.custom<Record<string, unknown>>().superRefine((value, ctx) => {
  if (!isPlainObject(value)) {
    ctx.addIssue({ code: 'custom', message: 'must be a JSON object' });
  } else if (nestsDeeperThan(value, MAX_JSON_DEPTH)) {
    ctx.addIssue({ code: 'custom', message: `must not nest deeper than ${MAX_JSON_DEPTH} levels` });
  }
});

const NOT_AN_OBJECT = 'must be an object';

const oneOf = (values: readonly string[]) => (issue: { code?: string }) => {
  if (issue.code === 'invalid_type') return NOT_AN_OBJECT;
  return issue.code === 'invalid_union' ? `expected one of ${values.join(', ')}` : undefined;
};

const DOCUMENT_REFUSED =
  'document blocks (PDF, plain-text documents) are not supported by local models; send the text as a text block';

/** The content block union's message: documents get their own explanation. */
function contentBlockError(issue: { code?: string; input?: unknown }): string | undefined {
  if (issue.code === 'invalid_type') return 'must be a content block (an object with a type)';
  if (issue.code !== 'invalid_union') return undefined;
  if (isPlainObject(issue.input) && issue.input.type === 'document') return DOCUMENT_REFUSED;
  return `expected one of ${BLOCK_TYPES.join(', ')}`;
}

const TEXT_BLOCK = z.object({ type: z.literal('text'), text: text('the block text') });

const IMAGE_BLOCK = z.object({
  type: z.literal('image'),
  source: z.discriminatedUnion(
    'type',
    [
      z.object({
        type: z.literal('base64'),
        media_type: z.enum(IMAGE_TYPES, { error: `expected one of ${IMAGE_TYPES.join(', ')}` }),
        data: z.string({ error: 'must be a base64 string' }).regex(BASE64, 'must be base64'),
      }),
      z.object({
        type: z.literal('url'),
        url: z.url({ protocol: /^https?$/, error: 'must be an http or https URL' }),
      }),
    ],
    { error: oneOf(['base64', 'url']) },
  ),
});

const TOOL_USE_BLOCK = z.object({
  type: z.literal('tool_use'),
  id: text('the tool_use id')
    .min(1, 'must not be empty')
    .max(256, 'must be at most 256 characters'),
  name: text('the tool name')
    .min(1, 'must not be empty')
    .max(256, 'must be at most 256 characters'),
  input: jsonObject,
});

const TOOL_RESULT_BLOCK = z.object({
  type: z.literal('tool_result'),
  tool_use_id: text('the id of the tool_use answered')
    .min(1, 'must not be empty')
    .max(256, 'must be at most 256 characters'),
  content: z
    .union(
      [
        z.string(),
        z.array(
          z.discriminatedUnion('type', [TEXT_BLOCK, IMAGE_BLOCK], {
            error: oneOf(['text', 'image']),
          }),
        ),
      ],
      { error: 'must be a string or an array of text and image blocks' },
    )
    .optional(),
  is_error: z.boolean({ error: 'must be true or false' }).optional(),
});

const THINKING_BLOCK = z.object({
  type: z.literal('thinking'),
  thinking: text('the thinking text'),
  signature: z.string().optional(),
});

const REDACTED_THINKING_BLOCK = z.object({
  type: z.literal('redacted_thinking'),
  data: z.string(),
});

const CONTENT_BLOCK = z.discriminatedUnion(
  'type',
  [
    TEXT_BLOCK,
    IMAGE_BLOCK,
    TOOL_USE_BLOCK,
    TOOL_RESULT_BLOCK,
    THINKING_BLOCK,
    REDACTED_THINKING_BLOCK,
  ],
  { error: contentBlockError },
);

const BLOCK_ROLES: Readonly<Record<string, 'user' | 'assistant'>> = {
  tool_result: 'user',
  image: 'user',
  tool_use: 'assistant',
  thinking: 'assistant',
  redacted_thinking: 'assistant',
};

const MESSAGE = z
  .object({
    role: z.enum(['user', 'assistant'], { error: 'must be "user" or "assistant"' }),
    content: z.union([z.string(), z.array(CONTENT_BLOCK)], {
      error: 'must be a string or an array of content blocks',
    }),
  })
  .superRefine((message, ctx) => {
    if (typeof message.content === 'string') return;
    message.content.forEach((block, i) => {
      const role = BLOCK_ROLES[block.type];
      if (role && role !== message.role) {
        ctx.addIssue({
          code: 'custom',
          path: ['content', i, 'type'],
          message: `${block.type} blocks belong in ${role} messages`,
        });
      }
    });
  });

const TOOL = z.object({
  type: z
    .literal('custom', {
      error: (issue) =>
        `"${String(issue.input)}" is a server tool, which runs on Anthropic's servers and is not available with local models; declare a custom tool with an input_schema instead`,
    })
    .optional(),
  name: z
    .string({ error: 'must be a string' })
    .regex(/^[a-zA-Z0-9_-]{1,128}$/, 'must match ^[a-zA-Z0-9_-]{1,128}$'),
  description: z.string({ error: 'must be a string' }).optional(),
  input_schema: jsonObject,
});

const TOOL_CHOICE = z.discriminatedUnion(
  'type',
  [
    z.object({
      type: z.enum(['auto', 'any', 'none']),
      disable_parallel_tool_use: z.boolean({ error: 'must be true or false' }).optional(),
    }),
    z.object({
      type: z.literal('tool'),
      name: z.string({ error: 'must name one of the tools' }).min(1, 'must name one of the tools'),
      disable_parallel_tool_use: z.boolean({ error: 'must be true or false' }).optional(),
    }),
  ],
  { error: oneOf(['auto', 'any', 'tool', 'none']) },
);

const THINKING = z.discriminatedUnion(
  'type',
  [
    z.object({ type: z.literal('enabled'), budget_tokens: positiveInt }),
    z.object({ type: z.literal('adaptive') }),
    z.object({ type: z.literal('disabled') }),
  ],
  { error: oneOf(['enabled', 'adaptive', 'disabled']) },
);

const COMMON = {
  model: z
    .string({ error: 'must be a string naming a model' })
    .min(1, 'must not be empty')
    .max(256, 'must be at most 256 characters'),
  messages: z
    .array(MESSAGE, { error: 'must be an array of messages' })
    .min(1, 'must hold at least one message')
    .max(MAX_MESSAGES, `must hold at most ${MAX_MESSAGES} messages`),
  system: z
    .union([z.string(), z.array(TEXT_BLOCK)], {
      error: 'must be a string or an array of text blocks',
    })
    .optional(),
  tools: z
    .array(TOOL, { error: 'must be an array of tools' })
    .max(MAX_TOOLS, `must hold at most ${MAX_TOOLS} tools`)
    .optional(),
  tool_choice: TOOL_CHOICE.optional(),
  thinking: THINKING.optional(),
};

const MESSAGES_REQUEST = z.object({
  ...COMMON,
  max_tokens: positiveInt,
  stop_sequences: z
    .array(
      z
        .string({ error: 'must be a string' })
        .min(1, 'must not be empty')
        .max(1000, 'must be at most 1000 characters'),
      { error: 'must be an array of strings' },
    )
    .max(MAX_STOP_SEQUENCES, `must hold at most ${MAX_STOP_SEQUENCES} sequences`)
    .optional(),
  temperature: unitInterval.optional(),
  top_p: unitInterval.optional(),
  top_k: z
    .number({ error: 'must be a non-negative integer' })
    .int({ error: 'must be a non-negative integer' })
    .min(0, { error: 'must be a non-negative integer' })
    .optional(),
  stream: z.boolean({ error: 'must be true or false' }).optional(),
  // Accepted as Anthropic defines it, then not forwarded.
  metadata: z
    .object(
      { user_id: z.string().max(256, 'must be at most 256 characters').nullable().optional() },
      { error: 'must be an object such as {"user_id": "..."}' },
    )
    .nullable()
    .optional(),
});

const COUNT_TOKENS_REQUEST = z.object({ ...COMMON, max_tokens: positiveInt.optional() });

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let value = body;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

type Issue = z.core.$ZodIssue;

/**
 * Picks the issue worth reporting. A union's issue says only "invalid input"; when exactly one
 * branch got past the type check (content was an array, so the string branch is moot), its
 * first issue is the real one.
 */
function mostSpecific(
  issue: Issue,
  prefix: PropertyKey[] = [],
): { issue: Issue; path: PropertyKey[] } {
  const path = [...prefix, ...issue.path];
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    const relevant = issue.errors.filter(
      (branch) =>
        !(branch.length === 1 && branch[0]?.code === 'invalid_type' && branch[0].path.length === 0),
    );
    const first = relevant.length === 1 ? relevant[0]?.[0] : undefined;
    if (first) return mostSpecific(first, path);
  }
  return { issue, path };
}

function describe(error: z.ZodError, body: unknown): string {
  const first = error.issues[0];
  if (!first) return 'the request body is not valid';
  const { issue, path } = mostSpecific(first);
  const name = path.map(String).join('.');
  const missing =
    issue.code === 'invalid_type' || (issue.code === 'invalid_union' && issue.errors.length > 0);
  if (missing && valueAt(body, path) === undefined) return `${name}: required`;
  return name ? `${name}: ${issue.message}` : issue.message;
}

/** Counts content blocks without trusting the shape; stops once past the limit. */
function countBlocks(body: Record<string, unknown>): number {
  let count = Array.isArray(body.system) ? body.system.length : 0;
  const messages = body.messages;
  if (!Array.isArray(messages)) return count;
  for (const message of messages) {
    const content: unknown = isPlainObject(message) ? message.content : undefined;
    if (!Array.isArray(content)) {
      count += 1;
      continue;
    }
    count += content.length;
    if (count > MAX_CONTENT_BLOCKS) return count;
    for (const block of content) {
      if (isPlainObject(block) && Array.isArray(block.content)) count += block.content.length;
    }
    if (count > MAX_CONTENT_BLOCKS) return count;
  }
  return count;
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  if (!isPlainObject(body)) {
    throw new HttpError(400, 'invalid_request_error', 'the request body must be a JSON object');
  }
  if (Array.isArray(body.messages) && body.messages.length > MAX_MESSAGES) {
    throw new HttpError(
      400,
      'invalid_request_error',
      `messages: must hold at most ${MAX_MESSAGES} messages`,
    );
  }
  if (countBlocks(body) > MAX_CONTENT_BLOCKS) {
    throw new HttpError(
      400,
      'invalid_request_error',
      `messages: the request holds more than ${MAX_CONTENT_BLOCKS} content blocks in total`,
    );
  }
  const result = schema.safeParse(body);
  if (!result.success)
    throw new HttpError(400, 'invalid_request_error', describe(result.error, body));
  return result.data;
}

/**
 * Validates a `POST /v1/messages` body. Unknown fields (metadata, service_tier,
 * cache_control, ...) are dropped; a wrong shape is a 400 naming the field, such as
 * `messages.0.content.2.type: expected one of text, image, ...`.
 */
export function parseMessagesRequest(body: unknown): MessagesRequest {
  const request: MessagesRequest = parse(MESSAGES_REQUEST, body);
  return request;
}

/** Validates a `POST /v1/messages/count_tokens` body (max_tokens optional). */
export function parseCountTokensRequest(body: unknown): CountTokensRequest {
  const request: CountTokensRequest = parse(COUNT_TOKENS_REQUEST, body);
  return request;
}

type ChatPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };
type ChatToolCall = {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
};
type ChatMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string | ChatPart[] }
  | { role: 'assistant'; content: string | null; tool_calls?: ChatToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string };

function imageUrl(block: ImageBlock): ChatPart {
  const { source } = block;
  const url =
    source.type === 'base64'
      ? `data:${source.media_type};base64,${source.data.replace(/\s+/g, '')}`
      : source.url;
  return { type: 'image_url', image_url: { url } };
}

function textOf(blocks: readonly ContentBlock[]): string {
  return blocks
    .filter((b): b is TextBlock => b.type === 'text')
    .map((b) => b.text)
    .join(BLOCK_SEPARATOR);
}

/** A user turn's parts: a plain string when it is text only, parts when it holds images. */
function userContent(parts: ChatPart[]): string | ChatPart[] {
  if (parts.every((p) => p.type === 'text')) {
    return parts.map((p) => (p.type === 'text' ? p.text : '')).join(BLOCK_SEPARATOR);
  }
  return parts;
}

function toolMessage(block: ToolResultBlock): { message: ChatMessage; images: ChatPart[] } {
  const content = block.content ?? '';
  const blocks = typeof content === 'string' ? [] : content;
  let body = typeof content === 'string' ? content : textOf(blocks);
  if (block.is_error && !/^error\b/i.test(body)) body = `${TOOL_ERROR_PREFIX}${body}`.trimEnd();
  const images = blocks.filter((b): b is ImageBlock => b.type === 'image').map(imageUrl);
  if (images.length > 0) {
    images.unshift({ type: 'text', text: `Image returned by tool call ${block.tool_use_id}:` });
  }
  return { message: { role: 'tool', tool_call_id: block.tool_use_id, content: body }, images };
}

function userMessages(blocks: readonly ContentBlock[]): ChatMessage[] {
  const tools: ChatMessage[] = [];
  const toolImages: ChatPart[] = [];
  const parts: ChatPart[] = [];
  for (const block of blocks) {
    if (block.type === 'tool_result') {
      const { message, images } = toolMessage(block);
      tools.push(message);
      toolImages.push(...images);
    } else if (block.type === 'text') {
      parts.push({ type: 'text', text: block.text });
    } else if (block.type === 'image') {
      parts.push(imageUrl(block));
    }
  }
  const rest = [...toolImages, ...parts];
  if (rest.length === 0) return tools.length > 0 ? tools : [{ role: 'user', content: '' }];
  return [...tools, { role: 'user', content: userContent(rest) }];
}

function assistantMessage(blocks: readonly ContentBlock[]): ChatMessage | undefined {
  const content = textOf(blocks);
  const toolCalls: ChatToolCall[] = blocks
    .filter((b) => b.type === 'tool_use')
    .map((b) => ({
      id: b.id,
      type: 'function',
      function: { name: b.name, arguments: JSON.stringify(b.input) },
    }));
  const hasText = blocks.some((b) => b.type === 'text');
  if (toolCalls.length > 0) {
    return { role: 'assistant', content: hasText ? content : null, tool_calls: toolCalls };
  }
  return hasText ? { role: 'assistant', content } : undefined;
}

function chatMessages(message: MessageParam): ChatMessage[] {
  if (typeof message.content === 'string') {
    return [{ role: message.role, content: message.content }];
  }
  if (message.role === 'user') return userMessages(message.content);
  const assistant = assistantMessage(message.content);
  return assistant ? [assistant] : [];
}

function asParts(content: string | ChatPart[]): ChatPart[] {
  return typeof content === 'string' ? [{ type: 'text', text: content }] : content;
}

/**
 * Merges consecutive user messages and consecutive assistant messages, as Anthropic does:
 * chat templates of several local models (Gemma, Mistral) refuse roles that do not alternate,
 * and dropping a thinking-only assistant turn can leave two user turns in a row.
 */
function mergeConsecutive(messages: ChatMessage[]): ChatMessage[] {
  const merged: ChatMessage[] = [];
  for (const message of messages) {
    const last = merged[merged.length - 1];
    if (last?.role === 'user' && message.role === 'user') {
      last.content =
        typeof last.content === 'string' && typeof message.content === 'string'
          ? `${last.content}${BLOCK_SEPARATOR}${message.content}`
          : [...asParts(last.content), ...asParts(message.content)];
    } else if (last?.role === 'assistant' && message.role === 'assistant') {
      const texts = [last.content, message.content].filter((t): t is string => t !== null);
      last.content = texts.length > 0 ? texts.join(BLOCK_SEPARATOR) : null;
      const calls = [...(last.tool_calls ?? []), ...(message.tool_calls ?? [])];
      if (calls.length > 0) last.tool_calls = calls;
    } else {
      merged.push(message);
    }
  }
  return merged;
}

function systemText(system: string | TextBlock[] | undefined): string | undefined {
  if (system === undefined) return undefined;
  const value = typeof system === 'string' ? system : textOf(system);
  return value === '' ? undefined : value;
}

/**
 * Builds the OpenAI chat completions body for a validated Messages request, addressed to the
 * local `model`. Thinking blocks from earlier turns are dropped; `thinking` becomes
 * `chat_template_kwargs.enable_thinking` (understood by llama.cpp and vLLM, ignored elsewhere).
 * Run the result through the gateway's `applyPolicy('chat', ...)` to clamp max_tokens.
 */
export function toChatCompletions(
  req: MessagesRequest | CountTokensRequest,
  model: string,
): Record<string, unknown> {
  const messages: ChatMessage[] = [];
  const system = systemText(req.system);
  if (system !== undefined) messages.push({ role: 'system', content: system });
  for (const message of req.messages) messages.push(...chatMessages(message));

  const body: Record<string, unknown> = { model, messages: mergeConsecutive(messages) };
  if ('max_tokens' in req && req.max_tokens !== undefined) body.max_tokens = req.max_tokens;
  if ('stop_sequences' in req && req.stop_sequences?.length) body.stop = req.stop_sequences;
  if ('temperature' in req && req.temperature !== undefined) body.temperature = req.temperature;
  if ('top_p' in req && req.top_p !== undefined) body.top_p = req.top_p;
  if ('top_k' in req && req.top_k !== undefined) body.top_k = req.top_k;
  if ('stream' in req && req.stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }

  if (req.tools && req.tools.length > 0) {
    body.tools = req.tools.map((tool) => ({
      type: 'function',
      function: {
        name: tool.name,
        ...(tool.description !== undefined ? { description: tool.description } : {}),
        parameters: tool.input_schema,
      },
    }));
    const choice = req.tool_choice;
    if (choice) {
      body.tool_choice =
        choice.type === 'tool'
          ? { type: 'function', function: { name: choice.name } }
          : { auto: 'auto', any: 'required', none: 'none' }[choice.type];
    }
    // Anthropic allows parallel tool calls unless told otherwise; llama.cpp defaults to not.
    body.parallel_tool_calls = choice?.disable_parallel_tool_use !== true;
  }

  if (req.thinking) {
    body.chat_template_kwargs = { enable_thinking: req.thinking.type !== 'disabled' };
  }
  return body;
}

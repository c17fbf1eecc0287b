import { z } from 'zod';
import { HttpError } from '../server/errors.js';

export interface RequestPolicy {
  /** Largest max_tokens / max_completion_tokens; also the value set when absent. */
  maxTokens: number;
  /** Largest `n`. */
  maxChoices: number;
}

const MODEL = z
  .string({ error: 'must be a string naming a model (GET /v1/models lists them)' })
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters');

const TOKEN_COUNT = z
  .number({ error: 'must be a positive integer' })
  .int('must be a positive integer')
  .positive('must be a positive integer');

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'] as const;

const MESSAGE = z.looseObject({
  role: z.enum(ROLES, { error: `must be one of ${ROLES.join(', ')}` }),
  content: z
    .union([z.string(), z.array(z.unknown()), z.null()], {
      error: 'must be a string, an array of content parts, or null',
    })
    .optional(),
});

const COMMON = {
  model: MODEL,
  stream: z.boolean({ error: 'must be true or false' }).optional(),
  stream_options: z.looseObject({}, { error: 'must be an object' }).nullable().optional(),
  n: TOKEN_COUNT.optional().nullable(),
};

const CHAT = z.looseObject({
  ...COMMON,
  messages: z
    .array(MESSAGE, { error: 'must be an array of messages' })
    .min(1, 'must hold at least one message')
    .max(10_000, 'must hold at most 10000 messages'),
  max_tokens: TOKEN_COUNT.optional().nullable(),
  max_completion_tokens: TOKEN_COUNT.optional().nullable(),
});

const PROMPT_INPUT = z.union(
  [z.string(), z.array(z.string()), z.array(z.number()), z.array(z.array(z.number()))],
  { error: 'must be a string, an array of strings, or token arrays' },
);

const COMPLETION = z.looseObject({
  ...COMMON,
  prompt: PROMPT_INPUT,
  max_tokens: TOKEN_COUNT.optional().nullable(),
  max_completion_tokens: TOKEN_COUNT.optional().nullable(),
});

const EMBEDDING = z.looseObject({
  model: MODEL,
  input: PROMPT_INPUT.refine((v) => !(Array.isArray(v) && v.length === 0), 'must not be empty'),
});

export type Endpoint = 'chat' | 'completion' | 'embedding';
const SCHEMAS = { chat: CHAT, completion: COMPLETION, embedding: EMBEDDING } as const;

/** A validated request body ready to forward (unknown fields are kept for the upstream). */
export type ForwardBody = Record<string, unknown> & { model: string; stream?: boolean };

function valueAt(body: unknown, path: PropertyKey[]): unknown {
  let value = body;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function describe(error: z.ZodError, body: unknown): string {
  const issue = error.issues[0];
  if (!issue) return 'the request body is not valid';
  const path = issue.path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
  if (issue.code === 'invalid_type' && valueAt(body, issue.path) === undefined) {
    return `${path} is required`;
  }
  return path ? `${path}: ${issue.message}` : issue.message;
}

const ROLE_SET: ReadonlySet<string> = new Set(ROLES);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): boolean {
  return (
    value === undefined || value === null || (Number.isSafeInteger(value) && (value as number) > 0)
  );
}

function isPromptInput(value: unknown): boolean {
  if (typeof value === 'string') return true;
  if (!Array.isArray(value) || value.length === 0) return false;
  const first = value[0];
  if (typeof first === 'string') return value.every((v) => typeof v === 'string');
  if (typeof first === 'number') return value.every((v) => typeof v === 'number');
  return value.every((v) => Array.isArray(v) && v.every((n) => typeof n === 'number'));
}

/**
 * A cheap check that accepts only bodies the schema above accepts too, so the common, valid
 * request skips zod (whose full parse cost ~20 us per request on the hot path). Anything
 * it is unsure of goes through zod, which gives the error message.
 */
export function surelyValid(endpoint: Endpoint, body: Record<string, unknown>): boolean {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0 || model.length > 256) return false;
  if (endpoint === 'embedding') return isPromptInput(body.input);
  if (body.stream !== undefined && typeof body.stream !== 'boolean') return false;
  const options = body.stream_options;
  if (options !== undefined && options !== null && !isRecord(options)) return false;
  if (!isCount(body.n) || !isCount(body.max_tokens) || !isCount(body.max_completion_tokens)) {
    return false;
  }
  if (endpoint === 'completion') return isPromptInput(body.prompt);
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0 || messages.length > 10_000) return false;
  for (const message of messages) {
    if (!isRecord(message) || typeof message.role !== 'string' || !ROLE_SET.has(message.role)) {
      return false;
    }
    const content = message.content;
    if (
      content !== undefined &&
      content !== null &&
      typeof content !== 'string' &&
      !Array.isArray(content)
    ) {
      return false;
    }
  }
  return true;
}

/** The full schema check (the fast path's reference; exported for its test). */
export function schemaCheck(endpoint: Endpoint, body: unknown) {
  return SCHEMAS[endpoint].safeParse(body);
}

/**
 * Checks a request body's shape and applies the limits: max_tokens clamped to the policy
 * maximum (and set when absent), `n` clamped. A wrong shape is a 400 saying what is wrong.
 */
export function applyPolicy(endpoint: Endpoint, body: unknown, policy: RequestPolicy): ForwardBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'invalid_request', 'the request body must be a JSON object');
  }
  let out: ForwardBody;
  if (surelyValid(endpoint, body as Record<string, unknown>)) {
    out = body as ForwardBody;
  } else {
    const result = schemaCheck(endpoint, body);
    if (!result.success) throw new HttpError(400, 'invalid_request', describe(result.error, body));
    out = result.data as ForwardBody;
  }

  if (endpoint !== 'embedding') {
    const clamp = (value: unknown) => Math.min(value as number, policy.maxTokens);
    if (typeof out.max_completion_tokens === 'number') {
      out.max_completion_tokens = clamp(out.max_completion_tokens);
    }
    if (typeof out.max_tokens === 'number') out.max_tokens = clamp(out.max_tokens);
    else if (typeof out.max_completion_tokens !== 'number') out.max_tokens = policy.maxTokens;
    if (typeof out.n === 'number') out.n = Math.min(out.n, policy.maxChoices);
  }
  return out;
}

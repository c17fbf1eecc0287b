import { z } from 'zod';
import { HttpError } from '../server/errors.js';

export const DEFAULT_TITLE = 'New chat';
export const MAX_TITLE = 200;
export const MAX_SYSTEM_PROMPT = 20_000;
export const MAX_CONTENT = 100_000;
export const MAX_QUERY = 200;

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

const title = z
  .string({ error: 'must be a string' })
  .max(MAX_TITLE, `must be at most ${MAX_TITLE} characters`)
  .refine((value) => value.trim() !== '', 'must not be empty');
const systemPrompt = z
  .string({ error: 'must be a string' })
  .max(MAX_SYSTEM_PROMPT, `must be at most ${MAX_SYSTEM_PROMPT} characters`);
const model = z
  .string({ error: 'must be a string naming a model (GET /api/models lists them)' })
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters');

export const CreateConversation = z.strictObject({
  title: title.optional(),
  model: model.optional(),
  system_prompt: systemPrompt.optional(),
});

export const UpdateConversation = z
  .strictObject({
    title: title.optional(),
    system_prompt: systemPrompt.optional(),
    model: model.nullable().optional(),
  })
  .refine(
    (body) => Object.keys(body).length > 0,
    'name at least one of title, system_prompt, model',
  );

export const SendMessage = z.strictObject({
  content: z
    .string({ error: 'must be a string' })
    .min(1, 'must not be empty')
    .max(MAX_CONTENT, `must be at most ${MAX_CONTENT} characters`)
    .refine((value) => value.trim() !== '', 'must not be blank'),
  model: model.optional(),
});

export const Regenerate = z.strictObject({ model: model.optional() });

export const ListQuery = z.object({
  q: z
    .string({ error: 'must be given once' })
    .max(MAX_QUERY, `must be at most ${MAX_QUERY} characters`)
    .optional(),
});

export const ExportQuery = z.object({
  format: z
    .enum(['markdown', 'json'], { error: 'must be markdown or json' })
    .optional()
    .default('markdown'),
});

export function conversationNotFound(): HttpError {
  return new HttpError(404, 'conversation_not_found', 'no such conversation');
}

/** The conversation id of a route's URL; anything but a UUIDv4 is as unknown as a missing one. */
export function conversationId(params: unknown): string {
  const id = (params as { id?: unknown } | undefined)?.id;
  if (typeof id !== 'string' || !UUID_V4.test(id)) throw conversationNotFound();
  return id.toLowerCase();
}

import type { z } from 'zod';
import { HttpError } from './errors.js';

/**
 * Parses a request part with a zod schema, or throws a 400 whose message names the first
 * bad field and what was wrong with it.
 *
 * @example
 * const body = parseWith(CreateConversation, request.body, 'body');
 */
export function parseWith<T extends z.ZodType>(
  schema: T,
  value: unknown,
  what: string,
): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue && issue.path.length > 0 ? ` field "${issue.path.join('.')}"` : '';
  throw new HttpError(
    400,
    'invalid_request',
    `invalid ${what}${field}: ${issue?.message ?? 'not valid'}`,
  );
}

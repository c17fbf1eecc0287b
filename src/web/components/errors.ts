import { ApiError } from '../api.js';

/** A sentence for the user from whatever a request threw. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 429 && error.retryAfter !== undefined && error.retryAfter > 0) {
      return `${error.message} (try again in ${Math.ceil(error.retryAfter)} s)`;
    }
    return error.message;
  }
  if (error instanceof TypeError) return 'Cannot reach the server. Check the connection and retry.';
  if (error instanceof Error && error.message) return error.message;
  return 'Something went wrong.';
}

/** The fetch was cancelled by its AbortController (the Stop button, leaving a conversation). */
export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'AbortError';
}

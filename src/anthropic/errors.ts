import type { ErrorBody } from '../server/errors.js';

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

/**
 * Anthropic's error type for an HTTP status. Anthropic answers overload with 529; Palisade
 * keeps its own statuses and maps 503 (no capacity, e.g. stream slots or a busy upstream)
 * and 529 to `overloaded_error`. An unreachable or failing upstream (502) and an upstream
 * timeout (504) are `api_error`, as is every other 5xx; any other 4xx is
 * `invalid_request_error`, as Anthropic documents.
 */
export function anthropicErrorType(status: number): AnthropicErrorType {
  switch (status) {
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
    case 529:
      return 'overloaded_error';
  }
  return status >= 500 ? 'api_error' : 'invalid_request_error';
}

/**
 * The Anthropic face's error body: `{type:'error', error:{type, message}, request_id}`.
 * Pass it to `sendError` for routes under `/v1/messages`.
 */
export const anthropicErrorBody: ErrorBody = (error, requestId) => ({
  type: 'error',
  error: { type: anthropicErrorType(error.status), message: error.message },
  request_id: requestId,
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../server/errors.js';
import { anthropicErrorBody, anthropicErrorType } from './errors.js';

test('statuses map to Anthropic error types', () => {
  const table: Array<[number, string]> = [
    [400, 'invalid_request_error'],
    [401, 'authentication_error'],
    [403, 'permission_error'],
    [404, 'not_found_error'],
    [405, 'invalid_request_error'],
    [413, 'request_too_large'],
    [415, 'invalid_request_error'],
    [429, 'rate_limit_error'],
    [500, 'api_error'],
    [502, 'api_error'],
    [503, 'overloaded_error'],
    [504, 'api_error'],
    [529, 'overloaded_error'],
  ];
  for (const [status, type] of table)
    assert.equal(anthropicErrorType(status), type, String(status));
});

test('the error body has the Anthropic shape and the request id', () => {
  const error = new HttpError(404, 'model_not_found', 'model "claude-x" is not mapped', {
    type: 'something_else',
  });
  assert.deepEqual(anthropicErrorBody(error, 'req-1'), {
    type: 'error',
    error: { type: 'not_found_error', message: 'model "claude-x" is not mapped' },
    request_id: 'req-1',
  });
});

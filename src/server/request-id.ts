import { randomUUID } from 'node:crypto';

/**
 * A fresh id for every request: `req_` + 24 hex characters. Incoming `x-request-id`
 * headers are not trusted: a client must not be able to forge or collide log lines.
 */
export function newRequestId(): string {
  return `req_${randomUUID().replaceAll('-', '').slice(0, 24)}`;
}

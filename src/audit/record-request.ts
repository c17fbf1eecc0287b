import type { AuditEvent, AuditLog } from './audit-log.js';

/** What the log keeps of a request: the client's address and the request's id (a Fastify request fits). */
export interface AuditRequest {
  ip: string;
  id: string;
}

/**
 * Records `event` with the address and id of the request that caused it; `undefined` for
 * an event no request caused (a CLI command), which is then recorded without either.
 *
 * @example
 * recordRequest(audit, request, { action: 'auth.logout', actor: 'user:alice' });
 */
export function recordRequest(
  audit: AuditLog,
  request: AuditRequest | undefined,
  event: Omit<AuditEvent, 'ip' | 'requestId'>,
): void {
  audit.record({ ...event, ...(request && { ip: request.ip, requestId: request.id }) });
}

import type { FastifyRequest } from 'fastify';
import { recordRequest, type AuditEvent, type AuditLog } from '../audit/index.js';
import type { KeyRing, SessionUser } from '../auth/index.js';
import type { ScryptParams } from '../crypto/index.js';
import type { Lookup, UpstreamRegistry } from '../gateway/index.js';
import type { Store } from '../store/index.js';

export interface AdminOptions {
  store: Store;
  audit: AuditLog;
  /** The server's key ring, told to reload after keys are created or revoked here. */
  keys: KeyRing;
  /** The live upstreams: listed with their health, brought in step after an add or remove. */
  registry: UpstreamRegistry;
  /** Seals the API key of an upstream added here (none can be given yet). */
  masterKey: Buffer;
  /** Cost of the password hashes of users created here. */
  scrypt: ScryptParams;
  /** DNS lookup for the SSRF check of an added upstream; replaceable in tests. */
  lookup?: Lookup;
  /**
   * Brings the registry in step after an add or remove here; `registry.syncStore()` by
   * default. That skips a sync when SQLite's data_version is unchanged, which is the case for
   * this process's own writes: pass a forced sync once the registry offers one.
   */
  syncUpstreams?: () => Promise<void>;
}

/** Records an admin's change with who did it, from where, and the request's id. */
export function recordChange(
  audit: AuditLog,
  request: FastifyRequest,
  admin: SessionUser,
  event: Omit<AuditEvent, 'actor' | 'ip' | 'requestId'>,
): void {
  recordRequest(audit, request, { ...event, actor: `user:${admin.username}` });
}

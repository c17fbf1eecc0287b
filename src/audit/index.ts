export {
  createAuditLog,
  verifyAudit,
  listAuditEntries,
  type AuditEntry,
  type AuditEvent,
  type AuditLog,
  type AuditValue,
  type AuditVerifyResult,
} from './audit-log.js';
export { recordRequest, type AuditRequest } from './record-request.js';

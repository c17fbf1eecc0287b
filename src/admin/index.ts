export { admin } from './routes.js';
export type { AdminOptions } from './options.js';
export { isTotpRequired, setTotpRequired, type InstanceSettings } from './instance-settings.js';
export { queryAudit, type AuditPage, type AuditQuery } from './audit-query.js';
export { describeKey } from './keys.js';
export {
  keyFiles,
  rotateMasterKey,
  RotationError,
  settleKeyFiles,
  type RotateOptions,
  type RotateResult,
  type SettleOutcome,
} from './rotate.js';

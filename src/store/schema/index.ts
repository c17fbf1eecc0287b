import type * as account from './account.js';
import type * as chat from './chat.js';
import type * as anthropicModel from './anthropic-model.js';
import type * as apiKey from './api-key.js';
import type * as auditEntry from './audit-entry.js';
import type * as jobs from './jobs.js';
import type * as mesh from './mesh.js';
import type * as upstream from './upstream.js';

export type Database = apiKey.PartialDB &
  upstream.PartialDB &
  auditEntry.PartialDB &
  anthropicModel.PartialDB &
  mesh.PartialDB &
  account.PartialDB &
  chat.PartialDB &
  jobs.PartialDB;

export type { ApiKeyRow, ApiKeyTable, KeyScope } from './api-key.js';
export type { UpstreamRow, UpstreamTable } from './upstream.js';
export type { AnthropicModelRow, AnthropicModelTable } from './anthropic-model.js';
export type { AuditEntryRow, AuditEntryTable } from './audit-entry.js';
export type {
  MeshClaimRow,
  MeshEventRow,
  MeshMessageRow,
  MeshPeerRow,
  MeshPresence,
  MeshStateRow,
  MeshStatus,
} from './mesh.js';
export type {
  LoginChallengeRow,
  RecoveryCodeRow,
  SessionRow,
  UserRole,
  UserRow,
  UserSecretKind,
  UserSecretRow,
} from './account.js';
export type { ChatMessageRow, ChatMessageStatus, ChatRole, ConversationRow } from './chat.js';
export type { JobParamValue, JobRunRow, JobRunTable, JobStatus } from './jobs.js';
export * from './types.js';

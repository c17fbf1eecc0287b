import type { Generated, Selectable } from 'kysely';
import type { IsoDate, JsonText } from './types.js';

// The agent mesh's tables (src/mesh). They are read and written together by the broker in
// single transactions, so they share one file.

export type MeshPresence = 'online' | 'gone' | 'left';
export type MeshStatus = 'active' | 'busy' | 'idle' | 'blocked';

/** A coding-agent session registered with the broker. */
export interface MeshPeerTable {
  /** UUIDv4 handed out at registration. */
  id: string;
  name: string;
  /** Which agent started the session (claude-code, codex, ...), from its environment. */
  agent: string;
  cwd: string;
  git_root: string | null;
  pid: number | null;
  summary: string;
  status: MeshStatus;
  /** online; gone (missed its heartbeats, may come back); left (unregistered). */
  presence: MeshPresence;
  registered_at: IsoDate;
  last_seen_at: IsoDate;
  left_at: IsoDate | null;
}

/** A message; `to_peer` null is a broadcast, delivered to every peer in `scope` at send time. */
export interface MeshMessageTable {
  /** The seq of the message's `message.sent` event. */
  id: number;
  from_peer: string;
  from_name: string;
  to_peer: string | null;
  scope: string | null;
  text: string;
  created_at: IsoDate;
}

/** One message in one peer's inbox. */
export interface MeshDeliveryTable {
  peer_id: string;
  message_id: number;
  read_at: IsoDate | null;
}

export interface MeshEventTable {
  /** Grows with every event; a `message.sent` event's seq is its message's id. */
  seq: Generated<number>;
  type: string;
  /** The peer the event is about or by. */
  peer_id: string | null;
  data: JsonText<Record<string, unknown>>;
  created_at: IsoDate;
}

/** The shared scratchpad, namespaced by project. */
export interface MeshStateTable {
  project: string;
  key: string;
  value: string;
  set_by: string;
  set_by_name: string;
  updated_at: IsoDate;
}

/** An advisory lock on a path. */
export interface MeshClaimTable {
  path: string;
  peer_id: string;
  claimed_at: IsoDate;
  expires_at: IsoDate;
}

export type MeshPeerRow = Selectable<MeshPeerTable>;
export type MeshMessageRow = Selectable<MeshMessageTable>;
export type MeshEventRow = Selectable<MeshEventTable>;
export type MeshStateRow = Selectable<MeshStateTable>;
export type MeshClaimRow = Selectable<MeshClaimTable>;

export type PartialDB = {
  mesh_peer: MeshPeerTable;
  mesh_message: MeshMessageTable;
  mesh_delivery: MeshDeliveryTable;
  mesh_event: MeshEventTable;
  mesh_state: MeshStateTable;
  mesh_claim: MeshClaimTable;
};

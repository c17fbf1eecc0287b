import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import type { Statement } from 'better-sqlite3';
import { HttpError } from '../server/errors.js';
import type {
  IsoDate,
  MeshClaimRow,
  MeshEventRow,
  MeshMessageRow,
  MeshPeerRow,
  MeshStateRow,
  MeshStatus,
  Store,
} from '../store/index.js';

/** Where a peer looks: the whole machine, its working directory, or its git repository. */
export type Scope = 'machine' | 'directory' | 'repo';

export interface MeshLimits {
  /** A peer without a heartbeat for this long is marked gone. */
  peerTimeoutMs: number;
  /** Default lifetime of a file claim. */
  claimTtlMs: number;
  /** Messages older than this are pruned. */
  messageTtlMs: number;
  /** Events (and peers that left or went away) older than this are pruned. */
  eventTtlMs: number;
}

export const DEFAULT_MESH_LIMITS: MeshLimits = {
  peerTimeoutMs: 60_000,
  claimTtlMs: 10 * 60_000,
  messageTtlMs: 24 * 3_600_000,
  eventTtlMs: 48 * 3_600_000,
};

/** A peer as the API shows it: its row, less when it left. */
export type PeerView = Omit<MeshPeerRow, 'left_at'>;

export interface MessageView {
  id: number;
  from: { id: string; name: string };
  /** The recipient of a direct message; null for a broadcast. */
  to: string | null;
  scope: Scope | null;
  text: string;
  sent_at: string;
  read_at?: string | null;
}

export type EventType =
  | 'peer.joined'
  | 'peer.left'
  | 'peer.summary'
  | 'peer.status'
  | 'peer.moved'
  | 'message.sent'
  | 'state.changed'
  | 'file.claimed'
  | 'file.released';

export interface EventView {
  seq: number;
  type: EventType;
  peer_id: string | null;
  data: Record<string, unknown>;
  at: string;
  /** On `message.sent` events handed to one of the message's recipients: the message. */
  message?: MessageView;
}

export interface ClaimView {
  path: string;
  peer_id: string;
  peer_name: string;
  claimed_at: string;
  expires_at: string;
}

export interface StateView {
  project: string;
  key: string;
  value: string;
  set_by: { id: string; name: string };
  updated_at: string;
}

/** What the broker tells live listeners (the SSE streams and long polls) after each commit. */
export interface BrokerNotice {
  event: EventView;
  /** Peers that may see the event; null when every peer may. */
  audience: ReadonlySet<string> | null;
  message?: MessageView;
}

export interface NewPeer {
  name?: string | undefined;
  agent?: string | undefined;
  cwd: string;
  git_root?: string | null | undefined;
  pid?: number | null | undefined;
  summary?: string | undefined;
  status?: MeshStatus | undefined;
}

export interface PeerChanges {
  name?: string | undefined;
  agent?: string | undefined;
  summary?: string | undefined;
  status?: MeshStatus | undefined;
  /** A session that moved to another directory (or repository). */
  cwd?: string | undefined;
  git_root?: string | null | undefined;
}

export interface MeshCounts {
  peers_online: number;
  peers_gone: number;
  messages: number;
  unread: number;
  events: number;
  claims: number;
}

export interface MeshBroker {
  register(input: NewPeer): { peer: PeerView; event_seq: number };
  /** Marks the peer seen; a peer that had gone comes back online. */
  heartbeat(peerId: string): PeerView;
  update(peerId: string, changes: PeerChanges): PeerView;
  unregister(peerId: string): void;
  peer(peerId: string): PeerView;
  /** True when `peerId` is registered (online, gone or left). */
  knows(peerId: string): boolean;
  /** Online and gone peers within `scope` of `viewer` (every peer for `machine`). */
  peers(options?: { scope?: Scope; viewer?: string; includeLeft?: boolean }): PeerView[];
  send(from: string, to: string, text: string): MessageView;
  /**
   * send() or broadcast() (`to` null), committed together with the other deliveries of the
   * same event-loop turn; resolves once its transaction has committed.
   */
  deliver(
    from: string,
    to: string | null,
    text: string,
    scope?: Scope,
  ): Promise<{ message: MessageView; recipients: number }>;
  broadcast(
    from: string,
    text: string,
    scope?: Scope,
  ): { message: MessageView; recipients: number };
  /** Oldest first; `after` (a message id) pages on from the last one seen. */
  inbox(
    peerId: string,
    options?: { unreadOnly?: boolean; limit?: number; after?: number },
  ): MessageView[];
  /** Marks messages read (all unread ones when `ids` is omitted); returns how many changed. */
  markRead(peerId: string, ids?: number[]): number;
  /** Events after `since` that `viewer` may see, oldest first; every event without a viewer. */
  events(options: { since?: number; viewer?: string; limit?: number }): EventView[];
  lastEventSeq(): number;
  stateGet(project: string, key: string): StateView | undefined;
  stateSet(peerId: string, project: string, key: string, value: string): StateView;
  stateList(project: string): StateView[];
  stateDelete(peerId: string, project: string, key: string): boolean;
  claim(peerId: string, path: string, ttlMs?: number): ClaimView;
  release(peerId: string, path: string): void;
  claims(): ClaimView[];
  /** Marks silent peers gone, expires claims, prunes old messages and events. */
  sweep(): { gone: number; expiredClaims: number; messages: number; events: number; peers: number };
  counts(): MeshCounts;
  subscribe(listener: (notice: BrokerNotice) => void): () => void;
  limits: MeshLimits;
}

/** Keys one project's scratchpad may hold, and claims one peer may hold: bounded growth. */
export const MAX_STATE_KEYS = 1000;
export const MAX_CLAIMS = 1000;

/** A peer's last_seen_at is written at most this often; timeouts are far longer. */
const TOUCH_EVERY_MS = 1000;

const iso = (ms: number) => new Date(ms).toISOString() as IsoDate;

function peerView(row: MeshPeerRow): PeerView {
  const { left_at: _leftAt, ...view } = row;
  return view;
}

type MessageRowWithRead = MeshMessageRow & { read_at?: string | null };

function messageView(row: MessageRowWithRead): MessageView {
  const view: MessageView = {
    id: row.id,
    from: { id: row.from_peer, name: row.from_name },
    to: row.to_peer,
    scope: row.scope as Scope | null,
    text: row.text,
    sent_at: row.created_at,
  };
  if (row.read_at !== undefined) view.read_at = row.read_at;
  return view;
}

function eventView(row: MeshEventRow): EventView {
  return {
    seq: row.seq,
    type: row.type as EventType,
    peer_id: row.peer_id,
    data: JSON.parse(row.data) as Record<string, unknown>,
    at: row.created_at,
  };
}

const notFound = (peerId: string) =>
  new HttpError(
    404,
    'peer_not_found',
    `no peer ${peerId} is registered; register again (POST /mesh/peers)`,
  );

/**
 * The mesh's core: peers, messages, events, shared state and file claims, kept in SQLite so a
 * broker restart loses nothing. Every change is one transaction that also appends its event;
 * listeners hear of it after the commit. Synchronous by design: better-sqlite3 statements run
 * in microseconds and the broker never waits on anything else.
 *
 * @example
 * const broker = createMeshBroker({ store });
 * const { peer } = broker.register({ cwd: '/src/app', agent: 'codex' });
 * broker.subscribe((notice) => console.log(notice.event.type));
 */
export function createMeshBroker(options: {
  store: Store;
  now?: () => number;
  limits?: Partial<MeshLimits>;
}): MeshBroker {
  const db = options.store.sqlite;
  const now = options.now ?? Date.now;
  const limits: MeshLimits = { ...DEFAULT_MESH_LIMITS, ...options.limits };
  const listeners = new Set<(notice: BrokerNotice) => void>();

  const q = {
    insertPeer: db.prepare(
      `insert into mesh_peer (id, name, agent, cwd, git_root, pid, summary, status, presence, registered_at, last_seen_at)
       values (@id, @name, @agent, @cwd, @git_root, @pid, @summary, @status, 'online', @at, @at)`,
    ),
    peer: db.prepare('select * from mesh_peer where id = ?') as Statement<[string], MeshPeerRow>,
    exists: db.prepare('select 1 from mesh_peer where id = ?').pluck(),
    stateCount: db.prepare('select count(*) from mesh_state where project = ?').pluck(),
    claimCount: db.prepare('select count(*) from mesh_claim where peer_id = ?').pluck(),
    touchPeer: db.prepare(
      "update mesh_peer set last_seen_at = ?, presence = 'online' where id = ? and presence != 'left'",
    ),
    updatePeer: db.prepare(
      `update mesh_peer set name = @name, agent = @agent, summary = @summary, status = @status,
       cwd = @cwd, git_root = @git_root, last_seen_at = @at where id = @id`,
    ),
    leavePeer: db.prepare(
      "update mesh_peer set presence = @presence, left_at = @at where id = @id and presence != 'left'",
    ),
    livePeers: db.prepare(
      "select * from mesh_peer where presence != 'left' order by registered_at",
    ) as Statement<[], MeshPeerRow>,
    allPeers: db.prepare('select * from mesh_peer order by registered_at') as Statement<
      [],
      MeshPeerRow
    >,
    silentPeers: db.prepare(
      "select * from mesh_peer where presence = 'online' and last_seen_at < ?",
    ) as Statement<[string], MeshPeerRow>,
    insertMessage: db.prepare(
      'insert into mesh_message (id, from_peer, from_name, to_peer, scope, text, created_at) values (?, ?, ?, ?, ?, ?, ?)',
    ),
    insertDelivery: db.prepare('insert into mesh_delivery (peer_id, message_id) values (?, ?)'),
    inboxAll: db.prepare(
      `select m.*, d.read_at from mesh_delivery d join mesh_message m on m.id = d.message_id
       where d.peer_id = ? and d.message_id > ? order by d.message_id limit ?`,
    ) as Statement<[string, number, number], MessageRowWithRead>,
    inboxUnread: db.prepare(
      `select m.*, d.read_at from mesh_delivery d join mesh_message m on m.id = d.message_id
       where d.peer_id = ? and d.message_id > ? and d.read_at is null order by d.message_id limit ?`,
    ) as Statement<[string, number, number], MessageRowWithRead>,
    markAllRead: db.prepare(
      'update mesh_delivery set read_at = ? where peer_id = ? and read_at is null',
    ),
    markOneRead: db.prepare(
      'update mesh_delivery set read_at = ? where peer_id = ? and message_id = ? and read_at is null',
    ),
    message: db.prepare('select * from mesh_message where id = ?') as Statement<
      [number],
      MeshMessageRow
    >,
    // A null seq is the next one; a message's event takes the message's id as its seq.
    insertEvent: db.prepare(
      'insert into mesh_event (seq, type, peer_id, data, created_at) values (?, ?, ?, ?, ?)',
    ),
    eventsAll: db.prepare(
      'select * from mesh_event where seq > ? order by seq limit ?',
    ) as Statement<[number, number], MeshEventRow>,
    // A message's event (its seq is the message's id) is seen by the message's recipients
    // only; other events by all.
    eventsFor: db.prepare(
      `select e.* from mesh_event e where e.seq > @since and (
         e.type != 'message.sent' or exists (
           select 1 from mesh_delivery d where d.message_id = e.seq and d.peer_id = @viewer))
       order by e.seq limit @limit`,
    ) as Statement<[{ since: number; viewer: string; limit: number }], MeshEventRow>,
    delivery: db.prepare(
      'select read_at from mesh_delivery where message_id = ? and peer_id = ?',
    ) as Statement<[number, string], { read_at: string | null }>,
    lastSeq: db.prepare('select coalesce(max(seq), 0) from mesh_event').pluck(),
    stateGet: db.prepare('select * from mesh_state where project = ? and key = ?') as Statement<
      [string, string],
      MeshStateRow
    >,
    stateSet: db.prepare(
      `insert into mesh_state (project, key, value, set_by, set_by_name, updated_at) values (?, ?, ?, ?, ?, ?)
       on conflict (project, key) do update set value = excluded.value, set_by = excluded.set_by,
       set_by_name = excluded.set_by_name, updated_at = excluded.updated_at`,
    ),
    stateList: db.prepare('select * from mesh_state where project = ? order by key') as Statement<
      [string],
      MeshStateRow
    >,
    stateDelete: db.prepare('delete from mesh_state where project = ? and key = ?'),
    claim: db.prepare('select * from mesh_claim where path = ?') as Statement<
      [string],
      MeshClaimRow
    >,
    upsertClaim: db.prepare(
      `insert into mesh_claim (path, peer_id, claimed_at, expires_at) values (?, ?, ?, ?)
       on conflict (path) do update set peer_id = excluded.peer_id, claimed_at = excluded.claimed_at,
       expires_at = excluded.expires_at`,
    ),
    deleteClaim: db.prepare('delete from mesh_claim where path = ?'),
    claimsOf: db.prepare('select * from mesh_claim where peer_id = ? order by path') as Statement<
      [string],
      MeshClaimRow
    >,
    expiredClaims: db.prepare(
      'select * from mesh_claim where expires_at <= ? order by path',
    ) as Statement<[string], MeshClaimRow>,
    liveClaims: db.prepare(
      `select c.*, p.name as peer_name from mesh_claim c join mesh_peer p on p.id = c.peer_id
       where c.expires_at > ? order by c.path`,
    ) as Statement<[string], MeshClaimRow & { peer_name: string }>,
    // The first id still young enough: everything before it goes (ids grow with time).
    firstFreshMessage: db
      .prepare('select id from mesh_message where created_at >= ? order by id limit 1')
      .pluck(),
    pruneMessages: db.prepare('delete from mesh_message where id < ?'),
    firstFreshEvent: db
      .prepare('select seq from mesh_event where created_at >= ? order by seq limit 1')
      .pluck(),
    pruneEvents: db.prepare(
      'delete from mesh_event where seq < ? and seq < (select max(seq) from mesh_event)',
    ),
    prunePeers: db.prepare("delete from mesh_peer where presence != 'online' and last_seen_at < ?"),
    counts: db.prepare(
      `select
         (select count(*) from mesh_peer where presence = 'online') as peers_online,
         (select count(*) from mesh_peer where presence = 'gone') as peers_gone,
         (select count(*) from mesh_message) as messages,
         (select count(*) from mesh_delivery where read_at is null) as unread,
         (select count(*) from mesh_event) as events,
         (select count(*) from mesh_claim where expires_at > @at) as claims`,
    ) as Statement<[{ at: string }], MeshCounts>,
  };

  // The broker was down, not its peers: those online when it stopped get a fresh timeout.
  db.prepare("update mesh_peer set last_seen_at = ? where presence = 'online'").run(iso(now()));

  /** Notices queued by the transaction in progress, told to listeners once it commits. */
  let pending: BrokerNotice[] = [];

  function appendEvent(
    type: EventType,
    peerId: string | null,
    data: Record<string, unknown>,
    extra: {
      /** The seq to take (a message's id); the next one when omitted. */
      seq?: number;
      audience?: ReadonlySet<string> | null;
      message?: MessageView;
    } = {},
  ): EventView {
    const at = iso(now());
    const result = q.insertEvent.run(extra.seq ?? null, type, peerId, JSON.stringify(data), at);
    const event: EventView = {
      seq: Number(result.lastInsertRowid),
      type,
      peer_id: peerId,
      data,
      at,
    };
    const notice: BrokerNotice = { event, audience: extra.audience ?? null };
    if (extra.message) notice.message = extra.message;
    pending.push(notice);
    return event;
  }

  /** Runs `body` in one write transaction, then tells listeners what it changed. */
  function write<T>(body: () => T): T {
    let result: T;
    try {
      result = db.transaction(body).immediate();
    } catch (error) {
      discardEffects();
      throw error;
    }
    publishEffects();
    return result;
  }

  /**
   * Peers whose last_seen_at the transaction in progress wrote; remembered in `touched` only
   * once it commits, so a refused write does not leave a peer looking fresher than it is.
   */
  let touches: Array<[string, number]> = [];

  const effectsMark = () => [pending.length, touches.length] as const;
  function undoEffects([notices, touchCount]: readonly [number, number]) {
    pending.length = notices;
    touches.length = touchCount;
  }
  function discardEffects() {
    pending = [];
    touches = [];
  }

  /** After a commit: remember the touches, then tell listeners (a failing one harms none). */
  function publishEffects() {
    for (const [peerId, ms] of touches) touched.set(peerId, ms);
    const notices = pending;
    discardEffects();
    for (const notice of notices) {
      for (const listener of listeners) {
        try {
          listener(notice);
        } catch {
          // A listener's failure is its own; the write has committed.
        }
      }
    }
  }

  function requirePeer(peerId: string): MeshPeerRow {
    const row = q.peer.get(peerId);
    if (row === undefined) throw notFound(peerId);
    if (row.presence === 'left') {
      throw new HttpError(
        404,
        'peer_left',
        `peer ${peerId} has unregistered; register again (POST /mesh/peers)`,
      );
    }
    return row;
  }

  /**
   * A message's id is the seq of its `message.sent` event: both grow together, and since the
   * newest event is never pruned, neither is ever handed out twice (no AUTOINCREMENT needed).
   */
  const nextSeq = () => (q.lastSeq.get() as number) + 1;

  /** When each peer's last_seen_at was last written: at most once a second per peer. */
  const touched = new Map<string, number>();

  /** A peer acting is a peer alive: any call from it counts as a heartbeat. */
  function actingPeer(peerId: string): MeshPeerRow {
    const row = requirePeer(peerId);
    const ms = now();
    const at = iso(ms);
    if (row.presence === 'online' && ms - (touched.get(peerId) ?? -Infinity) < TOUCH_EVERY_MS) {
      return row;
    }
    q.touchPeer.run(at, peerId);
    touches.push([peerId, ms]);
    if (row.presence === 'gone') {
      appendEvent('peer.joined', peerId, { name: row.name, agent: row.agent, returned: true });
    }
    return { ...row, presence: 'online', last_seen_at: at };
  }

  function inScope(viewer: MeshPeerRow, other: MeshPeerRow, scope: Scope): boolean {
    if (scope === 'machine') return true;
    if (scope === 'directory') return other.cwd === viewer.cwd;
    return viewer.git_root !== null && other.git_root === viewer.git_root;
  }

  function releaseAllClaims(peerId: string, reason: string): number {
    const held = q.claimsOf.all(peerId);
    for (const claim of held) {
      q.deleteClaim.run(claim.path);
      appendEvent('file.released', peerId, { path: claim.path, reason });
    }
    return held.length;
  }

  function liveClaim(path: string): MeshClaimRow | undefined {
    const claim = q.claim.get(path);
    if (claim === undefined || claim.expires_at <= iso(now())) return undefined;
    return claim;
  }

  /** Attaches to a `message.sent` event the message itself, for one of its recipients. */
  function messageFor(event: EventView, viewer: string | undefined) {
    if (viewer === undefined || event.type !== 'message.sent') return;
    const delivery = q.delivery.get(event.seq, viewer);
    if (delivery === undefined) return;
    const row = q.message.get(event.seq);
    if (row) event.message = messageView({ ...row, read_at: delivery.read_at });
  }

  /** Stores a message with its deliveries and its `message.sent` event. */
  function storeMessage(
    sender: MeshPeerRow,
    to: MeshPeerRow | null,
    recipients: string[],
    scope: Scope | null,
    text: string,
  ): MessageView {
    const at = iso(now());
    const id = nextSeq();
    q.insertMessage.run(id, sender.id, sender.name, to?.id ?? null, scope, text, at);
    for (const recipient of recipients) q.insertDelivery.run(recipient, id);
    const message: MessageView = {
      id,
      from: { id: sender.id, name: sender.name },
      to: to?.id ?? null,
      scope,
      text,
      sent_at: at,
    };
    appendEvent(
      'message.sent',
      sender.id,
      {
        message_id: id,
        from_name: sender.name,
        to: to?.id ?? null,
        ...(to ? { to_name: to.name } : { scope, recipients: recipients.length }),
        bytes: Buffer.byteLength(text),
      },
      { seq: id, audience: new Set(recipients), message },
    );
    return message;
  }

  function sendDirect(from: string, to: string, text: string): MessageView {
    const sender = actingPeer(from);
    const recipient = q.peer.get(to);
    // Distinct codes: a client must not mistake a missing recipient for its own lost peer.
    if (recipient === undefined) {
      throw new HttpError(
        404,
        'recipient_not_found',
        `no peer ${to} to send to; GET /mesh/peers lists them`,
      );
    }
    if (recipient.presence === 'left') {
      throw new HttpError(404, 'recipient_left', `peer ${to} (${recipient.name}) has unregistered`);
    }
    return storeMessage(sender, recipient, [to], null, text);
  }

  function sendBroadcast(
    from: string,
    text: string,
    scope: Scope,
  ): { message: MessageView; recipients: number } {
    const sender = actingPeer(from);
    const recipients = q.livePeers
      .all()
      .filter((row) => row.id !== from && inScope(sender, row, scope))
      .map((row) => row.id);
    const message = storeMessage(sender, null, recipients, scope, text);
    return { message, recipients: recipients.length };
  }

  /** Writes waiting for the next group commit, with what to tell their callers. */
  let queued: Array<{
    body: () => unknown;
    resolve: (value: unknown) => void;
    reject: (error: unknown) => void;
  }> = [];

  /**
   * Runs the writes queued during one turn of the event loop in one transaction, each in a
   * savepoint of its own so one refused write does not undo the others. A commit costs far
   * more than the writes in it: sending ten messages per commit is three times cheaper.
   */
  function commitQueued() {
    const batch = queued;
    queued = [];
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      db.transaction(() => {
        for (const item of batch) {
          const mark = effectsMark();
          try {
            outcomes.push({ ok: true, value: db.transaction(item.body)() });
          } catch (error) {
            // SQLite itself ended the transaction (I/O error, disk full): abort the batch.
            if (!db.inTransaction) throw error;
            undoEffects(mark);
            outcomes.push({ ok: false, error });
          }
        }
      }).immediate();
    } catch (error) {
      discardEffects();
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i] as (typeof outcomes)[number];
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
    publishEffects();
  }

  /** Like write(), but committed with the other writes of this event-loop turn. */
  function writeSoon<T>(body: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      queued.push({ body, resolve: resolve as (value: unknown) => void, reject });
      if (queued.length === 1) setImmediate(commitQueued);
    });
  }

  return {
    limits,

    register(input) {
      return write(() => {
        const id = randomUUID();
        const at = iso(now());
        const agent = input.agent ?? 'unknown';
        const name =
          input.name ??
          `${agent}@${basename(input.git_root ?? input.cwd) || 'root'}-${id.slice(0, 4)}`;
        q.insertPeer.run({
          id,
          name,
          agent,
          cwd: input.cwd,
          git_root: input.git_root ?? null,
          pid: input.pid ?? null,
          summary: input.summary ?? '',
          status: input.status ?? 'active',
          at,
        });
        const event = appendEvent('peer.joined', id, {
          name,
          agent,
          cwd: input.cwd,
          git_root: input.git_root ?? null,
        });
        return { peer: peerView(q.peer.get(id) as MeshPeerRow), event_seq: event.seq };
      });
    },

    heartbeat(peerId) {
      return write(() => peerView(actingPeer(peerId)));
    },

    update(peerId, changes) {
      return write(() => {
        const row = actingPeer(peerId);
        const next = {
          id: peerId,
          name: changes.name ?? row.name,
          agent: changes.agent ?? row.agent,
          summary: changes.summary ?? row.summary,
          status: changes.status ?? row.status,
          cwd: changes.cwd ?? row.cwd,
          git_root: changes.git_root === undefined ? row.git_root : changes.git_root,
          at: iso(now()),
        };
        q.updatePeer.run(next);
        if (next.cwd !== row.cwd || next.git_root !== row.git_root) {
          appendEvent('peer.moved', peerId, {
            name: next.name,
            cwd: next.cwd,
            git_root: next.git_root,
          });
        }
        if (next.summary !== row.summary) {
          appendEvent('peer.summary', peerId, { name: next.name, summary: next.summary });
        }
        if (next.status !== row.status) {
          appendEvent('peer.status', peerId, { name: next.name, status: next.status });
        }
        return peerView(q.peer.get(peerId) as MeshPeerRow);
      });
    },

    unregister(peerId) {
      write(() => {
        const row = requirePeer(peerId);
        releaseAllClaims(peerId, 'left');
        q.leavePeer.run({ id: peerId, presence: 'left', at: iso(now()) });
        appendEvent('peer.left', peerId, {
          name: row.name,
          agent: row.agent,
          reason: 'unregistered',
        });
      });
    },

    knows: (peerId) => q.exists.get(peerId) !== undefined,

    peer(peerId) {
      const row = q.peer.get(peerId);
      if (row === undefined) throw notFound(peerId);
      return peerView(row);
    },

    peers(options = {}) {
      const rows = options.includeLeft ? q.allPeers.all() : q.livePeers.all();
      const scope = options.scope ?? 'machine';
      if (scope === 'machine' || options.viewer === undefined) return rows.map(peerView);
      const viewer = requirePeer(options.viewer);
      return rows.filter((row) => inScope(viewer, row, scope)).map(peerView);
    },

    send: (from, to, text) => write(() => sendDirect(from, to, text)),

    broadcast: (from, text, scope = 'machine') => write(() => sendBroadcast(from, text, scope)),

    deliver: (from, to, text, scope) =>
      writeSoon(() =>
        to === null
          ? sendBroadcast(from, text, scope ?? 'machine')
          : { message: sendDirect(from, to, text), recipients: 1 },
      ),

    inbox(peerId, options = {}) {
      requirePeer(peerId);
      const limit = options.limit ?? 100;
      const after = options.after ?? 0;
      const rows =
        options.unreadOnly === false
          ? q.inboxAll.all(peerId, after, limit)
          : q.inboxUnread.all(peerId, after, limit);
      return rows.map(messageView);
    },

    markRead(peerId, ids) {
      return write(() => {
        actingPeer(peerId);
        const at = iso(now());
        if (ids === undefined) return q.markAllRead.run(at, peerId).changes;
        let changed = 0;
        for (const id of ids) changed += q.markOneRead.run(at, peerId, id).changes;
        return changed;
      });
    },

    events({ since = 0, viewer, limit = 500 }) {
      const rows =
        viewer === undefined
          ? q.eventsAll.all(since, limit)
          : q.eventsFor.all({ since, viewer, limit });
      return rows.map((row) => {
        const event = eventView(row);
        messageFor(event, viewer);
        return event;
      });
    },

    lastEventSeq: () => q.lastSeq.get() as number,

    stateGet(project, key) {
      const row = q.stateGet.get(project, key);
      return row && stateView(row);
    },

    stateSet(peerId, project, key, value) {
      return write(() => {
        const peer = actingPeer(peerId);
        const at = iso(now());
        if (
          q.stateGet.get(project, key) === undefined &&
          (q.stateCount.get(project) as number) >= MAX_STATE_KEYS
        ) {
          throw new HttpError(
            409,
            'state_full',
            `project ${project} already holds ${MAX_STATE_KEYS} keys; delete some first`,
          );
        }
        q.stateSet.run(project, key, value, peerId, peer.name, at);
        appendEvent('state.changed', peerId, {
          project,
          key,
          by: peer.name,
          deleted: false,
          bytes: Buffer.byteLength(value),
        });
        return stateView(q.stateGet.get(project, key) as MeshStateRow);
      });
    },

    stateList: (project) => q.stateList.all(project).map(stateView),

    stateDelete(peerId, project, key) {
      return write(() => {
        const peer = actingPeer(peerId);
        const deleted = q.stateDelete.run(project, key).changes > 0;
        if (deleted)
          appendEvent('state.changed', peerId, { project, key, by: peer.name, deleted: true });
        return deleted;
      });
    },

    claim(peerId, path, ttlMs = limits.claimTtlMs) {
      return write(() => {
        const peer = actingPeer(peerId);
        const held = liveClaim(path);
        if (held === undefined && (q.claimCount.get(peerId) as number) >= MAX_CLAIMS) {
          throw new HttpError(
            409,
            'too_many_claims',
            `you hold ${MAX_CLAIMS} claims already; release some first`,
          );
        }
        if (held !== undefined && held.peer_id !== peerId) {
          const holder = q.peer.get(held.peer_id);
          throw new HttpError(
            409,
            'file_claimed',
            `${path} is claimed by ${holder?.name ?? held.peer_id} (peer ${held.peer_id}) until ${held.expires_at}; ask them, or wait`,
          );
        }
        const stale = held === undefined ? q.claim.get(path) : undefined;
        if (stale !== undefined) {
          // Expired but not yet swept: announce its end before it changes hands.
          appendEvent('file.released', stale.peer_id, { path, reason: 'expired' });
        }
        const at = now();
        const expires = iso(at + ttlMs);
        q.upsertClaim.run(path, peerId, iso(at), expires);
        appendEvent('file.claimed', peerId, {
          path,
          by: peer.name,
          expires_at: expires,
          renewed: held !== undefined,
        });
        return {
          path,
          peer_id: peerId,
          peer_name: peer.name,
          claimed_at: iso(at),
          expires_at: expires,
        };
      });
    },

    release(peerId, path) {
      write(() => {
        const peer = actingPeer(peerId);
        const held = liveClaim(path);
        if (held === undefined) {
          throw new HttpError(404, 'claim_not_found', `${path} is not claimed`);
        }
        if (held.peer_id !== peerId) {
          throw new HttpError(
            409,
            'file_claimed',
            `${path} is claimed by peer ${held.peer_id}, not by you; only the holder can release it`,
          );
        }
        q.deleteClaim.run(path);
        appendEvent('file.released', peerId, { path, by: peer.name, reason: 'released' });
      });
    },

    claims: () => q.liveClaims.all(iso(now())),

    sweep() {
      return write(() => {
        const at = now();
        for (const [peerId, ms] of touched) {
          if (at - ms > limits.peerTimeoutMs) touched.delete(peerId);
        }
        let gone = 0;
        for (const row of q.silentPeers.all(iso(at - limits.peerTimeoutMs))) {
          q.leavePeer.run({ id: row.id, presence: 'gone', at: iso(at) });
          releaseAllClaims(row.id, 'gone');
          appendEvent('peer.left', row.id, { name: row.name, agent: row.agent, reason: 'timeout' });
          gone += 1;
        }
        const expired = q.expiredClaims.all(iso(at));
        for (const claim of expired) {
          q.deleteClaim.run(claim.path);
          appendEvent('file.released', claim.peer_id, { path: claim.path, reason: 'expired' });
        }
        const freshMessage =
          (q.firstFreshMessage.get(iso(at - limits.messageTtlMs)) as number | undefined) ??
          Number.MAX_SAFE_INTEGER;
        const messages = q.pruneMessages.run(freshMessage).changes;
        // The newest event is always kept, so sequence numbers never start again from 1.
        const freshEvent =
          (q.firstFreshEvent.get(iso(at - limits.eventTtlMs)) as number | undefined) ??
          Number.MAX_SAFE_INTEGER;
        const events = q.pruneEvents.run(freshEvent).changes;
        const peers = q.prunePeers.run(iso(at - limits.eventTtlMs)).changes;
        return { gone, expiredClaims: expired.length, messages, events, peers };
      });
    },

    counts: () => q.counts.get({ at: iso(now()) }) as MeshCounts,

    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

function stateView(row: MeshStateRow): StateView {
  return {
    project: row.project,
    key: row.key,
    value: row.value,
    set_by: { id: row.set_by, name: row.set_by_name },
    updated_at: row.updated_at,
  };
}

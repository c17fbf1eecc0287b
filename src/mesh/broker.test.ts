import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { randomUUID } from 'node:crypto';
import { tempHome } from '../../test/support/palisade.js';
import { HttpError } from '../server/errors.js';
import { openStore, type Store } from '../store/index.js';
import {
  createMeshBroker,
  DEFAULT_MESH_LIMITS,
  MAX_CLAIMS,
  MAX_STATE_KEYS,
  type BrokerNotice,
  type EventView,
  type MeshBroker,
  type MeshLimits,
  type NewPeer,
} from './broker.js';

const START = Date.parse('2025-03-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface Rig {
  home: string;
  store: Store;
  broker: MeshBroker;
  notices: BrokerNotice[];
  now(): number;
  advance(ms: number): void;
  join(input?: Partial<NewPeer>): string;
  /** Events appended since `seq`, oldest first. */
  since(seq: number): EventView[];
}

/** A broker over a real SQLite store in a temporary home, with a clock the test moves. */
async function rig(t: TestContext, limits: Partial<MeshLimits> = {}): Promise<Rig> {
  const home = tempHome('palisade-mesh-');
  const store = await openStore(home);
  t.after(() => store.close());
  let clock = START;
  const broker = createMeshBroker({ store, now: () => clock, limits });
  const notices: BrokerNotice[] = [];
  broker.subscribe((notice) => notices.push(notice));
  return {
    home,
    store,
    broker,
    notices,
    now: () => clock,
    advance: (ms) => void (clock += ms),
    join: (input = {}) => broker.register({ cwd: '/src/app', agent: 'codex', ...input }).peer.id,
    since: (seq) => broker.events({ since: seq }),
  };
}

function httpError(status: number, code: string, message?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof HttpError, `expected an HttpError, got ${String(error)}`);
    assert.equal(error.status, status);
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
    return true;
  };
}

const types = (events: EventView[]) => events.map((e) => e.type);

test('register gives a UUIDv4 peer, online, and a peer.joined event', async (t) => {
  const { broker, notices, now } = await rig(t);
  const { peer, event_seq } = broker.register({
    cwd: '/src/app',
    git_root: '/src',
    agent: 'claude-code',
    pid: 4242,
    summary: 'refactoring the router',
  });
  assert.match(peer.id, UUID_V4);
  assert.equal(peer.presence, 'online');
  assert.equal(peer.status, 'active');
  assert.equal(peer.agent, 'claude-code');
  assert.equal(peer.pid, 4242);
  assert.equal(peer.summary, 'refactoring the router');
  assert.equal(peer.registered_at, iso(now()));
  assert.equal(peer.last_seen_at, iso(now()));
  // Named after the agent and the repository when no name is given.
  assert.match(peer.name, /^claude-code@src-[0-9a-f]{4}$/);

  const [joined] = broker.events({});
  assert.equal(joined?.seq, event_seq);
  assert.equal(joined?.type, 'peer.joined');
  assert.equal(joined?.peer_id, peer.id);
  assert.deepEqual(joined?.data, {
    name: peer.name,
    agent: 'claude-code',
    cwd: '/src/app',
    git_root: '/src',
  });
  assert.deepEqual(
    notices.map((n) => n.event),
    [joined],
  );
  assert.equal(notices[0]?.audience, null, 'every peer may see a join');

  const second = broker.register({ cwd: '/other', name: 'reviewer' });
  assert.notEqual(second.peer.id, peer.id);
  assert.equal(second.peer.name, 'reviewer');
  assert.equal(second.peer.agent, 'unknown');
});

test('heartbeat, update and unregister, with their events', async (t) => {
  const { broker, advance, now, join, since } = await rig(t);
  const id = join({ name: 'worker' });
  const mark = broker.lastEventSeq();

  advance(5_000);
  const beat = broker.heartbeat(id);
  assert.equal(beat.last_seen_at, iso(now()));
  assert.deepEqual(since(mark), [], 'a heartbeat of an online peer is not an event');

  const updated = broker.update(id, { summary: 'writing tests', status: 'busy' });
  assert.equal(updated.summary, 'writing tests');
  assert.equal(updated.status, 'busy');
  assert.deepEqual(
    since(mark).map((e) => [e.type, e.data]),
    [
      ['peer.summary', { name: 'worker', summary: 'writing tests' }],
      ['peer.status', { name: 'worker', status: 'busy' }],
    ],
  );

  const mark2 = broker.lastEventSeq();
  broker.update(id, { summary: 'writing tests', name: 'renamed' });
  assert.deepEqual(since(mark2), [], 'an unchanged summary or a new name is not an event');
  assert.equal(broker.peer(id).name, 'renamed');

  broker.unregister(id);
  const left = since(mark2);
  assert.deepEqual(types(left), ['peer.left']);
  assert.deepEqual(left[0]?.data, { name: 'renamed', agent: 'codex', reason: 'unregistered' });
  assert.equal(broker.peer(id).presence, 'left');
  assert.deepEqual(broker.peers(), [], 'a peer that left is not listed');
  assert.equal(broker.peers({ includeLeft: true }).length, 1);

  assert.throws(() => broker.heartbeat(id), httpError(404, 'peer_left'));
  assert.throws(() => broker.update(id, { summary: 'x' }), httpError(404, 'peer_left'));
  assert.throws(() => broker.unregister(id), httpError(404, 'peer_left'));
  const unknown = randomUUID();
  assert.throws(() => broker.heartbeat(unknown), httpError(404, 'peer_not_found'));
  assert.throws(() => broker.peer(unknown), httpError(404, 'peer_not_found'));
});

test('a silent peer is marked gone by sweep, loses its claims, and comes back on a heartbeat', async (t) => {
  const { broker, advance, join, since } = await rig(t, { peerTimeoutMs: 30_000 });
  const quiet = join({ name: 'quiet' });
  const chatty = join({ name: 'chatty' });
  broker.claim(quiet, '/src/app/a.ts');
  broker.claim(quiet, '/src/app/b.ts');

  advance(20_000);
  broker.heartbeat(chatty);
  advance(10_000);
  // Exactly the timeout is not yet past it.
  assert.equal(broker.sweep().gone, 0);
  assert.equal(broker.peer(quiet).presence, 'online');

  advance(1);
  const mark = broker.lastEventSeq();
  const swept = broker.sweep();
  assert.equal(swept.gone, 1);
  assert.equal(broker.peer(quiet).presence, 'gone');
  assert.equal(broker.peer(chatty).presence, 'online');
  const events = since(mark);
  assert.deepEqual(
    events.map((e) => [e.type, e.peer_id, e.data.reason, e.data.path]),
    [
      ['file.released', quiet, 'gone', '/src/app/a.ts'],
      ['file.released', quiet, 'gone', '/src/app/b.ts'],
      ['peer.left', quiet, 'timeout', undefined],
    ],
  );
  assert.deepEqual(broker.claims(), []);
  assert.deepEqual(
    broker.peers().map((p) => [p.name, p.presence]),
    [
      ['quiet', 'gone'],
      ['chatty', 'online'],
    ],
    'gone peers are still listed, as gone',
  );
  assert.equal(broker.sweep().gone, 0, 'a gone peer is not marked gone twice');
  assert.deepEqual(broker.counts().peers_gone, 1);

  // Its claims are free for others now.
  broker.claim(chatty, '/src/app/a.ts');

  const mark2 = broker.lastEventSeq();
  const back = broker.heartbeat(quiet);
  assert.equal(back.presence, 'online');
  const returned = since(mark2);
  assert.deepEqual(types(returned), ['peer.joined']);
  assert.equal(returned[0]?.peer_id, quiet);
  assert.equal(returned[0]?.data.returned, true);
  assert.equal(broker.counts().peers_online, 2);
});

test('any call from a gone peer brings it back, not only a heartbeat', async (t) => {
  const { broker, advance, join, since } = await rig(t, { peerTimeoutMs: 10_000 });
  const a = join();
  const b = join();
  advance(10_001);
  broker.heartbeat(b);
  broker.sweep();
  assert.equal(broker.peer(a).presence, 'gone');
  const mark = broker.lastEventSeq();
  broker.send(a, b, 'still here');
  assert.deepEqual(types(since(mark)), ['peer.joined', 'message.sent']);
  assert.equal(broker.peer(a).presence, 'online');
});

test('a direct message reaches only its recipient; inbox and markRead', async (t) => {
  const { broker, advance, now, join } = await rig(t);
  const a = join({ name: 'a' });
  const b = join({ name: 'b' });
  const c = join({ name: 'c' });

  const message = broker.send(a, b, 'the tests pass');
  assert.deepEqual(message, {
    id: message.id,
    from: { id: a, name: 'a' },
    to: b,
    scope: null,
    text: 'the tests pass',
    sent_at: iso(now()),
  });
  assert.deepEqual(
    broker.inbox(b).map((m) => [m.text, m.read_at]),
    [['the tests pass', null]],
  );
  assert.deepEqual(broker.inbox(a), [], 'the sender does not get its own message');
  assert.deepEqual(broker.inbox(c), []);
  assert.equal(broker.counts().unread, 1);

  const second = broker.send(c, b, 'and lint too');
  advance(1_000);
  assert.equal(broker.markRead(b, [message.id]), 1);
  assert.equal(broker.markRead(b, [message.id]), 0, 'already read');
  assert.equal(broker.markRead(a, [second.id]), 0, 'not delivered to a: nothing to mark');
  assert.deepEqual(
    broker.inbox(b).map((m) => m.id),
    [second.id],
  );
  const all = broker.inbox(b, { unreadOnly: false });
  assert.deepEqual(
    all.map((m) => [m.id, m.read_at]),
    [
      [message.id, iso(now())],
      [second.id, null],
    ],
  );
  assert.equal(broker.markRead(b), 1, 'all the unread ones');
  assert.deepEqual(broker.inbox(b), []);
  assert.equal(broker.counts().unread, 0);
  assert.equal(broker.inbox(b, { unreadOnly: false, limit: 1 }).length, 1);

  assert.throws(() => broker.send(a, randomUUID(), 'x'), httpError(404, 'recipient_not_found'));
  assert.throws(() => broker.send(randomUUID(), b, 'x'), httpError(404, 'peer_not_found'));
  assert.throws(() => broker.inbox(randomUUID()), httpError(404, 'peer_not_found'));
});

test('a broadcast reaches every other peer on the machine, gone ones included', async (t) => {
  const { broker, join, advance } = await rig(t, { peerTimeoutMs: 10_000 });
  const a = join();
  const b = join({ cwd: '/elsewhere' });
  const c = join({ cwd: '/third' });
  const leaver = join();
  broker.unregister(leaver);
  advance(10_001);
  broker.heartbeat(a);
  broker.heartbeat(b);
  broker.sweep();
  assert.equal(broker.peer(c).presence, 'gone');

  const { message, recipients } = broker.broadcast(a, 'rebasing main in 5 minutes');
  assert.equal(recipients, 2);
  assert.equal(message.to, null);
  assert.equal(message.scope, 'machine');
  assert.equal(broker.inbox(b)[0]?.text, 'rebasing main in 5 minutes');
  assert.equal(broker.inbox(c)[0]?.text, 'rebasing main in 5 minutes', 'kept for when it returns');
  assert.deepEqual(broker.inbox(a), []);
});

/** Five peers: a, b and e in /src/app; c in /src/app/web of the same repo; d elsewhere. */
async function neighbourhood(t: TestContext) {
  const r = await rig(t);
  const ids = {
    a: r.join({ name: 'a', cwd: '/src/app', git_root: '/src' }),
    b: r.join({ name: 'b', cwd: '/src/app', git_root: '/src' }),
    c: r.join({ name: 'c', cwd: '/src/app/web', git_root: '/src' }),
    d: r.join({ name: 'd', cwd: '/other', git_root: '/other' }),
    e: r.join({ name: 'e', cwd: '/src/app', git_root: null }),
  };
  const names = (peers: Array<{ name: string }>) => peers.map((p) => p.name).sort();
  return { ...r, ids, names };
}

test('a broadcast scoped by directory or by repository reaches only those peers', async (t) => {
  const { broker, ids, names } = await neighbourhood(t);
  const recipientsOf = (text: string) =>
    names(
      Object.entries(ids)
        .filter(([, id]) => broker.inbox(id).some((m) => m.text === text))
        .map(([name]) => ({ name })),
    );

  const directory = broker.broadcast(ids.a, 'dir', 'directory');
  assert.equal(directory.recipients, 2);
  assert.equal(directory.message.scope, 'directory');
  assert.deepEqual(recipientsOf('dir'), ['b', 'e']);

  const repo = broker.broadcast(ids.a, 'repo', 'repo');
  assert.equal(repo.recipients, 2);
  assert.deepEqual(recipientsOf('repo'), ['b', 'c']);

  assert.equal(
    broker.broadcast(ids.e, 'no repo', 'repo').recipients,
    0,
    'a peer outside any repository has no repository neighbours',
  );
  assert.deepEqual(recipientsOf('machine'), []);
  assert.equal(broker.broadcast(ids.d, 'machine').recipients, 4);
  assert.deepEqual(recipientsOf('machine'), ['a', 'b', 'c', 'e']);
});

test('discovery: peers by machine, directory and repository', async (t) => {
  const { broker, ids, names } = await neighbourhood(t);
  assert.deepEqual(names(broker.peers()), ['a', 'b', 'c', 'd', 'e']);
  assert.deepEqual(names(broker.peers({ scope: 'machine', viewer: ids.d })), [
    'a',
    'b',
    'c',
    'd',
    'e',
  ]);
  assert.deepEqual(names(broker.peers({ scope: 'repo', viewer: ids.a })), ['a', 'b', 'c']);
  assert.deepEqual(names(broker.peers({ scope: 'repo', viewer: ids.d })), ['d']);
  assert.deepEqual(names(broker.peers({ scope: 'directory', viewer: ids.a })), ['a', 'b', 'e']);
  assert.deepEqual(names(broker.peers({ scope: 'directory', viewer: ids.c })), ['c']);

  broker.unregister(ids.b);
  assert.deepEqual(names(broker.peers({ scope: 'repo', viewer: ids.a })), ['a', 'c']);
  assert.deepEqual(names(broker.peers({ scope: 'repo', viewer: ids.a, includeLeft: true })), [
    'a',
    'b',
    'c',
  ]);
  assert.throws(
    () => broker.peers({ scope: 'repo', viewer: randomUUID() }),
    httpError(404, 'peer_not_found'),
  );
});

test('a message.sent event is seen by its recipients only, with its text', async (t) => {
  const { broker, ids, notices } = await neighbourhood(t);
  const mark = broker.lastEventSeq();
  notices.length = 0;
  const direct = broker.send(ids.a, ids.b, 'secret plan');
  const scoped = broker.broadcast(ids.a, 'dir news', 'directory');

  const seen = (viewer: string) =>
    broker
      .events({ since: mark, viewer })
      .map((e) => [e.type, e.data.message_id, e.message?.text ?? null]);

  assert.deepEqual(seen(ids.a), [], 'the sender has its answer already');
  assert.deepEqual(seen(ids.b), [
    ['message.sent', direct.id, 'secret plan'],
    ['message.sent', scoped.message.id, 'dir news'],
  ]);
  assert.deepEqual(seen(ids.e), [['message.sent', scoped.message.id, 'dir news']]);
  assert.deepEqual(seen(ids.c), [], 'c is in the repo but not the directory');
  assert.deepEqual(seen(ids.d), []);

  // Without a viewer (the operator's view) every event, and no text.
  const all = broker.events({ since: mark });
  assert.equal(all.length, 2);
  assert.ok(all.every((e) => e.message === undefined));
  assert.ok(!JSON.stringify(all).includes('secret plan'), 'the event itself holds no text');

  // Live listeners get the same audience.
  assert.deepEqual(
    notices.map((n) => [...(n.audience ?? [])].sort()),
    [[ids.b], [ids.b, ids.e].sort()],
  );
  assert.equal(notices[0]?.message?.text, 'secret plan');

  // Other events are for everyone.
  broker.update(ids.d, { summary: 'on call' });
  assert.deepEqual(
    broker.events({ since: mark, viewer: ids.c }).map((e) => e.type),
    ['peer.summary'],
  );
});

test('messages are pruned after messageTtlMs and events after eventTtlMs, by sweep', async (t) => {
  const hour = 3_600_000;
  const { broker, store, advance, join } = await rig(t, {
    messageTtlMs: hour,
    eventTtlMs: 2 * hour,
    peerTimeoutMs: 30 * 24 * hour,
  });
  const deliveries = () =>
    store.sqlite.prepare('select count(*) from mesh_delivery').pluck().get() as number;
  const a = join();
  const b = join();
  broker.send(a, b, 'old');
  broker.broadcast(a, 'old broadcast');
  advance(30 * 60_000);
  broker.send(a, b, 'new');
  assert.equal(deliveries(), 3);

  advance(30 * 60_000);
  assert.equal(broker.sweep().messages, 0, 'exactly the TTL is not past it');
  advance(1);
  const swept = broker.sweep();
  assert.equal(swept.messages, 2);
  assert.deepEqual(
    broker.inbox(b, { unreadOnly: false }).map((m) => m.text),
    ['new'],
  );
  assert.equal(deliveries(), 1, 'unread deliveries go with their message');
  assert.equal(broker.counts().unread, 1);
  assert.equal(broker.counts().messages, 1);
  assert.equal(swept.events, 0, 'events live longer');

  const eventsBefore = broker.counts().events;
  assert.equal(eventsBefore, 5, 'two joins and three messages');
  advance(hour);
  // The joins and the first two messages are now older than 2 h; the third is 1.5 h old.
  const later = broker.sweep();
  assert.equal(later.events, 4);
  assert.deepEqual(
    broker.events({}).map((e) => e.type),
    ['message.sent'],
  );
  assert.equal(broker.peers().length, 2, 'online peers are not pruned');
});

test('the default TTLs are 24 h for messages and 48 h for events', async (t) => {
  const hour = 3_600_000;
  assert.equal(DEFAULT_MESH_LIMITS.messageTtlMs, 24 * hour);
  assert.equal(DEFAULT_MESH_LIMITS.eventTtlMs, 48 * hour);
  assert.equal(DEFAULT_MESH_LIMITS.claimTtlMs, 10 * 60_000);
  const { broker, advance, join } = await rig(t, { peerTimeoutMs: 30 * 24 * hour });
  assert.deepEqual(broker.limits, { ...DEFAULT_MESH_LIMITS, peerTimeoutMs: 30 * 24 * hour });
  const a = join();
  const b = join();
  broker.send(a, b, 'hello');
  advance(24 * hour);
  assert.equal(broker.sweep().messages, 0);
  advance(1);
  assert.equal(broker.sweep().messages, 1);
  assert.equal(broker.sweep().events, 0);
  advance(24 * hour);
  // The newest event stays, so sequence numbers (and message ids) never start again.
  assert.equal(broker.sweep().events, 2);
  assert.equal(broker.events({}).length, 1);
});

test('peers that left or went away are pruned with the events', async (t) => {
  const hour = 3_600_000;
  const { broker, advance, join } = await rig(t, { peerTimeoutMs: 60_000, eventTtlMs: hour });
  const left = join({ name: 'left' });
  const gone = join({ name: 'gone' });
  broker.unregister(left);
  advance(60_001);
  broker.sweep();
  const stays = join({ name: 'stays' });
  advance(hour);
  broker.heartbeat(stays);
  assert.equal(broker.sweep().peers, 2);
  assert.throws(() => broker.peer(left), httpError(404, 'peer_not_found'));
  assert.throws(() => broker.heartbeat(gone), httpError(404, 'peer_not_found'));
  assert.deepEqual(
    broker.peers({ includeLeft: true }).map((p) => p.name),
    ['stays'],
  );
});

test('file claims: contended, renewed by the holder, expiring after the TTL', async (t) => {
  const { broker, advance, now, join, since } = await rig(t, { peerTimeoutMs: 3_600_000 });
  const a = join({ name: 'alice' });
  const b = join({ name: 'bob' });
  const path = '/src/app/router.ts';

  const claim = broker.claim(a, path);
  assert.deepEqual(claim, {
    path,
    peer_id: a,
    peer_name: 'alice',
    claimed_at: iso(now()),
    expires_at: iso(now() + 10 * 60_000),
  });
  assert.deepEqual(broker.claims(), [claim]);

  const mark = broker.lastEventSeq();
  assert.throws(() => broker.claim(b, path), httpError(409, 'file_claimed', /alice/));
  assert.throws(() => broker.release(b, path), httpError(409, 'file_claimed'));
  assert.deepEqual(since(mark), [], 'refused claims leave no events');
  assert.deepEqual(broker.claims(), [claim], 'and leave the claim as it was');

  advance(5 * 60_000);
  const renewed = broker.claim(a, path, 60_000);
  assert.equal(renewed.expires_at, iso(now() + 60_000));
  const claimed = since(mark);
  assert.deepEqual(types(claimed), ['file.claimed']);
  assert.equal(claimed[0]?.data.renewed, true);

  advance(60_000 - 1);
  assert.throws(() => broker.claim(b, path), httpError(409, 'file_claimed'));
  advance(1);
  assert.deepEqual(broker.claims(), [], 'expired at its TTL');

  const mark2 = broker.lastEventSeq();
  const swept = broker.sweep();
  assert.equal(swept.expiredClaims, 1);
  assert.deepEqual(
    since(mark2).map((e) => [e.type, e.peer_id, e.data]),
    [['file.released', a, { path, reason: 'expired' }]],
  );
  const taken = broker.claim(b, path);
  assert.equal(taken.peer_name, 'bob');
  assert.throws(() => broker.claim(a, path), httpError(409, 'file_claimed', /bob/));
  assert.throws(() => broker.release(a, '/not/claimed'), httpError(404, 'claim_not_found'));

  broker.release(b, path);
  assert.deepEqual(broker.claims(), []);
});

test('an expired claim taken over before the sweep is announced as released', async (t) => {
  const { broker, advance, join, since } = await rig(t, { peerTimeoutMs: 3_600_000 });
  const a = join({ name: 'alice' });
  const b = join({ name: 'bob' });
  broker.claim(a, '/x');
  advance(10 * 60_000);
  const mark = broker.lastEventSeq();
  broker.claim(b, '/x');
  assert.deepEqual(
    since(mark).map((e) => [e.type, e.peer_id, e.data.reason ?? null, e.data.renewed ?? null]),
    [
      ['file.released', a, 'expired', null],
      ['file.claimed', b, null, false],
    ],
  );
  assert.equal(broker.sweep().expiredClaims, 0);
});

test('claims are released when the holder unregisters', async (t) => {
  const { broker, join, since } = await rig(t);
  const a = join();
  const b = join();
  broker.claim(a, '/one');
  broker.claim(a, '/two');
  broker.claim(b, '/three');
  const mark = broker.lastEventSeq();
  broker.unregister(a);
  assert.deepEqual(
    since(mark).map((e) => [e.type, e.data.path ?? null, e.data.reason]),
    [
      ['file.released', '/one', 'left'],
      ['file.released', '/two', 'left'],
      ['peer.left', null, 'unregistered'],
    ],
  );
  assert.deepEqual(
    broker.claims().map((c) => c.path),
    ['/three'],
  );
  broker.claim(b, '/one');
});

test('shared state: namespaced by project, seen by another peer with setter and time', async (t) => {
  const { broker, advance, now, join, since } = await rig(t);
  const a = join({ name: 'alice' });
  const b = join({ name: 'bob' });
  const mark = broker.lastEventSeq();

  const set = broker.stateSet(a, '/src/app', 'build', 'green');
  assert.deepEqual(broker.stateGet('/src/app', 'build'), set);
  assert.deepEqual(set, {
    project: '/src/app',
    key: 'build',
    value: 'green',
    set_by: { id: a, name: 'alice' },
    updated_at: iso(now()),
  });
  assert.equal(broker.stateGet('/other', 'build'), undefined, 'another project is another space');
  broker.stateSet(b, '/other', 'build', 'red');
  assert.equal(broker.stateGet('/src/app', 'build')?.value, 'green');

  advance(1_000);
  const overwritten = broker.stateSet(b, '/src/app', 'build', 'red');
  assert.deepEqual(overwritten.set_by, { id: b, name: 'bob' });
  assert.equal(overwritten.updated_at, iso(now()));
  broker.stateSet(a, '/src/app', 'a-first', '1');
  assert.deepEqual(
    broker.stateList('/src/app').map((s) => [s.key, s.value]),
    [
      ['a-first', '1'],
      ['build', 'red'],
    ],
  );

  assert.equal(broker.stateDelete(b, '/src/app', 'build'), true);
  assert.equal(broker.stateGet('/src/app', 'build'), undefined);
  assert.equal(broker.stateDelete(b, '/src/app', 'build'), false);
  assert.equal(broker.stateGet('/other', 'build')?.value, 'red');

  assert.deepEqual(
    since(mark).map((e) => [e.data.project, e.data.key, e.data.by, e.data.deleted]),
    [
      ['/src/app', 'build', 'alice', false],
      ['/other', 'build', 'bob', false],
      ['/src/app', 'build', 'bob', false],
      ['/src/app', 'a-first', 'alice', false],
      ['/src/app', 'build', 'bob', true],
    ],
  );
  assert.ok(since(mark).every((e) => e.type === 'state.changed'));
  assert.throws(
    () => broker.stateSet(randomUUID(), 'p', 'k', 'v'),
    httpError(404, 'peer_not_found'),
  );
});

test('durable: after the store is closed and opened again, messages and read state are there', async (t) => {
  const home = tempHome('palisade-mesh-');
  let clock = START;
  const first = await openStore(home);
  const before = createMeshBroker({ store: first, now: () => clock });
  const a = before.register({ cwd: '/src/app', name: 'a' }).peer.id;
  const b = before.register({ cwd: '/src/app', name: 'b' }).peer.id;
  const read = before.send(a, b, 'read this');
  const unread = before.send(a, b, 'and this');
  before.markRead(b, [read.id]);
  before.stateSet(a, '/src/app', 'k', 'v');
  before.claim(a, '/src/app/x.ts');
  const lastSeq = before.lastEventSeq();
  const inboxBefore = before.inbox(b, { unreadOnly: false });
  await first.close();

  clock += 5_000;
  const second = await openStore(home);
  t.after(() => second.close());
  const after = createMeshBroker({ store: second, now: () => clock });
  assert.deepEqual(after.inbox(b, { unreadOnly: false }), inboxBefore);
  assert.deepEqual(
    after.inbox(b).map((m) => [m.id, m.text]),
    [[unread.id, 'and this']],
  );
  assert.equal(after.counts().unread, 1);
  assert.equal(after.lastEventSeq(), lastSeq);
  assert.equal(after.events({}).length, lastSeq);
  assert.equal(after.stateGet('/src/app', 'k')?.value, 'v');
  assert.deepEqual(
    after.claims().map((c) => [c.path, c.peer_id]),
    [['/src/app/x.ts', a]],
  );
  const peers = after.peers();
  assert.deepEqual(
    peers.map((p) => [p.name, p.presence]),
    [
      ['a', 'online'],
      ['b', 'online'],
    ],
  );
  // The broker was down, not its peers: they get a fresh timeout from the restart.
  assert.ok(peers.every((p) => p.last_seen_at === iso(clock)));
  const next = after.send(b, a, 'reply');
  assert.ok(next.id > unread.id, 'ids keep counting up');
});

test('listeners hear of a change after it commits, and never of a failed transaction', async (t) => {
  const { broker, store, advance, join } = await rig(t, { peerTimeoutMs: 10_000 });
  const heard: Array<{ type: string; inTransaction: boolean; stored: boolean }> = [];
  const eventRow = store.sqlite.prepare('select 1 from mesh_event where seq = ?').pluck();
  const unsubscribe = broker.subscribe((notice) => {
    heard.push({
      type: notice.event.type,
      inTransaction: store.sqlite.inTransaction,
      stored: eventRow.get(notice.event.seq) === 1,
    });
  });
  const a = join();
  const b = join();
  broker.send(a, b, 'hi');
  broker.claim(a, '/f');
  assert.deepEqual(heard, [
    { type: 'peer.joined', inTransaction: false, stored: true },
    { type: 'peer.joined', inTransaction: false, stored: true },
    { type: 'message.sent', inTransaction: false, stored: true },
    { type: 'file.claimed', inTransaction: false, stored: true },
  ]);

  // a goes quiet and is marked gone; its next call would bring it back, but these calls fail.
  advance(10_001);
  broker.heartbeat(b);
  broker.sweep();
  assert.equal(broker.peer(a).presence, 'gone');
  broker.claim(b, '/g');
  heard.length = 0;
  const seq = broker.lastEventSeq();
  const counts = broker.counts();
  assert.throws(
    () => broker.send(a, randomUUID(), 'to nobody'),
    httpError(404, 'recipient_not_found'),
  );
  assert.throws(() => broker.claim(a, '/g'), httpError(409, 'file_claimed'));
  assert.deepEqual(heard, [], 'nothing is heard of a rolled-back transaction');
  assert.equal(broker.lastEventSeq(), seq);
  assert.deepEqual(broker.counts(), counts);
  assert.equal(broker.peer(a).presence, 'gone', 'the failed calls did not bring a back');

  broker.heartbeat(a);
  assert.deepEqual(heard, [{ type: 'peer.joined', inTransaction: false, stored: true }]);

  unsubscribe();
  heard.length = 0;
  broker.heartbeat(b);
  broker.update(b, { summary: 'quiet now' });
  assert.deepEqual(heard, [], 'unsubscribed');
});

test('message ids and event seqs are never handed out twice, even after everything is pruned', async (t) => {
  const hour = 3_600_000;
  const { broker, advance, join } = await rig(t, { peerTimeoutMs: 30 * 24 * hour });
  const a = join();
  const b = join();
  const first = broker.send(a, b, 'first');
  const firstEvent = broker.lastEventSeq();
  advance(72 * hour);
  broker.sweep();
  assert.deepEqual(broker.inbox(b), [], 'the message was pruned');
  const second = broker.send(a, b, 'second');
  assert.ok(second.id > first.id, `${second.id} > ${first.id}`);
  assert.ok(broker.lastEventSeq() > firstEvent);
  assert.equal(broker.events({ since: firstEvent, viewer: b })[0]?.message?.text, 'second');
});

test('growth is bounded: 1,000 keys per project, 1,000 claims per peer', async (t) => {
  const { broker, join } = await rig(t);
  const a = join();
  for (let i = 0; i < MAX_STATE_KEYS; i += 1) broker.stateSet(a, '/src/app', `k${i}`, 'v');
  assert.throws(
    () => broker.stateSet(a, '/src/app', 'one-more', 'v'),
    httpError(409, 'state_full'),
  );
  broker.stateSet(a, '/src/app', 'k0', 'changed'); // an existing key may still change
  broker.stateSet(a, '/src/other', 'k0', 'v'); // another project has room
  for (let i = 0; i < MAX_CLAIMS; i += 1) broker.claim(a, `/src/app/f${i}.ts`);
  assert.throws(() => broker.claim(a, '/src/app/more.ts'), httpError(409, 'too_many_claims'));
  broker.claim(a, '/src/app/f0.ts'); // renewing is not a new claim
  const b = join();
  broker.claim(b, '/src/app/more.ts');
  assert.equal(broker.claims().length, MAX_CLAIMS + 1);
});

test('deliver() commits the sends of one turn together; a refused one leaves the rest', async (t) => {
  const { broker, join, notices } = await rig(t);
  const a = join();
  const b = join();
  notices.length = 0;
  const results = await Promise.allSettled([
    broker.deliver(a, b, 'one'),
    broker.deliver(a, randomUUID(), 'to nobody'),
    broker.deliver(a, null, 'to all'),
    broker.deliver(b, a, 'three'),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
  );
  const refused = results[1] as PromiseRejectedResult;
  assert.ok(refused.reason instanceof HttpError && refused.reason.code === 'recipient_not_found');
  assert.deepEqual(
    broker.inbox(b).map((m) => m.text),
    ['one', 'to all'],
  );
  assert.deepEqual(
    broker.inbox(a).map((m) => m.text),
    ['three'],
  );
  assert.equal(notices.length, 3, 'listeners hear of what committed, and only that');
  const ids = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.message.id] : []));
  assert.deepEqual(
    ids,
    [...ids].sort((x, y) => x - y),
    'in the order they were asked for',
  );
});

test('a refused write does not leave its peer looking fresher than the database says', async (t) => {
  const { broker, join, advance } = await rig(t, { peerTimeoutMs: 10_000 });
  const a = join();
  const b = join();
  broker.claim(b, '/src/app/held.ts');
  advance(1500);
  assert.throws(() => broker.claim(a, '/src/app/held.ts'), httpError(409, 'file_claimed'));
  advance(100);
  broker.heartbeat(a); // must be written: the refused claim's touch was rolled back
  advance(10_000 - 100 + 1);
  broker.heartbeat(b);
  broker.sweep();
  assert.equal(broker.peer(a).presence, 'online');
});

test('a listener that throws harms neither the write nor the other listeners', async (t) => {
  const { broker, join, notices } = await rig(t);
  broker.subscribe(() => {
    throw new Error('a broken listener');
  });
  const a = join();
  const b = join();
  notices.length = 0;
  broker.send(a, b, 'sync');
  const { message } = await broker.deliver(a, b, 'queued');
  assert.equal(message.text, 'queued');
  assert.equal(notices.length, 2, 'the other listener heard both');
  assert.deepEqual(
    broker.inbox(b).map((m) => m.text),
    ['sync', 'queued'],
  );
});

test('an inbox pages on with after, oldest first', async (t) => {
  const { broker, join } = await rig(t);
  const a = join();
  const b = join();
  const sent = Array.from({ length: 5 }, (_, i) => broker.send(a, b, `m${i}`).id);
  const first = broker.inbox(b, { limit: 2 });
  assert.deepEqual(
    first.map((m) => m.text),
    ['m0', 'm1'],
  );
  const next = broker.inbox(b, { limit: 2, after: first.at(-1)?.id ?? 0 });
  assert.deepEqual(
    next.map((m) => m.text),
    ['m2', 'm3'],
  );
  broker.markRead(b, [sent[4] as number]);
  assert.deepEqual(
    broker.inbox(b, { after: sent[1] }).map((m) => m.text),
    ['m2', 'm3'],
  );
  assert.deepEqual(
    broker.inbox(b, { unreadOnly: false, after: sent[3] }).map((m) => m.text),
    ['m4'],
  );
});

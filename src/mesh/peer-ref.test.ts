import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IsoDate } from '../store/index.js';
import type { PeerView } from './broker.js';
import { matchPeer } from './peer-ref.js';

function peer(id: string, name: string, presence: PeerView['presence'] = 'online'): PeerView {
  return {
    id,
    name,
    agent: 'codex',
    cwd: '/src/app',
    git_root: null,
    pid: null,
    summary: '',
    status: 'active',
    presence,
    registered_at: '2026-12-01T00:00:00.000Z' as IsoDate,
    last_seen_at: '2026-12-01T00:00:00.000Z' as IsoDate,
  };
}

const a = peer('aaaa1111-0000-4000-8000-000000000001', 'alice');
const b = peer('aaaa2222-0000-4000-8000-000000000002', 'bob', 'gone');
const b2 = peer('bbbb3333-0000-4000-8000-000000000003', 'bob');
const c = peer('cccc4444-0000-4000-8000-000000000004', 'carol', 'gone');
const c2 = peer('cccc5555-0000-4000-8000-000000000005', 'carol', 'gone');

test('a peer is found by id (any case), exact name, or a unique id prefix of 4 or more', () => {
  const peers = [a, b, b2, c, c2];
  assert.equal(matchPeer(peers, a.id.toUpperCase()).peer, a);
  assert.equal(matchPeer(peers, 'alice').peer, a);
  assert.equal(matchPeer(peers, 'bob').peer, b2, 'of two with one name, the online one');
  assert.equal(matchPeer(peers, 'bbbb').peer, b2);
  assert.deepEqual(matchPeer(peers, 'carol'), { candidates: [c, c2], byName: true });
  assert.deepEqual(matchPeer(peers, 'aaaa'), { candidates: [a, b], byName: false });
  assert.deepEqual(matchPeer(peers, 'aaa'), { candidates: [], byName: false }, 'too short');
  assert.deepEqual(matchPeer(peers, 'dave'), { candidates: [], byName: false });
});

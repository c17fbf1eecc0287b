import type { PeerView } from './broker.js';

/** What a peer reference named: one peer, or the candidates (none, or several). */
export type PeerMatch =
  { peer: PeerView } | { peer?: undefined; candidates: PeerView[]; byName: boolean };

/**
 * Finds the peer a person or agent means: a peer id, an exact name (the online one when
 * several share it), or an id prefix of at least 4 characters.
 *
 * @example
 * const match = matchPeer(peers, 'codex@app');
 * if (match.peer === undefined) console.log(`${match.candidates.length} candidates`);
 */
export function matchPeer(peers: PeerView[], ref: string): PeerMatch {
  const lower = ref.toLowerCase();
  const byId = peers.find((p) => p.id === lower);
  if (byId) return { peer: byId };
  const named = peers.filter((p) => p.name === ref);
  const online = named.filter((p) => p.presence === 'online');
  if (named.length === 1) return { peer: named[0] as PeerView };
  if (named.length > 1 && online.length === 1) return { peer: online[0] as PeerView };
  const candidates =
    named.length > 0 ? named : lower.length >= 4 ? peers.filter((p) => p.id.startsWith(lower)) : [];
  if (candidates.length === 1) return { peer: candidates[0] as PeerView };
  return { candidates, byName: named.length > 0 };
}

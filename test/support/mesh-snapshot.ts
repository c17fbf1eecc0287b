import type { TestPalisade } from './palisade.js';

const MESH_TABLES = [
  'mesh_peer',
  'mesh_message',
  'mesh_delivery',
  'mesh_event',
  'mesh_state',
  'mesh_claim',
];

/** Every mesh table, row by row: what a refused request must leave as it was. */
export function meshSnapshot(palisade: TestPalisade): string {
  const db = palisade.server.store.sqlite;
  return JSON.stringify(
    MESH_TABLES.map((table) => db.prepare(`select * from ${table} order by 1, 2`).all()),
  );
}

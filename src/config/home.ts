import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The files Palisade keeps in its home directory. */
export type HomeFile =
  | 'palisade.db'
  | 'secret.key'
  | 'mesh.token'
  | 'mesh.url'
  | 'mesh-broker.log'
  | 'mesh-cli.peer'
  | 'audit.jsonl'
  | 'palisade.pid';

export function homeFile(home: string, file: HomeFile): string {
  return join(home, file);
}

/**
 * Creates the data directory with mode 0700, or tightens an existing one to 0700.
 * Returns the directory.
 */
export function prepareHome(home: string): string {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const mode = statSync(home).mode & 0o777;
  if (mode !== 0o700) chmodSync(home, 0o700);
  return home;
}

/** Writes a file readable by its owner only; `exclusive` fails if it already exists. */
export function writePrivateFile(path: string, data: string | Buffer, exclusive = false): void {
  writeFileSync(path, data, { mode: 0o600, flag: exclusive ? 'wx' : 'w' });
  chmodSync(path, 0o600);
}

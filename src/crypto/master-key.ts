import { readFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { homeFile, writePrivateFile } from '../config/index.js';

export const MASTER_KEY_BYTES = 32;

/**
 * The master key: `PALISADE_SECRET` (64 hex) when given, else `secret.key` in the home,
 * created with 32 random bytes and mode 0600 on first use.
 */
export function loadMasterKey(home: string, secretHex?: string): Buffer {
  if (secretHex !== undefined) return Buffer.from(secretHex, 'hex');
  const path = homeFile(home, 'secret.key');
  try {
    writePrivateFile(path, randomBytes(MASTER_KEY_BYTES), true);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const key = readFileSync(path);
  if (key.length !== MASTER_KEY_BYTES) {
    throw new Error(
      `${path} holds ${key.length} bytes, not ${MASTER_KEY_BYTES}: restore it from a backup (without it, stored upstream keys cannot be read)`,
    );
  }
  if ((statSync(path).mode & 0o077) !== 0) {
    throw new Error(`${path} is readable by other users: run chmod 600 on it`);
  }
  return key;
}

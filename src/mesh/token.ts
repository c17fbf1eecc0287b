import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync } from 'node:fs';
import { homeFile, writePrivateFile } from '../config/index.js';
import { constantTimeEqual, sha256Hex } from '../crypto/index.js';

function replacePrivateFile(path: string, data: string): void {
  // Readers (palisade mcp, the CLI) must never see a half-written token.
  const temp = `${path}.${process.pid}.tmp`;
  writePrivateFile(temp, data);
  renameSync(temp, path);
}

/** Mints the broker's bearer token (32 random bytes, hex) and writes it to `mesh.token` (0600). */
export function writeMeshToken(home: string): string {
  const token = randomBytes(32).toString('hex');
  replacePrivateFile(homeFile(home, 'mesh.token'), `${token}\n`);
  return token;
}

/** Records the broker's loopback URL in `mesh.url` (0600) for clients on this machine. */
export function writeMeshUrl(home: string, url: string): void {
  replacePrivateFile(homeFile(home, 'mesh.url'), `${url}\n`);
}

/** Forgets where the broker listened: it is stopping. */
export function removeMeshUrl(home: string): void {
  rmSync(homeFile(home, 'mesh.url'), { force: true });
}

/** The token and URL of the broker serving `home`, or undefined for what is not there. */
export function readMeshEndpoint(home: string): { token?: string; url?: string } {
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  };
  const token = read(homeFile(home, 'mesh.token'));
  const url = read(homeFile(home, 'mesh.url'));
  return { ...(token ? { token } : {}), ...(url ? { url } : {}) };
}

/**
 * A check of `Authorization: Bearer <token>` headers against `token`, in constant time: it
 * compares SHA-256 digests, so not even the length of a wrong token shows in the timing. The
 * scheme is case-insensitive (RFC 9110), as the gateway's key check has it.
 */
export function createBearerCheck(token: string): (header: string | undefined) => boolean {
  const expected = sha256Hex(token);
  return (header) => {
    const presented = header === undefined ? undefined : /^Bearer[ \t]+(.*)$/i.exec(header)?.[1];
    return presented !== undefined && constantTimeEqual(sha256Hex(presented.trim()), expected);
  };
}

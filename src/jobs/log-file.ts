import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * How many bytes of `buf` end on a whole UTF-8 character: a chunk cut inside one would show
 * as two broken characters. A run of continuation bytes with no lead byte is left as it is.
 */
export function wholeUtf8Length(buf: Buffer): number {
  let i = buf.length - 1;
  let continuation = 0;
  while (i >= 0 && continuation < 3 && ((buf[i] as number) & 0xc0) === 0x80) {
    i--;
    continuation++;
  }
  if (i < 0) return buf.length;
  const lead = buf[i] as number;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return buf.length - i >= need ? buf.length : i;
}

export interface LogChunk {
  /** Where the chunk starts. */
  offset: number;
  bytes: Buffer;
  /** The file's size when read. */
  size: number;
}

/**
 * Up to `max` bytes of a log from `offset`, ending on a whole character unless `whole` is
 * false (the run has finished: nothing more will complete it). A missing file reads as empty.
 */
export function readLogChunk(path: string, offset: number, max: number, whole = true): LogChunk {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return { offset, bytes: Buffer.alloc(0), size: 0 };
    }
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    const start = Math.min(offset, size);
    const length = Math.min(max, size - start);
    const bytes = Buffer.alloc(length);
    let read = 0;
    while (read < length) {
      const n = readSync(fd, bytes, read, length - read, start + read);
      if (n === 0) break;
      read += n;
    }
    let kept = bytes.subarray(0, read);
    if (whole) kept = kept.subarray(0, wholeUtf8Length(kept));
    return { offset: start, bytes: kept, size };
  } finally {
    closeSync(fd);
  }
}

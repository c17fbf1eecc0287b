import { readFileSync, unlinkSync } from 'node:fs';
import { homeFile, writePrivateFile } from '../config/index.js';

export class AlreadyRunningError extends Error {
  override name = 'AlreadyRunningError';
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `palisade.pid` with an exclusive create, so two servers never share a home.
 * A pid file left by a dead process is taken over. Returns the release function.
 */
export function acquirePidLock(home: string): () => void {
  const path = homeFile(home, 'palisade.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writePrivateFile(path, `${process.pid}\n`, true);
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
      throw new AlreadyRunningError(
        `another Palisade (pid ${holder}) is already serving from ${home}; stop it first, or give this one its own --home`,
      );
    }
    unlinkSync(path);
  }
  throw new AlreadyRunningError(`could not take ${path}; remove it if no Palisade is running`);
}

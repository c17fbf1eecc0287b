/** Thrown when the queue already holds as many waiting requests as it may. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export interface RequestQueue {
  /** Waits for a free slot, first come first served. Resolves to the slot's release. */
  acquire(signal?: AbortSignal): Promise<() => void>;
  readonly running: number;
  readonly waiting: number;
}

/**
 * A FIFO of requests in front of `slots` workers. At most `maxWaiting` may wait; more are
 * refused at once (QueueFullError) rather than piling up. A waiter whose signal aborts (the
 * client went away) leaves the queue without ever taking a slot.
 */
export function createRequestQueue(slots: number, maxWaiting: number): RequestQueue {
  let running = 0;
  const waiters: Array<{ grant: () => void }> = [];

  const release = () => {
    const next = waiters.shift();
    if (next) next.grant();
    else running -= 1;
  };
  const releaseOnce = () => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
    };
  };

  return {
    acquire(signal?: AbortSignal): Promise<() => void> {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (running < slots) {
        running += 1;
        return Promise.resolve(releaseOnce());
      }
      if (waiters.length >= maxWaiting) {
        return Promise.reject(new QueueFullError(`${waiters.length} requests are already waiting`));
      }
      return new Promise((resolve, reject) => {
        const waiter = {
          grant: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve(releaseOnce());
          },
        };
        const onAbort = () => {
          const index = waiters.indexOf(waiter);
          if (index >= 0) waiters.splice(index, 1);
          reject(signal?.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        waiters.push(waiter);
      });
    },
    get running() {
      return running;
    },
    get waiting() {
      return waiters.length;
    },
  };
}

export interface WindowLimiter {
  /** Counts one request for `id`: 0 when allowed, else the whole seconds until one is. */
  take(id: string): number;
  /** What take would answer now, counting nothing: 0, or the whole seconds to wait. */
  peek(id: string): number;
  size(): number;
}

interface Log {
  /** Request times; those before `head` have left the window. */
  times: number[];
  head: number;
}

/**
 * At most `limit` requests per id in any window of `windowMs` (a sliding log, exact: the
 * 101st request inside 10 s is refused, however the 100 before it were spread). Each id keeps
 * the times of its requests still inside the window, so memory follows traffic, not `limit`.
 * Past `maxIds` ids, the one used least recently is forgotten (in constant time).
 *
 * @example
 * const limiter = createWindowLimiter({ limit: 100, windowMs: 10_000 });
 * const wait = limiter.take(peerId); // 0, or seconds for Retry-After
 */
export function createWindowLimiter(options: {
  limit: number;
  windowMs: number;
  now?: () => number;
  maxIds?: number;
}): WindowLimiter {
  const { limit, windowMs } = options;
  const now = options.now ?? (() => performance.now());
  const maxIds = options.maxIds ?? 10_000;
  // Map order is use order: the first key is the least recently used.
  const logs = new Map<string, Log>();

  /** Drops the times that left the window; returns 0 if one more fits, else seconds to wait. */
  function wait(log: Log, at: number): number {
    const { times } = log;
    while (log.head < times.length && (times[log.head] as number) <= at - windowMs) {
      log.head += 1;
    }
    if (log.head > 1024 && log.head * 2 > times.length) {
      log.times = times.slice(log.head);
      log.head = 0;
    }
    if (log.times.length - log.head < limit) return 0;
    // The oldest request still inside the window: once it leaves, one more may come.
    const oldest = log.times[log.head] as number;
    return Math.max(1, Math.ceil((oldest + windowMs - at) / 1000));
  }

  return {
    take(id) {
      const at = now();
      let log = logs.get(id);
      if (log === undefined) {
        log = { times: [], head: 0 };
        if (logs.size >= maxIds) logs.delete(logs.keys().next().value as string);
      } else {
        logs.delete(id);
      }
      logs.set(id, log);

      const seconds = wait(log, at);
      if (seconds === 0) log.times.push(at);
      return seconds;
    },
    peek(id) {
      // Neither remembers a new id nor counts as a use of a known one.
      const log = logs.get(id);
      return log === undefined ? 0 : wait(log, now());
    },
    size: () => logs.size,
  };
}

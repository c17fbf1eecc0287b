export interface WindowLimiter {
  /** Counts one request for `id`: 0 when allowed, else the whole seconds until one is. */
  take(id: string): number;
  size(): number;
}

/**
 * At most `limit` requests per id in any window of `windowMs` (a sliding log, exact: the
 * 101st request inside 10 s is refused, however the 100 before it were spread). Each id keeps
 * a ring of its last `limit` request times; ids idle for a whole window are forgotten.
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
  const rings = new Map<string, { times: Float64Array; next: number; count: number }>();

  function forgetIdle(at: number) {
    for (const [id, ring] of rings) {
      const newest = ring.times[(ring.next + limit - 1) % limit] as number;
      if (at - newest >= windowMs) rings.delete(id);
    }
  }

  return {
    take(id) {
      const at = now();
      let ring = rings.get(id);
      if (ring === undefined) {
        if (rings.size >= maxIds) forgetIdle(at);
        ring = { times: new Float64Array(limit), next: 0, count: 0 };
        rings.set(id, ring);
      }
      if (ring.count === limit) {
        // The oldest of the last `limit` requests: while it is inside the window, refuse.
        const oldest = ring.times[ring.next] as number;
        const wait = oldest + windowMs - at;
        if (wait > 0) return Math.max(1, Math.ceil(wait / 1000));
      } else {
        ring.count += 1;
      }
      ring.times[ring.next] = at;
      ring.next = (ring.next + 1) % limit;
      return 0;
    },
    size: () => rings.size,
  };
}

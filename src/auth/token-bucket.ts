export interface BucketLimits {
  /** Tokens added per second. */
  perSecond: number;
  /** Most tokens a bucket holds: how many requests may arrive at once. */
  burst: number;
}

export interface RateLimiter {
  /**
   * Takes one token from the bucket `id`. Returns 0 when allowed, otherwise the whole
   * seconds to wait before a token is available (for `Retry-After`).
   */
  take(id: string, limits?: BucketLimits): number;
  size(): number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

/**
 * In-memory token buckets keyed by id (an API key id, or `ip:<address>`).
 * Full buckets are forgotten, so memory tracks only recently active ids; past `maxIds`
 * the oldest entries go first.
 *
 * @example
 * const limiter = createRateLimiter({ perSecond: 2, burst: 60 });
 * const wait = limiter.take(key.id); // 0, or seconds until the next token
 */
export function createRateLimiter(
  defaults: BucketLimits,
  options: { maxIds?: number; now?: () => number } = {},
): RateLimiter {
  const buckets = new Map<string, Bucket>();
  const maxIds = options.maxIds ?? 100_000;
  const now = options.now ?? (() => performance.now());

  function prune(at: number, limits: BucketLimits) {
    for (const [id, bucket] of buckets) {
      const refilled = bucket.tokens + ((at - bucket.updated) / 1000) * limits.perSecond;
      if (refilled >= limits.burst) buckets.delete(id);
    }
    // Still full of active ids (a flood of addresses): drop the oldest half.
    for (const id of buckets.keys()) {
      if (buckets.size <= maxIds / 2) break;
      buckets.delete(id);
    }
  }

  return {
    take(id, limits = defaults) {
      const at = now();
      let bucket = buckets.get(id);
      if (bucket === undefined) {
        if (buckets.size >= maxIds) prune(at, limits);
        bucket = { tokens: limits.burst, updated: at };
        buckets.set(id, bucket);
      } else {
        const elapsed = (at - bucket.updated) / 1000;
        bucket.tokens = Math.min(limits.burst, bucket.tokens + elapsed * limits.perSecond);
        bucket.updated = at;
      }
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil((1 - bucket.tokens) / limits.perSecond));
    },
    size: () => buckets.size,
  };
}

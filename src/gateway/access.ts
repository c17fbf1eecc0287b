import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuditLog } from '../audit/index.js';
import {
  readPresentedKey,
  type ApiKey,
  type BucketLimits,
  type KeyRing,
  type RateLimiter,
} from '../auth/index.js';
import { HttpError } from '../server/errors.js';
import type { Metrics } from '../server/metrics.js';

export interface AccessOptions {
  keys: KeyRing;
  limiter: RateLimiter;
  metrics: Metrics;
  audit: AuditLog;
  /** Bound to a non-loopback address: a key is always required. */
  exposed: boolean;
  limits: BucketLimits;
}

const CREATE_HINT = 'create one with: palisade keys create NAME';

const REFUSALS = {
  missing: {
    code: 'missing_api_key',
    message: `this endpoint needs an API key: send Authorization: Bearer pk_... or x-api-key (${CREATE_HINT})`,
  },
  unknown: { code: 'invalid_api_key', message: `the API key is not valid (${CREATE_HINT})` },
  revoked: { code: 'key_revoked', message: `the API key was revoked (${CREATE_HINT})` },
  expired: { code: 'key_expired', message: `the API key has expired (${CREATE_HINT})` },
} as const;

function limitsFor(key: ApiKey, defaults: BucketLimits): BucketLimits {
  return key.rpm === null ? defaults : { perSecond: key.rpm / 60, burst: Math.max(1, key.rpm) };
}

function tooMany(retryAfter: number, message: string): HttpError {
  return new HttpError(429, 'rate_limited', message, {
    headers: { 'retry-after': String(retryAfter) },
  });
}

/**
 * The gateway's door: who may call `/v1/*` and how often. On loopback with no keys
 * created the door is open (rate-limited per client IP); once a key exists, or when bound
 * to any other address, a valid key is required and limits apply per key.
 */
export function createAccessCheck(options: AccessOptions) {
  const { keys, limiter, metrics, audit } = options;

  function refuse(request: FastifyRequest, reason: keyof typeof REFUSALS, key?: ApiKey): never {
    const wait = limiter.take(`ip:${request.ip}`);
    if (wait > 0) {
      metrics.rateLimited.inc({ reason: 'ip' });
      throw tooMany(
        wait,
        `too many requests without a valid API key from this address; retry in ${wait}s`,
      );
    }
    metrics.authFailures.inc({ reason });
    audit.record({
      action: 'auth.failed',
      actor: key ? `key:${key.id}` : 'anonymous',
      ip: request.ip,
      requestId: request.id,
      details: { reason, path: request.url.split('?')[0] ?? '', method: request.method },
    });
    const refusal = REFUSALS[reason];
    const message =
      reason === 'expired' && key?.expiresAt
        ? `the API key expired at ${key.expiresAt.toISOString()} (${CREATE_HINT})`
        : refusal.message;
    throw new HttpError(401, refusal.code, message, {
      headers: { 'www-authenticate': `Bearer realm="palisade", error="invalid_token"` },
    });
  }

  return async function checkAccess(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    if (request.method === 'OPTIONS') return;
    if (!options.exposed && !keys.hasKeys()) {
      const wait = limiter.take(`ip:${request.ip}`);
      if (wait > 0) {
        metrics.rateLimited.inc({ reason: 'ip' });
        throw tooMany(
          wait,
          `rate limit reached for this address; retry in ${wait}s (PALISADE_RATE_LIMIT)`,
        );
      }
      return;
    }
    const presented = readPresentedKey(request.headers);
    if (presented === undefined) refuse(request, 'missing');
    const result = keys.check(presented);
    if (!result.ok) refuse(request, result.reason, result.apiKey);
    const wait = limiter.take(result.apiKey.id, limitsFor(result.apiKey, options.limits));
    if (wait > 0) {
      metrics.rateLimited.inc({ reason: 'key' });
      throw tooMany(wait, `rate limit reached for key "${result.apiKey.name}"; retry in ${wait}s`);
    }
    request.apiKey = result.apiKey;
  };
}

/** Counts streams per key so one key cannot hold every connection. */
export function createStreamSlots(defaultCap: number) {
  const open = new Map<string, number>();
  return {
    /** Takes a slot or throws 429; returns the release function (safe to call twice). */
    acquire(key: ApiKey | null): () => void {
      if (key === null) return () => undefined;
      const cap = key.maxStreams ?? defaultCap;
      const current = open.get(key.id) ?? 0;
      if (current >= cap) {
        throw tooMany(
          1,
          `key "${key.name}" already has ${cap} streams open; wait for one to finish`,
        );
      }
      open.set(key.id, current + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (open.get(key.id) ?? 1) - 1;
        if (left <= 0) open.delete(key.id);
        else open.set(key.id, left);
      };
    },
  };
}

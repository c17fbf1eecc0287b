import { isIPv6 } from 'node:net';
import { createWindowLimiter } from './window-limiter.js';

export interface LoginThrottle {
  /**
   * 0 when a login attempt from `ip` for `username` may proceed, else the whole seconds until
   * one may (for Retry-After). Counts nothing.
   */
  retryAfter(ip: string, username: string): number;
  /** Counts one failed attempt against the IP and against the account (username lower-cased). */
  recordFailure(ip: string, username: string): void;
}

/**
 * At most `maxFailures` failed logins per `windowMs` (sliding) from one client address, and
 * as many against one account from anywhere, so neither one address guessing many accounts
 * nor many addresses guessing one account gets far. An IPv6 client counts by its /64, the
 * block one subscriber usually holds. Each side remembers at most `maxIds` ids.
 *
 * @example
 * const throttle = createLoginThrottle();
 * const wait = throttle.retryAfter(request.ip, body.username);
 * if (wait > 0) return reply.header('retry-after', wait).code(429).send(tooMany);
 * if (!(await checkLogin(body))) throttle.recordFailure(request.ip, body.username);
 */
export function createLoginThrottle(
  options: { maxFailures?: number; windowMs?: number; now?: () => number; maxIds?: number } = {},
): LoginThrottle {
  const limits = {
    limit: options.maxFailures ?? 5,
    windowMs: options.windowMs ?? 15 * 60_000,
    maxIds: options.maxIds ?? 100_000,
    ...(options.now === undefined ? {} : { now: options.now }),
  };
  const byClient = createWindowLimiter(limits);
  const byAccount = createWindowLimiter(limits);

  return {
    retryAfter(ip, username) {
      return Math.max(byClient.peek(clientKey(ip)), byAccount.peek(accountKey(username)));
    },
    recordFailure(ip, username) {
      byClient.take(clientKey(ip));
      byAccount.take(accountKey(username));
    },
  };
}

function accountKey(username: string): string {
  return username.normalize('NFC').toLowerCase();
}

/**
 * The id a client address is counted under: an IPv4 address as is (also IPv4-mapped IPv6),
 * an IPv6 address as its /64 prefix, anything else as given.
 */
export function clientKey(ip: string): string {
  const address = ip.replace(/%.*$/, '');
  if (!isIPv6(address)) return ip;
  const groups = ipv6Groups(address);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [high = 0, low = 0] = groups.slice(6);
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address. */
function ipv6Groups(address: string): number[] {
  // A dotted IPv4 tail (`::ffff:1.2.3.4`) is two groups.
  const hex = address.replace(
    /(\d+)\.(\d+)\.(\d+)\.(\d+)$/,
    (_, a: string, b: string, c: string, d: string) =>
      [
        ((Number(a) << 8) | Number(b)).toString(16),
        ((Number(c) << 8) | Number(d)).toString(16),
      ].join(':'),
  );
  const [head = '', tail] = hex.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16));
}

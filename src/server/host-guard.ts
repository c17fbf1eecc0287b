import { isIP } from 'node:net';

export interface HostGuardOptions {
  /** The bound address: accepted as a Host too. */
  bindHost: string;
  /** Extra names (PALISADE_ALLOWED_HOSTS); `*.example.com` matches subdomains. */
  allowedHosts: string[];
}

/** The host part of a Host header, lower-cased, without port or IPv6 brackets. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') === -1 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return (colon === -1 ? h : h.slice(0, colon)).replace(/\.$/, '');
}

/**
 * Decides whether a Host header is one Palisade answers to (the DNS-rebinding guard).
 * A page on `evil.example` that re-points its DNS at 127.0.0.1 still sends
 * `Host: evil.example`, so only names we know are served: loopback names, IP literals
 * (an IP cannot be rebound), the bound address and the configured names.
 *
 * @example
 * const allowed = createHostGuard({ bindHost: '127.0.0.1', allowedHosts: ['llm.home.arpa'] });
 * allowed('localhost:8642'); // true
 * allowed('attacker.example'); // false
 */
export function createHostGuard(
  options: HostGuardOptions,
): (header: string | undefined) => boolean {
  const exact = new Set(['localhost', hostName(options.bindHost)]);
  const suffixes: string[] = ['.localhost'];
  for (const name of options.allowedHosts) {
    if (name.startsWith('*.')) suffixes.push(name.slice(1));
    else exact.add(hostName(name));
  }
  const cache = new Map<string, boolean>();
  return (header) => {
    if (header === undefined || header === '') return false;
    const known = cache.get(header);
    if (known !== undefined) return known;
    const name = hostName(header);
    const allowed =
      exact.has(name) || isIP(name) !== 0 || suffixes.some((suffix) => name.endsWith(suffix));
    if (cache.size < 1000) cache.set(header, allowed);
    return allowed;
  };
}

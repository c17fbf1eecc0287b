/**
 * SSRF guard for upstream URLs. Upstreams are the model servers Palisade proxies to, so
 * loopback, private and public addresses are allowed; cloud metadata, link-local,
 * unspecified, multicast and broadcast addresses are refused however they are spelled.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { LookupFunction } from 'node:net';

/** Thrown (or passed to a connect callback) when an upstream address is refused. */
export class SsrfError extends Error {
  readonly code = 'ERR_SSRF_BLOCKED';
  override readonly name = 'SsrfError';
}

/** Resolves every address of a host name, shaped like `dns.promises.lookup` with `all: true`. */
export type Lookup = (
  hostname: string,
  options: { all: true },
) => Promise<Array<{ address: string; family: number }>>;

type Family = 'ipv4' | 'ipv6';

const REFUSED_RANGES: ReadonlyArray<{ reason: string; cidrs: readonly string[] }> = [
  {
    reason: 'a cloud metadata address',
    cidrs: ['169.254.169.254/32', '100.100.100.200/32', 'fd00:ec2::254/128'],
  },
  { reason: 'a link-local address', cidrs: ['169.254.0.0/16', 'fe80::/10'] },
  { reason: 'an unspecified address', cidrs: ['0.0.0.0/8', '::/128'] },
  { reason: 'a multicast address', cidrs: ['224.0.0.0/4', 'ff00::/8'] },
  { reason: 'the broadcast address', cidrs: ['255.255.255.255/32'] },
];

/**
 * Refused too under the strict policy (URLs that ordinary users supply, such as their MCP
 * servers): this machine and private networks, where admin-chosen upstreams may live.
 */
const PRIVATE_RANGES: ReadonlyArray<{ reason: string; cidrs: readonly string[] }> = [
  { reason: 'a loopback address', cidrs: ['127.0.0.0/8', '::1/128'] },
  {
    reason: 'a private address',
    cidrs: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'],
  },
  {
    reason: 'a reserved address',
    cidrs: [
      '192.0.0.0/24',
      '198.18.0.0/15',
      '240.0.0.0/4',
      'fec0::/10',
      // 6to4 and local-use NAT64 can carry any IPv4 address, loopback and private ones included.
      '2002::/16',
      '64:ff9b:1::/48',
    ],
  },
];

/**
 * Which addresses a URL may reach. The default (upstreams, chosen by admins) allows loopback
 * and private addresses; `strict` refuses them too, except for the hosts in `allowedHosts`.
 */
export interface SsrfPolicy {
  strict?: boolean;
  /** Host names or IP literals exempt from the strict ranges (never from the default ones). */
  allowedHosts?: readonly string[];
}

/** IPv6 /96 prefixes that carry an IPv4 address in their last 32 bits. */
const IPV4_EMBEDDINGS = [
  '::ffff:', // IPv4-mapped
  '::ffff:0:', // IPv4-translated (SIIT)
  '::', // IPv4-compatible (deprecated)
  '64:ff9b::', // NAT64 well-known prefix
];

const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata']);

const LOOPBACK_V6 = new net.BlockList();
LOOPBACK_V6.addAddress('::1', 'ipv6');

const REFUSED = REFUSED_RANGES.map(({ reason, cidrs }) => ({ reason, list: blockListOf(cidrs) }));
const PRIVATE = PRIVATE_RANGES.map(({ reason, cidrs }) => ({ reason, list: blockListOf(cidrs) }));

function blockListOf(cidrs: readonly string[]): net.BlockList {
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [address = '', bits = ''] = cidr.split('/');
    const prefix = Number(bits);
    if (net.isIPv6(address)) {
      list.addSubnet(address, prefix, 'ipv6');
      continue;
    }
    list.addSubnet(address, prefix, 'ipv4');
    for (const embedding of IPV4_EMBEDDINGS) {
      list.addSubnet(`${embedding}${address}`, 96 + prefix, 'ipv6');
    }
  }
  return list;
}

/** Strips `[...]` and an IPv6 zone id (`%eth0`), which BlockList would otherwise never match. */
function bareAddress(ip: string): string {
  const unbracketed = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const zone = unbracketed.indexOf('%');
  return zone === -1 ? unbracketed : unbracketed.slice(0, zone);
}

function familyOf(ip: string): Family | undefined {
  const version = net.isIP(ip);
  if (version === 4) return 'ipv4';
  if (version === 6) return 'ipv6';
  return undefined;
}

/** Why an IP literal is refused, or undefined when it is allowed. */
function refusalReason(ip: string, strict = false): string | undefined {
  const address = bareAddress(ip);
  const family = familyOf(address);
  if (family === undefined) return 'not an IP address';
  if (strict) {
    const reason = PRIVATE.find(({ list }) => list.check(address, family))?.reason;
    if (reason !== undefined) return reason;
  }
  // ::1 also lies inside the IPv4-compatible form of 0.0.0.0/8; loopback wins.
  if (family === 'ipv6' && LOOPBACK_V6.check(address, 'ipv6')) return undefined;
  return REFUSED.find(({ list }) => list.check(address, family))?.reason;
}

/** Whether the strict ranges apply to `hostname` under `policy`. */
function isStrictFor(hostname: string, policy: SsrfPolicy | undefined): boolean {
  if (policy?.strict !== true) return false;
  const host = bareAddress(hostname.toLowerCase().replace(/\.+$/, ''));
  return !(policy.allowedHosts ?? []).some(
    (allowed) => bareAddress(allowed.toLowerCase()) === host,
  );
}

const LOCAL_NAMES = /^(localhost|.*\.localhost)$/i;

function isMetadataName(hostname: string): boolean {
  return METADATA_NAMES.has(hostname.toLowerCase().replace(/\.+$/, ''));
}

function isIpLiteral(hostname: string): boolean {
  return familyOf(bareAddress(hostname)) !== undefined;
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw refused('not a valid URL');
  }
}

function refused(detail: string, options?: ErrorOptions): SsrfError {
  return new SsrfError(`upstream URL refused: ${detail}`, options);
}

/** The first resolved address that is refused, with why, so messages can name both. */
function firstRefused(
  addresses: readonly string[],
  strict = false,
): { address: string; reason: string } | undefined {
  for (const address of addresses) {
    const reason = refusalReason(address, strict);
    if (reason !== undefined) return { address, reason };
  }
  return undefined;
}

/**
 * True when an IP literal (v4 or v6, brackets and zone id allowed) must not be an upstream.
 * Anything that is not an IP literal is refused too (fail closed); resolve names first.
 *
 * @example
 * isBlockedAddress('169.254.169.254'); // true: cloud metadata
 * isBlockedAddress('[::ffff:a9fe:a9fe]'); // true: the same, IPv4-mapped
 * isBlockedAddress('192.168.1.20'); // false: a private model server is fine
 */
export function isBlockedAddress(ip: string, policy?: SsrfPolicy): boolean {
  return refusalReason(ip, policy?.strict === true) !== undefined;
}

/**
 * Checks everything that can be checked without DNS and returns the parsed URL. The host is
 * judged after WHATWG normalization, so `http://0xA9FEA9FE/` is seen as 169.254.169.254.
 * Messages never echo the URL itself, which may carry credentials.
 *
 * @example
 * checkUpstreamUrl('http://127.0.0.1:11434'); // URL
 * checkUpstreamUrl('http://169.254.169.254/'); // throws SsrfError:
 * // "upstream URL refused: 169.254.169.254 is a cloud metadata address"
 */
export function checkUpstreamUrl(url: string, policy?: SsrfPolicy): URL {
  const parsed = parseUrl(url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw refused(`scheme ${parsed.protocol} is not allowed, use http: or https:`);
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw refused('credentials in the URL are not allowed, pass an API key from the environment');
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    // Only the origin and path are used; a query often carries a token that would be logged.
    throw refused('a query string or fragment is not allowed, pass an API key with --api-key-env');
  }
  const host = parsed.hostname;
  if (host === '') throw refused('the host is empty');
  if (isMetadataName(host)) throw refused(`${host} is a cloud metadata name`);
  const strict = isStrictFor(host, policy);
  if (strict && LOCAL_NAMES.test(host.replace(/\.+$/, '')))
    throw refused(`${host} is this machine`);
  if (isIpLiteral(host)) {
    const reason = refusalReason(host, strict);
    if (reason !== undefined) throw refused(`${host} is ${reason}`);
  }
  return parsed;
}

/**
 * `checkUpstreamUrl`, then resolves the host and refuses the URL if ANY address is blocked.
 * Use it when an upstream is added; `guardedLookup` re-checks on every connection.
 *
 * @example
 * await assertUpstreamAllowed('http://gpu-box.lan:8000'); // URL, or throws SsrfError
 */
export async function assertUpstreamAllowed(
  url: string,
  lookup: Lookup = dns.promises.lookup,
  policy?: SsrfPolicy,
): Promise<URL> {
  const parsed = checkUpstreamUrl(url, policy);
  const host = parsed.hostname;
  if (isIpLiteral(host)) return parsed;
  const addresses = await resolveAll(host, lookup);
  const bad = firstRefused(addresses, isStrictFor(host, policy));
  if (bad) throw refused(`${host} resolves to ${bad.address}, ${bad.reason}`);
  return parsed;
}

async function resolveAll(host: string, lookup: Lookup): Promise<string[]> {
  let answers: Array<{ address: string }>;
  try {
    answers = await lookup(host, { all: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    throw refused(`cannot resolve ${host}${code ? ` (${code})` : ''}`, { cause: error });
  }
  if (answers.length === 0) throw refused(`cannot resolve ${host} (no addresses)`);
  return answers.map((answer) => answer.address);
}

/**
 * Wraps a DNS lookup for `net.connect({ lookup })` or undici's `connect: { lookup }` so every
 * new connection re-checks the answer: a name that rebinds to a blocked address after the
 * upstream was added fails with an `SsrfError` before any byte is sent. Handles both the
 * single-address callback and the `all: true` form Node uses with `autoSelectFamily`; with
 * several answers, one blocked address refuses them all. Node skips `lookup` for IP literals,
 * so `checkUpstreamUrl` must still vet the URL.
 *
 * @example
 * new Pool(origin, { connect: { lookup: guardedLookup() } });
 */
export function guardedLookup(
  lookup: LookupFunction = dns.lookup,
  policy?: SsrfPolicy,
): LookupFunction {
  return (hostname, options, callback) => {
    if (isMetadataName(hostname)) {
      const error = connectRefused(`${hostname} is a cloud metadata name`);
      process.nextTick(() => callback(error, ''));
      return;
    }
    lookup(hostname, options, (error, address, family) => {
      if (error) return callback(error, address, family);
      const addresses = typeof address === 'string' ? [address] : address.map((a) => a.address);
      const bad = firstRefused(addresses, isStrictFor(hostname, policy));
      if (bad) {
        const detail = `${hostname} resolves to ${bad.address}, ${bad.reason}`;
        return callback(connectRefused(detail), address, family);
      }
      callback(null, address, family);
    });
  };
}

function connectRefused(detail: string): SsrfError {
  return new SsrfError(`upstream connection refused: ${detail}`);
}

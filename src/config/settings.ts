import { homedir } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { parseBytes, parseDuration } from './units.js';

/**
 * Every setting Palisade reads, in one table: its environment variable, its flag (if any),
 * how the text is turned into a value, its default, and a line for help and docs.
 * Precedence is flags > environment > default (see load.ts).
 */

export const UPSTREAM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface UpstreamSpec {
  name: string;
  url: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A setting whose text is parsed by `parse`, which throws a plain message when it is wrong. */
interface Setting<T> {
  env: string;
  flag?: string;
  default: T | (() => T);
  help: string;
  parse: (text: string) => T;
}

function integer(min: number, max: number) {
  const schema = z.coerce.number().int().min(min).max(max);
  return (text: string): number => {
    if (!/^-?\d+$/.test(text.trim())) throw new Error(`expected an integer from ${min} to ${max}`);
    const result = schema.safeParse(text);
    if (!result.success) throw new Error(`expected an integer from ${min} to ${max}`);
    return result.data;
  };
}

function positiveNumber(text: string): number {
  const result = z.coerce.number().positive().finite().safeParse(text);
  if (!result.success || text.trim() === '') throw new Error('expected a number above 0');
  return result.data;
}

/** The longest a Node timer can wait (about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

function duration(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (text: string): number => {
    const ms = parseDuration(text);
    if (ms === undefined || ms < min) {
      throw new Error(`expected a duration such as 90s, 15m, 12h or 30d (at least ${min}ms)`);
    }
    if (ms > max) throw new Error('expected at most 24 days (the longest a timer can wait)');
    return ms;
  };
}

/** A duration that sets a timer. */
function timer(min: number) {
  return duration(min, MAX_TIMER_MS);
}

function bytes(min: number, max: number) {
  return (text: string): number => {
    const value = parseBytes(text);
    if (value === undefined || value < min || value > max) {
      throw new Error(`expected a size such as 512kb or 10mb, between ${min} and ${max} bytes`);
    }
    return value;
  };
}

function boolean(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(t)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(t)) return false;
  throw new Error('expected true or false');
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function hostNames(text: string): string[] {
  const names = list(text).map((s) => s.toLowerCase());
  for (const name of names) {
    if (!/^(\*\.)?[a-z0-9.-]+$/.test(name) && isIP(name.replace(/^\[|\]$/g, '')) === 0) {
      throw new Error(`expected host names separated by commas; "${name}" is not a host name`);
    }
  }
  return names;
}

function origins(text: string): string[] {
  return list(text).map((origin) => {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new Error(`expected origins such as https://app.example.com; "${origin}" is not one`);
    }
    if (!['http:', 'https:'].includes(url.protocol) || url.origin !== origin.replace(/\/$/, '')) {
      throw new Error(`expected origins such as https://app.example.com; "${origin}" is not one`);
    }
    return url.origin;
  });
}

/** A name shown to mesh peers: at most 64 characters, no control characters. */
function peerLabel(text: string): string {
  const label = text.trim();
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (label.length > 64 || /[\u0000-\u001f\u007f]/.test(label)) {
    throw new Error('expected at most 64 characters, without control characters');
  }
  return label;
}

export type HstsMode = 'off' | 'on' | 'preload';

function hstsMode(text: string): HstsMode {
  const t = text.trim().toLowerCase();
  if (t === 'preload') return 'preload';
  try {
    return boolean(t) ? 'on' : 'off';
  } catch {
    throw new Error('expected off, on or preload');
  }
}

function powerOfTwo(min: number, max: number) {
  const parseInteger = integer(min, max);
  return (text: string): number => {
    const value = parseInteger(text);
    if ((value & (value - 1)) !== 0)
      throw new Error(`expected a power of two from ${min} to ${max}`);
    return value;
  };
}

/** A setup token typed by a person: 16 to 256 printable characters. */
function setupToken(text: string): string | undefined {
  const token = text.trim();
  if (token === '') return undefined;
  if (token.length < 16 || token.length > 256 || !/^[\x21-\x7e]+$/.test(token)) {
    throw new Error('expected 16 to 256 printable characters without spaces');
  }
  return token;
}

const LOCAL_GPUS = ['auto', 'false', 'cuda', 'vulkan', 'metal'] as const;
export type LocalGpu = (typeof LOCAL_GPUS)[number];

function localGpu(text: string): LocalGpu {
  const t = text.trim().toLowerCase();
  if (['0', 'no', 'off', 'none', 'cpu'].includes(t)) return 'false';
  if (!(LOCAL_GPUS as readonly string[]).includes(t)) {
    throw new Error(`expected one of ${LOCAL_GPUS.join(', ')}`);
  }
  return t as LocalGpu;
}

export function parseUpstreamSpec(text: string): UpstreamSpec {
  const eq = text.indexOf('=');
  const name = text.slice(0, eq).trim();
  const url = text.slice(eq + 1).trim();
  if (eq <= 0 || !UPSTREAM_NAME.test(name) || url === '') {
    throw new Error(
      'expected NAME=URL such as lmstudio=http://127.0.0.1:1234 (name: letters, digits, . _ -)',
    );
  }
  return { name, url };
}

function upstreams(text: string): UpstreamSpec[] {
  return list(text).map(parseUpstreamSpec);
}

/** `NAME=MODEL,NAME=MODEL[,FALLBACK]`: checked here, read by the Anthropic face. */
function modelMapSpec(text: string): string {
  const entries = list(text);
  let fallbacks = 0;
  for (const entry of entries) {
    const parts = entry.split('=').map((p) => p.trim());
    if (parts.length === 1) fallbacks += 1;
    if (parts.length > 2 || parts.some((p) => p === '' || /\s/.test(p)) || fallbacks > 1) {
      throw new Error(
        'expected NAME=MODEL entries such as claude-*=qwen3:8b, and at most one MODEL alone as the fallback',
      );
    }
  }
  return entries
    .map((e) =>
      e
        .split('=')
        .map((p) => p.trim())
        .join('='),
    )
    .join(',');
}

function hexSecret(text: string): string {
  if (!/^[0-9a-fA-F]{64}$/.test(text.trim())) throw new Error('expected 64 hexadecimal characters');
  return text.trim().toLowerCase();
}

function logLevel(text: string): LogLevel {
  const t = text.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(t)) {
    throw new Error(`expected one of ${LOG_LEVELS.join(', ')}`);
  }
  return t as LogLevel;
}

function trustProxy(text: string): boolean | string[] {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(t)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(t)) return false;
  const addresses = list(text);
  for (const a of addresses) {
    const [ip] = a.split('/');
    if (isIP(ip ?? '') === 0) throw new Error('expected true, false or a list of proxy addresses');
  }
  return addresses;
}

export const SETTINGS = {
  host: {
    env: 'PALISADE_HOST',
    flag: '--host',
    default: '127.0.0.1',
    help: 'Address to bind. Anything but loopback requires API keys on /v1.',
    parse: (t: string) => {
      const host = t.trim();
      if (host === '' || /\s/.test(host)) throw new Error('expected an IP address or host name');
      return host;
    },
  },
  port: {
    env: 'PALISADE_PORT',
    flag: '--port',
    default: 8642,
    help: 'TCP port to listen on (0 picks a free one).',
    parse: integer(0, 65535),
  },
  home: {
    env: 'PALISADE_HOME',
    flag: '--home',
    default: () => join(homedir(), '.palisade'),
    help: 'Data directory (database, secret key, audit log, pid file).',
    parse: (t: string) => {
      if (t.trim() === '') throw new Error('expected a directory path');
      return t.trim();
    },
  },
  secret: {
    env: 'PALISADE_SECRET',
    default: undefined as string | undefined,
    help: 'Master key as 64 hex characters; overrides secret.key.',
    parse: hexSecret,
  },
  upstreams: {
    env: 'PALISADE_UPSTREAMS',
    flag: '--upstream',
    default: [] as UpstreamSpec[],
    help: 'Upstream model servers, name=url,name=url (flag: repeat --upstream NAME=URL).',
    parse: upstreams,
  },
  probeLocal: {
    env: 'PALISADE_PROBE_LOCAL',
    default: true,
    help: 'With no upstream configured, look for LM Studio, Ollama, llama.cpp and vLLM on their usual local ports.',
    parse: boolean,
  },
  maxTokens: {
    env: 'PALISADE_MAX_TOKENS',
    default: 8192,
    help: 'Largest max_tokens a request may ask for; larger values are clamped, absent ones set to it.',
    parse: integer(1, 10_000_000),
  },
  maxChoices: {
    env: 'PALISADE_MAX_CHOICES',
    default: 4,
    help: 'Largest `n` (choices per request); larger values are clamped.',
    parse: integer(1, 128),
  },
  bodyLimit: {
    env: 'PALISADE_BODY_LIMIT',
    default: 10 * 1024 * 1024,
    help: 'Largest request body; larger bodies get 413.',
    parse: bytes(1024, 1024 ** 3),
  },
  rateLimitPerSecond: {
    env: 'PALISADE_RATE_LIMIT',
    default: 2,
    help: 'Sustained requests per second per API key (or per client IP without a key).',
    parse: positiveNumber,
  },
  rateLimitBurst: {
    env: 'PALISADE_RATE_BURST',
    default: 60,
    help: 'Requests a key (or client IP) may send at once before the sustained rate applies.',
    parse: integer(1, 1_000_000),
  },
  maxStreamsPerKey: {
    env: 'PALISADE_MAX_STREAMS',
    default: 8,
    help: 'Concurrent streaming responses per API key unless the key sets its own cap.',
    parse: integer(1, 100_000),
  },
  allowedHosts: {
    env: 'PALISADE_ALLOWED_HOSTS',
    default: [] as string[],
    help: 'Extra Host names accepted (DNS-rebinding guard), comma separated; `*.example.com` allowed.',
    parse: hostNames,
  },
  mcpAllowedHosts: {
    env: 'PALISADE_MCP_ALLOWED_HOSTS',
    default: [] as string[],
    help: "Hosts users' remote MCP servers may be on although they are this machine or a private network (refused otherwise), comma separated; exact names or IP addresses.",
    parse: (text: string) => {
      const names = hostNames(text);
      if (names.some((name) => name.includes('*'))) {
        throw new Error(
          'expected exact host names or IP addresses; wildcards are not allowed here',
        );
      }
      return names;
    },
  },
  corsOrigins: {
    env: 'PALISADE_CORS_ORIGINS',
    default: [] as string[],
    help: 'Browser origins allowed to call /v1, comma separated. Others get 403.',
    parse: origins,
  },
  trustProxy: {
    env: 'PALISADE_TRUST_PROXY',
    default: false as boolean | string[],
    help: 'Trust X-Forwarded-* from a reverse proxy: true, or the proxy addresses.',
    parse: trustProxy,
  },
  upstreamTimeoutMs: {
    env: 'PALISADE_UPSTREAM_TIMEOUT',
    default: 300_000,
    help: 'How long an upstream may take to send response headers before 504.',
    parse: timer(100),
  },
  streamIdleTimeoutMs: {
    env: 'PALISADE_STREAM_IDLE_TIMEOUT',
    default: 120_000,
    help: 'How long a response may go without a byte from upstream before it is cut.',
    parse: timer(100),
  },
  requestTimeoutMs: {
    env: 'PALISADE_REQUEST_TIMEOUT',
    default: 60_000,
    help: 'How long a client may take to send its whole request.',
    parse: timer(100),
  },
  headersTimeoutMs: {
    env: 'PALISADE_HEADERS_TIMEOUT',
    default: 10_000,
    help: 'How long a client may take to send its request headers.',
    parse: timer(100),
  },
  maxHeaderSize: {
    env: 'PALISADE_MAX_HEADER_SIZE',
    default: 16 * 1024,
    help: 'Largest total size of request headers; larger gets 431.',
    parse: bytes(1024, 1024 * 1024),
  },
  healthIntervalMs: {
    env: 'PALISADE_HEALTH_INTERVAL',
    default: 15_000,
    help: 'How often upstreams are checked and their model lists refreshed.',
    parse: timer(100),
  },
  shutdownGraceMs: {
    env: 'PALISADE_SHUTDOWN_GRACE',
    default: 10_000,
    help: 'On SIGINT/SIGTERM, how long in-flight requests and streams may finish.',
    parse: timer(0),
  },
  anthropicModels: {
    env: 'PALISADE_ANTHROPIC_MODELS',
    default: '',
    help: 'Model names Anthropic clients ask for, mapped to local models: `claude-*=qwen3:8b,claude-3-haiku*=llama3.2:3b`; an entry without `=` is the fallback.',
    parse: modelMapSpec,
  },
  mesh: {
    env: 'PALISADE_MESH',
    default: true,
    help: 'Serve the agent mesh broker under /mesh (loopback clients only, with the token in mesh.token).',
    parse: boolean,
  },
  meshRateLimit: {
    env: 'PALISADE_MESH_RATE_LIMIT',
    default: 100,
    help: 'Mesh requests each peer may make in any 10 seconds; more get 429.',
    parse: integer(1, 10_000_000),
  },
  meshPeerTimeoutMs: {
    env: 'PALISADE_MESH_PEER_TIMEOUT',
    default: 60_000,
    help: 'A mesh peer silent this long is marked gone and its file claims are released.',
    parse: duration(1000),
  },
  meshClaimTtlMs: {
    env: 'PALISADE_MESH_CLAIM_TTL',
    default: 600_000,
    help: 'How long a mesh file claim lasts unless renewed or released.',
    parse: duration(1000),
  },
  meshMessageTtlMs: {
    env: 'PALISADE_MESH_MESSAGE_TTL',
    default: 86_400_000,
    help: 'Mesh messages older than this are deleted, read or not.',
    parse: duration(1000),
  },
  meshEventTtlMs: {
    env: 'PALISADE_MESH_EVENT_TTL',
    default: 172_800_000,
    help: 'Mesh events, and peers that left or went away, are deleted after this long.',
    parse: duration(1000),
  },
  meshName: {
    env: 'PALISADE_MESH_NAME',
    default: '',
    help: '(palisade mcp) The name other mesh peers see for this session; empty: `<agent>@<folder>-<id>`.',
    parse: peerLabel,
  },
  meshAgent: {
    env: 'PALISADE_MESH_AGENT',
    default: '',
    help: '(palisade mcp) Which coding agent this session is; empty: read from the environment, else the MCP client.',
    parse: peerLabel,
  },
  meshRetryMs: {
    env: 'PALISADE_MESH_RETRY',
    default: 10_000,
    help: '(palisade mcp) How long a call waits for a mesh broker that is down or restarting.',
    parse: timer(0),
  },
  auth: {
    env: 'PALISADE_AUTH',
    default: true,
    help: 'Accounts for the web app. false: one trusted user without login, on a loopback bind only and only while no other user exists.',
    parse: boolean,
  },
  setupToken: {
    env: 'PALISADE_SETUP_TOKEN',
    default: undefined as string | undefined,
    help: 'The one-time token the web setup page asks for on a non-loopback bind; empty: one is minted and printed at start.',
    parse: setupToken,
  },
  https: {
    env: 'PALISADE_HTTPS',
    default: false,
    help: 'The web app is reached over HTTPS (e.g. behind a TLS proxy): cookies get Secure and the __Host- prefix.',
    parse: boolean,
  },
  hsts: {
    env: 'PALISADE_HSTS',
    default: 'off' as HstsMode,
    help: 'Send Strict-Transport-Security on HTTPS responses: off, on, or preload.',
    parse: hstsMode,
  },
  hstsMaxAgeMs: {
    env: 'PALISADE_HSTS_MAX_AGE',
    default: 2 * 365 * 86_400_000,
    help: 'The max-age of Strict-Transport-Security.',
    parse: duration(1000),
  },
  sessionTtlMs: {
    env: 'PALISADE_SESSION_TTL',
    default: 30 * 86_400_000,
    help: 'How long a web session lasts; it is renewed when past half.',
    parse: duration(60_000),
  },
  singleSession: {
    env: 'PALISADE_SINGLE_SESSION',
    default: false,
    help: "Signing in ends the user's other sessions.",
    parse: boolean,
  },
  scryptN: {
    env: 'PALISADE_SCRYPT_N',
    default: 131_072,
    help: 'scrypt cost N for new password hashes (a power of two); weaker hashes are upgraded at login.',
    parse: powerOfTwo(1024, 1_048_576),
  },
  scryptR: {
    env: 'PALISADE_SCRYPT_R',
    default: 8,
    help: 'scrypt block size r for new password hashes.',
    parse: integer(1, 64),
  },
  scryptP: {
    env: 'PALISADE_SCRYPT_P',
    default: 1,
    help: 'scrypt parallelism p for new password hashes.',
    parse: integer(1, 16),
  },
  chatRatePerSecond: {
    env: 'PALISADE_CHAT_RATE',
    default: 2,
    help: 'Sustained chat messages per second per user (token bucket).',
    parse: positiveNumber,
  },
  chatRateBurst: {
    env: 'PALISADE_CHAT_BURST',
    default: 60,
    help: 'Chat messages a user may send at once before the sustained rate applies.',
    parse: integer(1, 1_000_000),
  },
  apiRatePerSecond: {
    env: 'PALISADE_API_RATE',
    default: 20,
    help: 'Sustained /api requests per second per user (or per client IP before login).',
    parse: positiveNumber,
  },
  apiRateBurst: {
    env: 'PALISADE_API_BURST',
    default: 200,
    help: '/api requests a user (or client IP) may send at once before the sustained rate applies.',
    parse: integer(1, 1_000_000),
  },
  models: {
    env: 'PALISADE_MODELS',
    flag: '--model',
    default: [] as string[],
    help: 'GGUF model files served in-process as the upstream `local`, comma separated (flag: repeat --model FILE). Files in PALISADE_HOME/models are served too.',
    parse: (text: string) => list(text),
  },
  local: {
    env: 'PALISADE_LOCAL',
    default: true,
    help: 'Serve the GGUF files in PALISADE_HOME/models in-process (upstream `local`); false serves only --model files.',
    parse: boolean,
  },
  localParallel: {
    env: 'PALISADE_LOCAL_PARALLEL',
    default: 1,
    help: 'Requests the embedded model answers at once; the others wait in its queue.',
    parse: integer(1, 64),
  },
  localQueue: {
    env: 'PALISADE_LOCAL_QUEUE',
    default: 64,
    help: 'Requests that may wait for the embedded model; more get 503 with Retry-After.',
    parse: integer(0, 100_000),
  },
  localContext: {
    env: 'PALISADE_LOCAL_CONTEXT',
    default: 4096,
    help: "Context size (tokens) of each embedded-model sequence, capped at the model's own.",
    parse: integer(64, 1_048_576),
  },
  localThreads: {
    env: 'PALISADE_LOCAL_THREADS',
    default: 0,
    help: 'CPU threads for embedded inference; 0: one per core. Tiny models run fastest on 1.',
    parse: integer(0, 1024),
  },
  localGpu: {
    env: 'PALISADE_LOCAL_GPU',
    default: 'auto' as LocalGpu,
    help: 'GPU for embedded inference: auto, false, cuda, vulkan or metal. Prebuilt binaries only; nothing is compiled.',
    parse: localGpu,
  },
  localIdleUnloadMs: {
    env: 'PALISADE_LOCAL_IDLE_UNLOAD',
    default: 900_000,
    help: 'An embedded model unused this long is unloaded from memory (loaded again on the next request).',
    parse: timer(1000),
  },
  maxJobs: {
    env: 'PALISADE_MAX_JOBS',
    default: 2,
    help: 'Jobs that run at once; later runs wait queued.',
    parse: integer(1, 64),
  },
  jobKillGraceMs: {
    env: 'PALISADE_JOB_KILL_GRACE',
    default: 10_000,
    help: 'After SIGTERM (cancel, timeout, server stop, restart recovery), how long a job may take to exit before SIGKILL.',
    parse: timer(0),
  },
  logLevel: {
    env: 'PALISADE_LOG_LEVEL',
    default: 'info' as LogLevel,
    help: `Log level: ${LOG_LEVELS.join(', ')}.`,
    parse: logLevel,
  },
} satisfies Record<string, Setting<unknown>>;

type Settings = typeof SETTINGS;
export type Config = {
  [K in keyof Settings]: Settings[K] extends Setting<infer T> ? T : never;
};

import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { homeFile } from '../config/index.js';
import type {
  ClaimView,
  EventView,
  MeshCounts,
  MessageView,
  PeerView,
  Scope,
  StateView,
} from './broker.js';
import { readMeshEndpoint } from './token.js';

/** No broker answers for this home (and none could be started). */
export class MeshUnavailableError extends Error {}

/** The broker answered with an error: its status, code and message (which names the fix). */
export class MeshRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

export interface MeshClientOptions {
  home: string;
  /** The peer this client acts as: named on every GET, so the broker counts it to that peer. */
  peerId?: () => string | undefined;
  /** How long a request keeps retrying while the broker is down or restarting. */
  retryForMs?: number;
  /** Starts a broker when none answers (palisade mcp does; the CLI does not). */
  startBroker?: () => Promise<void>;
}

export interface Registered {
  peer: PeerView;
  event_seq: number;
  heartbeat_ms: number;
}

export interface MeshStatus extends MeshCounts {
  status: string;
  version: string;
  uptime_s: number;
  last_event_seq: number;
  limits: Record<string, number>;
}

type Query = Record<string, string | number | boolean | undefined>;

interface CallOptions {
  /** Overrides the client's retry window for this call. */
  retryForMs?: number;
  /** False: never start a broker for this call (heartbeats, goodbyes). */
  mayStart?: boolean;
}

const dispatcher = new Agent({ keepAliveTimeout: 10_000, connections: 16 });

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? '';
  return [
    'ECONNREFUSED',
    'ECONNRESET',
    'EPIPE',
    'UND_ERR_SOCKET',
    'UND_ERR_CLOSED',
    'ENOTFOUND',
    'EHOSTUNREACH',
  ].includes(code);
}

/** The broker's JSON error (or, from something else on the port, its status) as an error. */
export function brokerError(status: number, text: string): MeshRequestError {
  let parsed: { error?: { code?: string; message?: string }; request_id?: string } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    // Not the broker's JSON: something else answers on that port.
  }
  return new MeshRequestError(
    status,
    parsed.error?.code ?? 'http_error',
    parsed.error?.message ?? `the broker answered ${status}`,
    parsed.request_id,
  );
}

/** How to start the broker for `home`; tells why when it cannot. */
export function describeNoBroker(home: string): string {
  return `no Palisade mesh broker is running for ${home}; start one with \`palisade serve --home ${home}\` (or restart palisade mcp, which starts one)`;
}

/**
 * Talks to the mesh broker serving `home`, finding it through `mesh.url` and `mesh.token`.
 * Both are read again whenever the broker turns a request away as unauthorized or cannot be
 * reached, so a client outlives broker restarts (each start mints a new token).
 *
 * @example
 * const client = createMeshClient({ home });
 * const { peer } = await client.register({ cwd: process.cwd() });
 * await client.send(peer.id, other.id, 'I have the parser; take the tests?');
 */
export function createMeshClient(options: MeshClientOptions) {
  const { home } = options;
  const retryForMs = options.retryForMs ?? 5000;
  let endpoint = readMeshEndpoint(home);
  let starting: Promise<void> | undefined;

  async function once<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
    if (endpoint.url === undefined || endpoint.token === undefined) {
      throw Object.assign(new Error('no broker endpoint'), { code: 'ECONNREFUSED' });
    }
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) search.set(key, String(value));
    }
    const qs = search.size > 0 ? `?${search}` : '';
    const response = await request(`${endpoint.url}${path}${qs}`, {
      method: method as 'GET',
      dispatcher,
      headers: {
        authorization: `Bearer ${endpoint.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      headersTimeout: 90_000,
      bodyTimeout: 90_000,
    });
    const text = await response.body.text();
    if (response.statusCode >= 400) throw brokerError(response.statusCode, text);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /**
   * One request, retried while the broker is down, restarting (503, a new token) or moved (a
   * new port). With `mayStart`, a broker is started when none answers: at once if none ever
   * ran for the home (no token), else once the retries run out.
   */
  async function call<T>(
    method: string,
    path: string,
    body?: unknown,
    query?: Query,
    callOptions: CallOptions = {},
  ): Promise<T> {
    const deadline = Date.now() + (callOptions.retryForMs ?? retryForMs);
    const mayStart = options.startBroker !== undefined && callOptions.mayStart !== false;
    const asPeer = options.peerId?.();
    const fullQuery =
      asPeer !== undefined && method === 'GET' ? { peer_id: asPeer, ...query } : query;
    let triedStart = false;
    let reReadToken = false;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await once<T>(method, path, body, fullQuery);
      } catch (error) {
        const status = error instanceof MeshRequestError ? error.status : undefined;
        const unauthorized = status === 401;
        if (!unauthorized && status !== 503 && !isConnectionError(error)) throw error;
        // The broker restarted (new token) or moved (new port): read both again.
        endpoint = readMeshEndpoint(home);
        if (unauthorized) {
          // Once with the token read again; a second refusal is final.
          if (reReadToken) throw error;
          reReadToken = true;
          continue;
        }
        // No token at all: no broker ever ran for this home (a stopped one leaves its token).
        const neverStarted = endpoint.token === undefined;
        if (Date.now() < deadline && !(neverStarted && mayStart && !triedStart)) {
          await sleep(Math.min(100 * 2 ** attempt, 1000));
          continue;
        }
        if (mayStart && !triedStart) {
          triedStart = true;
          starting ??= (options.startBroker as () => Promise<void>)().finally(
            () => (starting = undefined),
          );
          await starting;
          endpoint = readMeshEndpoint(home);
          continue;
        }
        if (status === 503) throw error;
        throw new MeshUnavailableError(describeNoBroker(home));
      }
    }
  }

  return {
    home,
    call,
    health: () => call<{ status: string; version: string }>('GET', '/mesh/health'),
    status: () => call<MeshStatus>('GET', '/mesh/status'),
    register: (input: {
      cwd: string;
      git_root?: string | null;
      agent?: string;
      name?: string;
      pid?: number;
      summary?: string;
    }) => call<Registered>('POST', '/mesh/peers', input),
    // A heartbeat or a goodbye never brings back a broker the user stopped.
    heartbeat: (id: string) =>
      call<{ peer: PeerView }>('POST', `/mesh/peers/${id}/heartbeat`, undefined, undefined, {
        retryForMs: 0,
        mayStart: false,
      }),
    update: (
      id: string,
      changes: {
        summary?: string;
        status?: string;
        name?: string;
        agent?: string;
        cwd?: string;
        git_root?: string | null;
      },
    ) => call<{ peer: PeerView }>('PATCH', `/mesh/peers/${id}`, changes),
    unregister: (id: string) =>
      call<void>('DELETE', `/mesh/peers/${id}`, undefined, undefined, {
        retryForMs: 1000,
        mayStart: false,
      }),
    peers: (query: { scope?: Scope; peer_id?: string; include_left?: boolean } = {}) =>
      call<{ peers: PeerView[] }>('GET', '/mesh/peers', undefined, query),
    send: (from: string, to: string, text: string) =>
      call<{ message: MessageView; recipients: number }>('POST', '/mesh/messages', {
        from,
        to,
        text,
      }),
    broadcast: (from: string, text: string, scope?: Scope) =>
      call<{ message: MessageView; recipients: number }>('POST', '/mesh/messages', {
        from,
        text,
        ...(scope ? { scope } : {}),
      }),
    inbox: (id: string, query: { unread?: boolean; limit?: number; after?: number } = {}) =>
      call<{ messages: MessageView[] }>('GET', `/mesh/peers/${id}/inbox`, undefined, query),
    markRead: (id: string, ids?: number[]) =>
      call<{ marked: number }>('POST', `/mesh/peers/${id}/inbox/read`, ids ? { ids } : {}),
    events: (query: { peer_id?: string; since?: number; wait?: number; limit?: number }) =>
      call<{ events: EventView[]; next: number }>('GET', '/mesh/events', undefined, query),
    stateList: (project: string) =>
      call<{ entries: StateView[] }>('GET', '/mesh/state', undefined, { project }),
    stateGet: (project: string, key: string) =>
      call<{ entry: StateView }>('GET', '/mesh/state', undefined, { project, key }),
    stateSet: (peer_id: string, project: string, key: string, value: string) =>
      call<{ entry: StateView }>('PUT', '/mesh/state', { peer_id, project, key, value }),
    stateDelete: (peer_id: string, project: string, key: string) =>
      call<{ deleted: boolean }>('DELETE', '/mesh/state', undefined, { peer_id, project, key }),
    claims: () => call<{ claims: ClaimView[] }>('GET', '/mesh/claims'),
    claim: (peer_id: string, path: string, ttl_ms?: number) =>
      call<{ claim: ClaimView }>('POST', '/mesh/claims', {
        peer_id,
        path,
        ...(ttl_ms ? { ttl_ms } : {}),
      }),
    release: (peer_id: string, path: string) =>
      call<{ released: boolean }>('POST', '/mesh/claims/release', { peer_id, path }),
  };
}

export type MeshClient = ReturnType<typeof createMeshClient>;

/** The pid in the home's pid file, if any. */
function readPid(home: string): number | undefined {
  try {
    return Number(readFileSync(homeFile(home, 'palisade.pid'), 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** What a log file gained after byte `start` (empty when it cannot be read). */
function logSince(path: string, start: number): string {
  try {
    return readFileSync(path).subarray(start).toString('utf8');
  } catch {
    return '';
  }
}

/**
 * Starts `palisade serve` for `home` in the background, on loopback, detached so that it
 * outlives the process that started it; resolves once the broker answers. The command is an
 * argument array (no shell) and its output goes to `mesh-broker.log` in the home.
 */
export async function startBackgroundBroker(
  home: string,
  options: { port?: number; waitMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<void> {
  const script = process.argv[1];
  if (script === undefined) throw new MeshUnavailableError(describeNoBroker(home));
  const waitMs = options.waitMs ?? 20_000;
  const ports = options.port === undefined ? [undefined, 0] : [options.port, 0];
  let lastReason = '';
  for (const port of ports) {
    const logPath = homeFile(home, 'mesh-broker.log');
    const log = openSync(logPath, 'a', 0o600);
    const logStart = fstatSync(log).size;
    const args = [
      ...process.execArgv,
      script,
      'serve',
      '--home',
      home,
      '--host',
      '127.0.0.1',
      ...(port === undefined ? [] : ['--port', String(port)]),
    ];
    const child = spawn(process.execPath, args, {
      detached: true,
      shell: false,
      stdio: ['ignore', log, log],
      env: { ...(options.env ?? process.env), PALISADE_MESH: 'true' },
    });
    closeSync(log);
    let exited = false;
    // Another agent started one first: ours stops ("already serving"); wait for theirs.
    let lostRace = false;
    child.once('exit', () => {
      exited = true;
      lostRace = /already serving/.test(logSince(logPath, logStart));
    });
    child.unref();
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && (!exited || lostRace)) {
      const { url } = readMeshEndpoint(home);
      if (url !== undefined) {
        try {
          const response = await request(`${url}/mesh/health`, { dispatcher });
          await response.body.text();
          if (response.statusCode === 200) {
            // Another agent's broker answered first: ours, still starting, would only take
            // over the home once that one stops, unasked. Stop it now.
            if (!exited && readPid(home) !== child.pid) child.kill('SIGTERM');
            return;
          }
        } catch {
          // Not up yet.
        }
      }
      await sleep(100);
    }
    const tail = logSince(logPath, logStart).trim().split('\n').slice(-3).join(' / ');
    lastReason = tail;
    if (!/already in use/.test(tail)) break;
  }
  throw new MeshUnavailableError(
    `could not start a mesh broker for ${home} (${lastReason || 'no output'}); start one with \`palisade serve --home ${home}\``,
  );
}

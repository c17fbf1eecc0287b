import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { posix, win32 } from 'node:path';
import type { WindowLimiter } from '../auth/index.js';
import { isLoopbackHost } from '../config/index.js';
import { createErrorHandler, HttpError } from '../server/errors.js';
import { lastEventId, openEventStream } from '../server/event-stream.js';
import type { BrokerNotice, EventView, MeshBroker } from './broker.js';
import { checkPayload, MESH_BODY_LIMIT, parse, PEER_ID, schemas } from './schemas.js';
import { createBearerCheck } from './token.js';

export interface MeshRoutesOptions {
  broker: MeshBroker;
  /** The bearer token every route but /mesh/health requires. */
  token: string;
  /** Requests per peer per window (see createWindowLimiter). */
  limiter: WindowLimiter;
  /** The limiter's count per 10 s, for /mesh/status. */
  rateLimit: number;
  version: string;
  startedAt: number;
  /** How often an idle SSE stream gets a comment line, so proxies and clients keep it. */
  keepAliveMs?: number;
}

/** An SSE client that lets this much pile up unread is cut; it reconnects with Last-Event-ID. */
const MAX_SSE_BACKLOG = 1024 * 1024;

/**
 * The bucket a request is counted in: the registered peer it names (in the path, the body or
 * the query), else one shared by everything else. Made-up ids get no bucket of their own.
 */
function limitKey(request: FastifyRequest, broker: MeshBroker): string {
  const sources = [
    (request.params as Record<string, unknown> | undefined)?.id,
    (request.body as Record<string, unknown> | undefined)?.from,
    (request.body as Record<string, unknown> | undefined)?.peer_id,
    (request.query as Record<string, unknown> | undefined)?.peer_id,
  ];
  for (const value of sources) {
    if (typeof value !== 'string' || !PEER_ID.test(value)) continue;
    const id = value.toLowerCase();
    if (broker.knows(id)) return id;
  }
  return 'anonymous';
}

/** One spelling per file (`/a/./b/../c/` is `/a/c`), so two peers cannot claim it twice. */
function normalizePath(path: string): string {
  const windows = /^[A-Za-z]:[\\/]/.test(path);
  const normal = windows ? win32.normalize(path) : posix.normalize(path);
  // A trailing separator is another spelling too; the root keeps its own.
  return normal.length > (windows ? 3 : 1) ? normal.replace(/[\\/]$/, '') : normal;
}

const isHealth = (request: FastifyRequest) => request.routeOptions.url === '/mesh/health';

function isVisible(notice: BrokerNotice, viewer: string | undefined): boolean {
  return viewer === undefined || notice.audience === null || notice.audience.has(viewer);
}

/** The event as `viewer` gets it: a message's text only for its recipients. */
function eventFor(notice: BrokerNotice, viewer: string | undefined): EventView {
  if (notice.message === undefined || viewer === undefined) return notice.event;
  return { ...notice.event, message: notice.message };
}

function sseFrame(event: EventView): string {
  const name = event.message ? 'message' : event.type;
  return `id: ${event.seq}\nevent: ${name}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * The broker's HTTP face under /mesh: loopback clients only, whatever the bind address; a
 * bearer token on everything but /mesh/health; no browser (any Origin is refused); at most
 * `limiter` requests per peer; 1 MB bodies; 64 KB payloads.
 *
 * @example
 * app.register(meshRoutes, { prefix: '/mesh', broker, token, limiter, version, startedAt });
 */
export const meshRoutes: FastifyPluginAsync<MeshRoutesOptions> = async (mesh, options) => {
  const { broker, limiter } = options;
  const tokenMatches = createBearerCheck(options.token);
  const keepAliveMs = options.keepAliveMs ?? 15_000;

  // Streams and long polls held open; ended at shutdown so the server need not wait for them.
  const holding = new Set<() => void>();
  mesh.addHook('preClose', async () => {
    for (const end of holding) end();
  });

  mesh.setErrorHandler(
    createErrorHandler(MESH_BODY_LIMIT, undefined, 'the mesh takes at most 1 MB'),
  );
  // JSON only: a text/plain body would otherwise arrive as a string (415, not 400).
  mesh.removeContentTypeParser('text/plain');
  // Every route's body is held to the mesh limit, not only those that expect one.
  mesh.addHook('onRoute', (route) => {
    route.bodyLimit = Math.min(route.bodyLimit ?? MESH_BODY_LIMIT, MESH_BODY_LIMIT);
  });

  mesh.addHook('onRequest', async (request) => {
    // The socket's own address: X-Forwarded-For cannot make a remote client local.
    const peer = request.socket.remoteAddress ?? '';
    if (!isLoopbackHost(peer) || !isLoopbackHost(request.ip)) {
      throw new HttpError(
        403,
        'mesh_loopback_only',
        'the mesh broker serves clients on this machine only (connect to 127.0.0.1)',
      );
    }
    if (request.headers.origin !== undefined) {
      throw new HttpError(
        403,
        'mesh_no_browsers',
        'the mesh broker does not serve browsers (a request with an Origin header was refused)',
      );
    }
    if (isHealth(request)) return;
    if (!tokenMatches(request.headers.authorization)) {
      throw new HttpError(
        401,
        request.headers.authorization === undefined ? 'missing_mesh_token' : 'invalid_mesh_token',
        'send Authorization: Bearer <token> with the token from PALISADE_HOME/mesh.token (it changes on every broker start)',
        { headers: { 'www-authenticate': 'Bearer realm="palisade-mesh"' } },
      );
    }
  });

  mesh.addHook('preHandler', async (request, reply) => {
    if (isHealth(request)) return;
    const wait = limiter.take(limitKey(request, broker));
    if (wait > 0) {
      reply.header('retry-after', String(wait));
      throw new HttpError(
        429,
        'rate_limited',
        `too many requests from this peer; retry in ${wait} s (PALISADE_MESH_RATE_LIMIT per 10 s)`,
      );
    }
  });

  // Unknown paths under /mesh pass the same door (loopback, no Origin, token) before their 404.
  mesh.setNotFoundHandler(async (request) => {
    throw new HttpError(
      404,
      'not_found',
      `no route for ${request.method} ${request.url.split('?', 1)[0]}`,
    );
  });

  mesh.get('/health', async () => ({ status: 'ok', version: options.version }));

  mesh.get('/status', async () => ({
    status: 'ok',
    version: options.version,
    uptime_s: Math.floor((Date.now() - options.startedAt) / 1000),
    ...broker.counts(),
    last_event_seq: broker.lastEventSeq(),
    limits: {
      rate_limit_per_10s: options.rateLimit,
      peer_timeout_ms: broker.limits.peerTimeoutMs,
      claim_ttl_ms: broker.limits.claimTtlMs,
      message_ttl_ms: broker.limits.messageTtlMs,
      event_ttl_ms: broker.limits.eventTtlMs,
    },
  }));

  mesh.post('/peers', async (request, reply) => {
    const input = parse(schemas.register, request.body);
    const registered = broker.register(input);
    return reply.code(201).send({
      ...registered,
      heartbeat_ms: Math.max(1000, Math.floor(broker.limits.peerTimeoutMs / 4)),
    });
  });

  mesh.get('/peers', async (request) => {
    const query = parse(schemas.peersQuery, request.query, 'query string');
    const scope = query.scope ?? 'machine';
    if (scope !== 'machine' && query.peer_id === undefined) {
      throw new HttpError(
        400,
        'invalid_request',
        `scope=${scope} needs peer_id: the peer whose ${scope} to look in`,
      );
    }
    return {
      peers: broker.peers({
        scope,
        ...(query.peer_id ? { viewer: query.peer_id } : {}),
        includeLeft: query.include_left === 'true',
      }),
    };
  });

  mesh.get('/peers/:id', async (request) => {
    const { id } = parse(schemas.peerParams, request.params, 'URL');
    return { peer: broker.peer(id) };
  });

  mesh.patch('/peers/:id', async (request) => {
    const { id } = parse(schemas.peerParams, request.params, 'URL');
    return { peer: broker.update(id, parse(schemas.update, request.body)) };
  });

  mesh.post('/peers/:id/heartbeat', async (request) => {
    const { id } = parse(schemas.peerParams, request.params, 'URL');
    return { peer: broker.heartbeat(id) };
  });

  mesh.delete('/peers/:id', async (request, reply) => {
    const { id } = parse(schemas.peerParams, request.params, 'URL');
    broker.unregister(id);
    return reply.code(204).send();
  });

  mesh.post('/messages', async (request, reply) => {
    const input = parse(schemas.send, request.body);
    checkPayload('text', input.text);
    if (input.to && input.scope !== undefined) {
      throw new HttpError(400, 'invalid_request', 'scope is for broadcasts; drop it or drop to');
    }
    const sent = await broker.deliver(input.from, input.to ?? null, input.text, input.scope);
    return reply.code(201).send(sent);
  });

  mesh.get('/peers/:id/inbox', async (request) => {
    const { id } = parse(schemas.peerParams, request.params, 'URL');
    const query = parse(schemas.inboxQuery, request.query, 'query string');
    return {
      messages: broker.inbox(id, {
        unreadOnly: query.unread !== 'false',
        ...(query.limit ? { limit: query.limit } : {}),
        ...(query.after ? { after: query.after } : {}),
      }),
    };
  });

  mesh.post('/peers/:id/inbox/read', async (request) => {
    const { id } = parse(schemas.peerParams, request.params, 'URL');
    const { ids } = parse(schemas.markRead, request.body ?? {});
    return { marked: broker.markRead(id, ids) };
  });

  /** Events after `since`; with `wait`, holds the request until one arrives (long poll). */
  mesh.get('/events', async (request, reply) => {
    const query = parse(schemas.eventsQuery, request.query, 'query string');
    const viewer = query.peer_id;
    if (viewer) broker.heartbeat(viewer);
    const since = query.since ?? 0;
    const read = () =>
      broker.events({ since, limit: query.limit ?? 100, ...(viewer ? { viewer } : {}) });
    let events = read();
    if (events.length === 0 && (query.wait ?? 0) > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          unsubscribe();
          reply.raw.off('close', done);
          holding.delete(done);
          resolve();
        };
        holding.add(done);
        const timer = setTimeout(done, query.wait);
        const unsubscribe = broker.subscribe((notice) => {
          if (notice.event.seq > since && isVisible(notice, viewer)) done();
        });
        reply.raw.once('close', done);
      });
      events = read();
    }
    const last = events.at(-1);
    return { events, next: last ? last.seq : Math.max(since, broker.lastEventSeq()) };
  });

  mesh.get('/events/stream', async (request, reply: FastifyReply) => {
    const query = parse(schemas.eventsQuery, request.query, 'query string');
    const viewer = query.peer_id;
    if (viewer) broker.heartbeat(viewer);
    const since = lastEventId(request) ?? query.since;
    const raw = openEventStream(reply);
    let sent = since ?? broker.lastEventSeq();
    const push = (event: EventView) => {
      if (event.seq <= sent) return;
      sent = event.seq;
      raw.write(sseFrame(event));
      if (raw.writableLength > MAX_SSE_BACKLOG) raw.destroy();
    };
    // Subscribing and replaying happen in one synchronous step: no commit can fall between.
    const unsubscribe = broker.subscribe((notice) => {
      if (isVisible(notice, viewer)) push(eventFor(notice, viewer));
    });
    if (since !== undefined) {
      // Page by page: a client that missed more than one page must not lose the rest.
      for (;;) {
        const page = broker.events({ since: sent, limit: 1000, ...(viewer ? { viewer } : {}) });
        for (const event of page) push(event);
        if (page.length < 1000 || raw.destroyed) break;
      }
    }
    const keepAlive = setInterval(() => {
      raw.write(': keep-alive\n\n');
      if (viewer) {
        try {
          broker.heartbeat(viewer);
        } catch {
          raw.end();
        }
      }
    }, keepAliveMs);
    const end = () => raw.end();
    holding.add(end);
    raw.once('close', () => {
      clearInterval(keepAlive);
      unsubscribe();
      holding.delete(end);
    });
  });

  mesh.get('/state', async (request) => {
    const query = parse(schemas.stateQuery, request.query, 'query string');
    if (query.key === undefined) return { entries: broker.stateList(query.project) };
    const entry = broker.stateGet(query.project, query.key);
    if (entry === undefined) {
      throw new HttpError(
        404,
        'state_not_found',
        `no key "${query.key}" in project ${query.project}`,
      );
    }
    return { entry };
  });

  mesh.put('/state', async (request) => {
    const input = parse(schemas.stateSet, request.body);
    checkPayload('value', input.value);
    return { entry: broker.stateSet(input.peer_id, input.project, input.key, input.value) };
  });

  mesh.delete('/state', async (request) => {
    const query = parse(schemas.stateDelete, request.query, 'query string');
    return { deleted: broker.stateDelete(query.peer_id, query.project, query.key) };
  });

  mesh.get('/claims', async () => ({ claims: broker.claims() }));

  mesh.post('/claims', async (request, reply) => {
    const input = parse(schemas.claim, request.body);
    const claim = broker.claim(input.peer_id, normalizePath(input.path), input.ttl_ms);
    return reply.code(201).send({ claim });
  });

  mesh.post('/claims/release', async (request) => {
    const input = parse(schemas.release, request.body);
    broker.release(input.peer_id, normalizePath(input.path));
    return { released: true };
  });
};

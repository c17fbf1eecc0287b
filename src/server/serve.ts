import type { FastifyInstance } from 'fastify';
import type { LookupFunction } from 'node:net';
import type { DestinationStream, Logger } from 'pino';
import {
  anthropicErrorBody,
  createModelMapSource,
  messages,
  parseModelMapSpec,
  toAnthropicModelList,
} from '../anthropic/index.js';
import { createAuditLog, type AuditLog } from '../audit/index.js';
import {
  authRoutes,
  createApiKey,
  createKeyRing,
  createLoginThrottle,
  createRateLimiter,
  ensureLocalUser,
  isSetupClosed,
  pruneSessions,
  readPresentedKey,
  type CookiePolicy,
  type SessionUser,
} from '../auth/index.js';
import { ConfigError, isLoopbackHost, prepareHome, type Config } from '../config/index.js';
import { loadMasterKey, randomToken } from '../crypto/index.js';
import { admin, isTotpRequired as totpRequiredIn, settleKeyFiles } from '../admin/index.js';
import { chat } from '../chat/index.js';
import { createUserSecrets, settings } from '../settings/index.js';
import { createMesh, type Mesh } from '../mesh/index.js';
import { createJobRunner, jobsRoutes } from '../jobs/index.js';
import {
  createDispatcher,
  createUpstreamRegistry,
  type Lookup,
  type UpstreamRegistry,
} from '../gateway/index.js';
import { GgufError, startLocalUpstream, type LocalUpstream } from '../local/index.js';
import { openStore, type Store } from '../store/index.js';
import { buildApp } from './app.js';
import { openAiErrorBody } from './errors.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import { acquirePidLock } from './pid-lock.js';
import { VERSION } from './version.js';

export interface ServeOptions {
  /** Log destination (tests capture it); stdout by default. */
  logStream?: DestinationStream;
  /** Where a freshly minted bootstrap key is printed; stderr by default. */
  announce?: (text: string) => void;
  /** DNS lookups for the SSRF guard, replaceable in tests. */
  lookup?: Lookup;
  connectLookup?: LookupFunction;
}

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  port: number;
  logger: Logger;
  store: Store;
  audit: AuditLog;
  registry: UpstreamRegistry;
  /** The embedded GGUF model server (upstream `local`), unless turned off. */
  local?: LocalUpstream;
  /** The agent mesh broker, unless PALISADE_MESH=false. */
  mesh?: Mesh;
  /** A key minted at start because the server is exposed with none; shown once. */
  bootstrapKey?: string;
  /** The token the web setup page asks for, while no admin exists on an exposed bind. */
  setupToken?: string;
  /** Stops accepting, lets in-flight requests finish up to the grace period, closes the store. */
  close(): Promise<void>;
}

/**
 * Starts Palisade: home, pid lock, store, keys, upstreams, then the HTTP server.
 *
 * @example
 * const server = await startServer(loadConfig({ env: process.env }));
 * process.once('SIGTERM', () => server.close());
 */
export async function startServer(
  config: Config,
  options: ServeOptions = {},
): Promise<RunningServer> {
  const logger = createLogger(config.logLevel, options.logStream);
  prepareHome(config.home);
  const releasePid = acquirePidLock(config.home);
  const cleanups: Array<() => unknown> = [releasePid];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };

  try {
    const store = await openStore(config.home, { checkpointEveryMs: 1000 });
    cleanups.push(() => store.close());
    // A `palisade secret rotate` cut short between its commit and its key-file rename is
    // finished here, before the key is read.
    if (config.secret === undefined) settleKeyFiles(config.home, store);
    const masterKey = loadMasterKey(config.home, config.secret);
    const audit = createAuditLog(store, config.home);
    const keys = createKeyRing(store);
    cleanups.push(() => keys.close());
    const exposed = !isLoopbackHost(config.host);
    // Behind a proxy (a TLS one, say, on this machine) a loopback bind is reached from anywhere.
    const webExposed = exposed || config.https || config.trustProxy !== false;

    let localUser: SessionUser | undefined;
    if (!config.auth) {
      if (webExposed) {
        throw new ConfigError(
          exposed
            ? `PALISADE_AUTH=false is allowed only on a loopback bind, not ${config.host}: bind to 127.0.0.1 or turn accounts back on`
            : 'PALISADE_AUTH=false is refused behind a proxy (PALISADE_HTTPS or PALISADE_TRUST_PROXY is set): the proxy makes the app reachable from elsewhere; turn accounts back on',
        );
      }
      const local = ensureLocalUser(store);
      if (!local) {
        throw new ConfigError(
          'PALISADE_AUTH=false is refused: this home already has user accounts, so everyone must sign in (remove PALISADE_AUTH=false)',
        );
      }
      localUser = { id: local.id, username: local.username, role: local.role };
    }

    let bootstrapKey: string | undefined;
    if (exposed && !keys.hasKeys()) {
      const minted = await createApiKey(store, { name: 'bootstrap-admin', scope: 'admin' });
      keys.invalidate();
      bootstrapKey = minted.key;
      audit.record({
        action: 'key.created',
        actor: 'system',
        target: minted.apiKey.id,
        details: { name: minted.apiKey.name, scope: 'admin', reason: 'exposed bind with no keys' },
      });
      const announce = options.announce ?? ((text: string) => process.stderr.write(text));
      announce(
        [
          '',
          `Palisade is bound to ${config.host}, so /v1 requires an API key. None existed; this one was created:`,
          '',
          `    ${minted.key}`,
          '',
          'It is shown once and stored only as a hash. Keep it safe; revoke it with: palisade keys revoke bootstrap-admin',
          '',
        ].join('\n'),
      );
    }

    let setupToken: string | undefined;
    if (config.auth && !isSetupClosed(store) && (webExposed || config.setupToken !== undefined)) {
      setupToken = config.setupToken ?? randomToken(18);
      if (config.setupToken === undefined) {
        const announce = options.announce ?? ((text: string) => process.stderr.write(text));
        announce(
          [
            '',
            `No admin exists yet. Open the web app and create one with this one-time setup token:`,
            '',
            `    ${setupToken}`,
            '',
            'Or on this machine: palisade users create NAME --admin',
            '',
          ].join('\n'),
        );
      }
    }

    const metrics = createMetrics();
    let local: LocalUpstream | undefined;
    if (config.models.length > 0 || config.local) {
      try {
        local = await startLocalUpstream({
          logger,
          home: config.home,
          files: config.models,
          serveFolder: config.local,
          gpu: config.localGpu,
          threads: config.localThreads,
          contextSize: config.localContext,
          parallel: config.localParallel,
          queueLimit: config.localQueue,
          idleUnloadMs: config.localIdleUnloadMs,
          bodyLimit: config.bodyLimit,
          maxTokens: config.maxTokens,
          metrics: metrics.registry,
        });
      } catch (error) {
        if (error instanceof GgufError) throw new ConfigError(error.message);
        throw error;
      }
      const started = local;
      cleanups.push(() => started.close());
    }

    const registry = createUpstreamRegistry({
      store,
      masterKey,
      logger,
      configured: config.upstreams,
      ...(local ? { local } : {}),
      healthIntervalMs: config.healthIntervalMs,
      lookup: options.lookup,
      connectLookup: options.connectLookup,
    });
    cleanups.push(() => registry.close());
    await registry.start(config.probeLocal);

    let modelSpec;
    try {
      modelSpec = parseModelMapSpec(config.anthropicModels);
    } catch (error) {
      throw new ConfigError(`invalid ${(error as Error).message}`);
    }
    const anthropicModels = createModelMapSource(store, modelSpec);
    const policy = { maxTokens: config.maxTokens, maxChoices: config.maxChoices };

    const limits = { perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst };
    const startedAt = Date.now();
    let mesh: Mesh | undefined;
    if (config.mesh) {
      const created = createMesh({
        store,
        home: config.home,
        logger,
        version: VERSION,
        startedAt,
        rateLimit: config.meshRateLimit,
        limits: {
          peerTimeoutMs: config.meshPeerTimeoutMs,
          claimTtlMs: config.meshClaimTtlMs,
          messageTtlMs: config.meshMessageTtlMs,
          eventTtlMs: config.meshEventTtlMs,
        },
      });
      mesh = created;
      cleanups.push(() => created.close());
    }
    const cookies: CookiePolicy = {
      secure: (request) => config.https || request.protocol === 'https',
    };
    const isTotpRequired = () => totpRequiredIn(store);
    const mcpPolicy = { strict: true, allowedHosts: config.mcpAllowedHosts };
    const secrets = createUserSecrets({ store, masterKey, mcpPolicy });
    const scrypt = { n: config.scryptN, r: config.scryptR, p: config.scryptP };
    if (128 * scrypt.n * scrypt.r > 1024 ** 3) {
      throw new ConfigError(
        'PALISADE_SCRYPT_N x PALISADE_SCRYPT_R needs more than 1 GiB per password hash (128 x N x R bytes): lower one of them',
      );
    }
    const sessionPruner = setInterval(() => pruneSessions(store), 3_600_000);
    sessionPruner.unref();
    cleanups.push(() => clearInterval(sessionPruner));
    const jobs = createJobRunner({
      home: config.home,
      store,
      audit,
      logger,
      maxJobs: config.maxJobs,
      killGraceMs: config.jobKillGraceMs,
      // A pulled model is served at once rather than at the next health check.
      onFinish: (run) => {
        if (run.template === 'model-download' && run.status === 'succeeded') {
          void registry.checkAll();
        }
      },
    });
    jobs.start();
    cleanups.push(() => jobs.close());

    const app = buildApp({
      config,
      logger,
      metrics,
      version: VERSION,
      startedAt,
      activeJobs: () => jobs.activeCount(),
      isAdminRequest: (headers) => {
        const presented = readPresentedKey(headers);
        if (presented === undefined) return false;
        const result = keys.check(presented);
        return result.ok && result.apiKey.scope === 'admin';
      },
      gateway: {
        registry,
        keys,
        limiter: createRateLimiter(limits),
        audit,
        policy,
        exposed,
        corsOrigins: config.corsOrigins,
        limits,
        maxStreamsPerKey: config.maxStreamsPerKey,
        upstreamTimeoutMs: config.upstreamTimeoutMs,
        streamIdleTimeoutMs: config.streamIdleTimeoutMs,
        modelListFormat: (request, models) =>
          request.headers['anthropic-version'] === undefined
            ? undefined
            : toAnthropicModelList(models),
      },
      // Anthropic clients get Anthropic-shaped errors even where no Anthropic route matched.
      errorBodyFor: (request) =>
        request.url.startsWith('/v1/messages') || request.headers['anthropic-version'] !== undefined
          ? anthropicErrorBody
          : openAiErrorBody,
      ...(mesh ? { mesh: mesh.routes } : {}),
      ...(config.hsts === 'off'
        ? {}
        : {
            hsts: {
              header: `max-age=${Math.floor(config.hstsMaxAgeMs / 1000)}; includeSubDomains${config.hsts === 'preload' ? '; preload' : ''}`,
              isHttps: cookies.secure,
            },
          }),
      web: {
        api: {
          store,
          cookies,
          sessionTtlMs: config.sessionTtlMs,
          ...(localUser ? { localUser } : {}),
          limiter: createRateLimiter({
            perSecond: config.apiRatePerSecond,
            burst: config.apiRateBurst,
          }),
          isTotpRequired,
          routes: [
            async (api) =>
              api.register(authRoutes, {
                store,
                audit,
                masterKey,
                cookies,
                throttle: createLoginThrottle(),
                scrypt,
                sessionTtlMs: config.sessionTtlMs,
                singleSession: config.singleSession,
                setupToken,
                authEnabled: config.auth,
                isTotpRequired,
              }),
            async (api) =>
              api.register(chat, {
                store,
                registry,
                dispatcher: createDispatcher({
                  registry,
                  metrics,
                  maxStreamsPerKey: config.maxStreamsPerKey,
                  upstreamTimeoutMs: config.upstreamTimeoutMs,
                  streamIdleTimeoutMs: config.streamIdleTimeoutMs,
                }),
                policy,
                sendLimiter: createRateLimiter({
                  perSecond: config.chatRatePerSecond,
                  burst: config.chatRateBurst,
                }),
                upstreamKeyFor: (userId, upstream) => secrets.upstreamKeyFor(userId, upstream),
                mcpServersFor: (userId) => secrets.mcpServersFor(userId),
                maxStreamsPerUser: config.maxStreamsPerKey,
                mcpTools: { ssrf: mcpPolicy },
                streamIdleTimeoutMs: config.streamIdleTimeoutMs,
              }),
            async (api) => api.register(settings, { store, audit, secrets }),
            async (api) =>
              api.register(admin, {
                prefix: '/admin',
                store,
                audit,
                keys,
                registry,
                masterKey,
                scrypt,
                ...(options.lookup ? { lookup: options.lookup } : {}),
                syncUpstreams: () => registry.syncStore({ force: true }),
              }),
            async (api) => api.register(jobsRoutes, { prefix: '/admin/jobs', runner: jobs }),
          ],
        },
      },
      faces: [
        async (v1) =>
          v1.register(messages, {
            registry,
            policy,
            models: anthropicModels,
            bodyLimit: config.bodyLimit,
          }),
      ],
    });

    await app.listen({ host: config.host, port: config.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const shownHost = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${shownHost}:${port}`;
    mesh?.announce(config.host, port);
    logger.info(
      {
        url,
        home: config.home,
        exposed,
        upstreams: registry.list().map((u) => u.name),
        version: VERSION,
      },
      `Palisade listening on ${url}`,
    );

    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        logger.info('shutting down: no new connections; waiting for requests in flight');
        const grace = setTimeout(() => {
          logger.warn(
            `grace period of ${config.shutdownGraceMs} ms over; closing remaining connections`,
          );
          app.server.closeAllConnections();
        }, config.shutdownGraceMs);
        await app.close();
        clearTimeout(grace);
        await cleanup();
        logger.info('stopped');
        logger.flush();
      })();
      return closing;
    };

    return {
      app,
      url,
      port,
      logger,
      store,
      audit,
      registry,
      ...(local ? { local } : {}),
      ...(mesh ? { mesh } : {}),
      ...(bootstrapKey ? { bootstrapKey } : {}),
      ...(setupToken ? { setupToken } : {}),
      close,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

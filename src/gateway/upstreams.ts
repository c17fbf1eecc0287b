import { Pool } from 'undici';
import type { Logger } from 'pino';
import { ConfigError, UPSTREAM_NAME, type UpstreamSpec } from '../config/index.js';
import { deriveKey, secretBox, type SecretBox } from '../crypto/index.js';
import { isoNow, type Store, type UpstreamRow } from '../store/index.js';
import { assertUpstreamAllowed, guardedLookup, type Lookup } from './ssrf-guard.js';
import type { LookupFunction } from 'node:net';

/** One model as an upstream lists it in `/v1/models`. */
export interface ModelEntry {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** `local`: the embedded models, served in-process on a loopback port with a random key. */
export type UpstreamSource = 'config' | 'store' | 'probe' | 'local';

export interface Upstream {
  name: string;
  /** The URL as configured, for display (never holds credentials). */
  url: string;
  /** Path prefix before `/v1` (`''` for `http://host:1234` or `http://host:1234/v1`). */
  basePath: string;
  source: UpstreamSource;
  pool: Pool;
  apiKey: string | undefined;
  healthy: boolean;
  checkedAt: Date | null;
  lastError: string | null;
  models: ModelEntry[];
  modelIds: Set<string>;
}

export const LOCAL_PORTS: ReadonlyArray<{ name: string; port: number; product: string }> = [
  { name: 'lmstudio', port: 1234, product: 'LM Studio' },
  { name: 'ollama', port: 11434, product: 'Ollama' },
  { name: 'llamacpp', port: 8080, product: 'llama.cpp' },
  { name: 'vllm', port: 8000, product: 'vLLM' },
];

export interface RegistryOptions {
  store: Store;
  masterKey: Buffer;
  logger: Logger;
  /** Upstreams from flags and PALISADE_UPSTREAMS; not stored. */
  configured: UpstreamSpec[];
  /**
   * The embedded model server, when one runs. It joins the upstreams while it has a model to
   * serve (checked at every health check, so a pulled model is picked up) and leaves when it
   * has none, so an empty models folder changes nothing for the other upstreams.
   */
  local?: { name: string; url: string; apiKey: string; hasModels: () => Promise<boolean> };
  healthIntervalMs: number;
  /** DNS lookup, replaceable in tests; every connection goes through the SSRF guard. */
  lookup?: Lookup;
  connectLookup?: LookupFunction;
  onHealth?: (upstream: Upstream) => void;
  /** Ports probed when nothing is configured; the usual local servers by default. */
  probePorts?: ReadonlyArray<{ name: string; port: number; product: string }>;
}

/** Splits an upstream URL into the pool origin and the path before `/v1`. */
export function splitUpstreamUrl(url: URL): { origin: string; basePath: string } {
  const basePath = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  return { origin: url.origin, basePath };
}

export function upstreamKeyBox(masterKey: Buffer): SecretBox {
  return secretBox(deriveKey(masterKey, 'upstream-keys'));
}

/** Reads the upstream's own API key: from the named environment variable, or sealed in the store. */
export function upstreamApiKey(row: UpstreamRow, box: SecretBox): string | undefined {
  if (row.api_key_env) return process.env[row.api_key_env] || undefined;
  if (row.api_key_enc) return box.open(row.api_key_enc, `upstream:${row.name}`);
  return undefined;
}

/**
 * Validates and stores an upstream. The SSRF guard runs here (resolving the host) and again
 * on every connection the server makes.
 */
export async function addUpstream(
  store: Store,
  masterKey: Buffer,
  input: { name: string; url: string; apiKeyEnv?: string; apiKey?: string },
  lookup?: Lookup,
): Promise<UpstreamRow> {
  if (!UPSTREAM_NAME.test(input.name)) {
    throw new Error(
      `upstream name "${input.name}" is not allowed: use letters, digits and . _ - (up to 64)`,
    );
  }
  if (input.apiKeyEnv !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(input.apiKeyEnv)) {
    throw new Error(`"${input.apiKeyEnv}" is not an environment variable name`);
  }
  const url = await assertUpstreamAllowed(input.url, lookup);
  const exists = await store.db
    .selectFrom('upstream')
    .select('name')
    .where('name', '=', input.name)
    .executeTakeFirst();
  if (exists) throw new Error(`an upstream named "${input.name}" already exists: remove it first`);
  const row: UpstreamRow = {
    name: input.name,
    url: url.href.replace(/\/$/, ''),
    api_key_env: input.apiKeyEnv ?? null,
    api_key_enc:
      input.apiKey !== undefined
        ? upstreamKeyBox(masterKey).seal(input.apiKey, `upstream:${input.name}`)
        : null,
    created_at: isoNow(),
  };
  await store.db.insertInto('upstream').values(row).execute();
  return row;
}

export async function removeUpstream(store: Store, name: string): Promise<boolean> {
  const result = await store.db.deleteFrom('upstream').where('name', '=', name).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export async function listStoredUpstreams(store: Store): Promise<UpstreamRow[]> {
  return store.db.selectFrom('upstream').selectAll().orderBy('name').execute();
}

const HEALTH_TIMEOUT_MS = 5_000;
const MODELS_BODY_LIMIT = 4 * 1024 * 1024;

/**
 * The live set of upstreams: from config, from the store (kept in step with `palisade
 * upstreams add/remove` while running), or found by probing local ports. Health checks
 * refresh each upstream's model list; requests are routed by model name.
 */
export function createUpstreamRegistry(options: RegistryOptions) {
  const { store, logger } = options;
  const box = upstreamKeyBox(options.masterKey);
  const connectLookup = options.connectLookup ?? guardedLookup();
  const probePorts = options.probePorts ?? LOCAL_PORTS;
  const upstreams = new Map<string, Upstream>();
  let storeVersion = -1;
  let timer: NodeJS.Timeout | undefined;

  function makeUpstream(
    name: string,
    url: URL,
    source: UpstreamSource,
    apiKey: string | undefined,
  ): Upstream {
    const { origin, basePath } = splitUpstreamUrl(url);
    return {
      name,
      url: url.href.replace(/\/$/, ''),
      basePath,
      source,
      pool: new Pool(origin, {
        connect: { lookup: connectLookup, timeout: 5_000 },
        keepAliveTimeout: 10_000,
      }),
      apiKey,
      healthy: false,
      checkedAt: null,
      lastError: null,
      models: [],
      modelIds: new Set(),
    };
  }

  async function install(name: string, rawUrl: string, source: UpstreamSource, apiKey?: string) {
    const url = await assertUpstreamAllowed(rawUrl, options.lookup);
    const upstream = makeUpstream(name, url, source, apiKey);
    upstreams.set(name, upstream);
    return upstream;
  }

  function drop(name: string) {
    const upstream = upstreams.get(name);
    if (!upstream) return;
    upstreams.delete(name);
    void upstream.pool.close().catch(() => undefined);
  }

  /** Brings stored upstreams in line with the database. */
  /**
   * Brings stored upstreams into service (or out of it). Skipped while the database is
   * unchanged since the last sync; `force` is for this process's own writes, which SQLite's
   * data_version does not count.
   */
  async function syncStore(options: { force?: boolean } = {}): Promise<void> {
    const version = store.dataVersion();
    if (version === storeVersion && options.force !== true) return;
    storeVersion = version;
    const rows = await listStoredUpstreams(store);
    const names = new Set(rows.map((r) => r.name));
    for (const upstream of [...upstreams.values()]) {
      if (upstream.source === 'store' && !names.has(upstream.name)) {
        drop(upstream.name);
        logger.info({ upstream: upstream.name }, 'upstream removed');
      }
    }
    for (const row of rows) {
      const current = upstreams.get(row.name);
      if (current && (current.source === 'config' || current.source === 'local')) {
        logger.warn(
          { upstream: row.name },
          current.source === 'local'
            ? 'stored upstream shadowed by the embedded models, which have its name'
            : 'stored upstream shadowed by a configured one of the same name',
        );
        continue;
      }
      if (current && current.url === row.url && current.source === 'store') continue;
      if (current) drop(row.name);
      try {
        const upstream = await install(row.name, row.url, 'store', upstreamApiKey(row, box));
        logger.info({ upstream: row.name, url: upstream.url }, 'upstream added');
        void check(upstream);
      } catch (error) {
        logger.error(
          { upstream: row.name, err: (error as Error).message },
          'stored upstream refused',
        );
      }
    }
  }

  async function fetchModels(upstream: Upstream): Promise<ModelEntry[]> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (upstream.apiKey) headers.authorization = `Bearer ${upstream.apiKey}`;
    const response = await upstream.pool.request({
      method: 'GET',
      path: `${upstream.basePath}/v1/models`,
      headers,
      headersTimeout: HEALTH_TIMEOUT_MS,
      bodyTimeout: HEALTH_TIMEOUT_MS,
    });
    let size = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length;
      if (size > MODELS_BODY_LIMIT) {
        response.body.destroy();
        throw new Error('model list larger than 4 MB');
      }
      chunks.push(chunk as Buffer);
    }
    if (response.statusCode !== 200)
      throw new Error(`GET /v1/models answered ${response.statusCode}`);
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data?: unknown };
    if (!Array.isArray(parsed.data)) throw new Error('GET /v1/models did not return a model list');
    return parsed.data
      .filter((m): m is { id: string } => typeof (m as { id?: unknown })?.id === 'string')
      .map((m) => {
        const entry = m as { id: string; created?: unknown; owned_by?: unknown };
        return {
          id: entry.id,
          object: 'model' as const,
          created: typeof entry.created === 'number' ? entry.created : 0,
          owned_by: typeof entry.owned_by === 'string' ? entry.owned_by : upstream.name,
        };
      });
  }

  async function check(upstream: Upstream): Promise<void> {
    try {
      const models = await fetchModels(upstream);
      if (!upstream.healthy)
        logger.info({ upstream: upstream.name, models: models.length }, 'upstream healthy');
      upstream.models = models;
      upstream.modelIds = new Set(models.map((m) => m.id));
      upstream.healthy = true;
      upstream.lastError = null;
    } catch (error) {
      const message = (error as Error).message;
      if (upstream.healthy || upstream.checkedAt === null) {
        logger.warn({ upstream: upstream.name, err: message }, 'upstream unhealthy');
      }
      upstream.healthy = false;
      upstream.lastError = message;
    }
    upstream.checkedAt = new Date();
    options.onHealth?.(upstream);
  }

  let localShadowed = false;
  /** Brings the embedded model server into service while it has models, out when it has none. */
  async function syncLocal(): Promise<void> {
    const local = options.local;
    if (!local) return;
    const hasModels = await local.hasModels();
    const current = upstreams.get(local.name);
    if (hasModels && current === undefined) {
      const upstream = await install(local.name, local.url, 'local', local.apiKey);
      logger.info({ upstream: local.name }, 'embedded models in service');
      await check(upstream);
    } else if (hasModels && current !== undefined && current.source !== 'local' && !localShadowed) {
      localShadowed = true;
      logger.warn(
        { upstream: local.name },
        `embedded models are not served: another upstream is named "${local.name}"; rename it`,
      );
    } else if (!hasModels && current?.source === 'local') {
      drop(local.name);
      logger.info({ upstream: local.name }, 'no embedded model left: upstream removed');
    }
  }

  async function checkAll(): Promise<void> {
    await syncStore().catch((error: Error) =>
      logger.error({ err: error.message }, 'upstream sync failed'),
    );
    await syncLocal().catch((error: Error) =>
      logger.error({ err: error.message }, 'embedded model sync failed'),
    );
    await Promise.all([...upstreams.values()].map(check));
  }

  /** Looks for model servers on their usual local ports; adds what answers /v1/models. */
  async function probeLocal(): Promise<Upstream[]> {
    const found: Upstream[] = [];
    await Promise.all(
      probePorts.map(async ({ name, port, product }) => {
        if (upstreams.has(name)) return;
        const upstream = makeUpstream(
          name,
          new URL(`http://127.0.0.1:${port}`),
          'probe',
          undefined,
        );
        try {
          upstream.models = await fetchModels(upstream);
          upstream.modelIds = new Set(upstream.models.map((m) => m.id));
          upstream.healthy = true;
          upstream.checkedAt = new Date();
          upstreams.set(name, upstream);
          found.push(upstream);
          logger.info(
            { upstream: name, url: upstream.url, models: upstream.models.length },
            `found ${product}`,
          );
        } catch {
          void upstream.pool.close().catch(() => undefined);
        }
      }),
    );
    return found;
  }

  return {
    /** Installs configured and stored upstreams. A refused configured upstream throws. */
    async start(probe: boolean): Promise<void> {
      const local = options.local;
      if (local && (await local.hasModels())) {
        await install(local.name, local.url, 'local', local.apiKey);
      }
      for (const spec of options.configured) {
        if (upstreams.has(spec.name)) {
          throw new ConfigError(
            `upstream name "${spec.name}" is taken by the embedded models (--model, PALISADE_HOME/models): pick another name`,
          );
        }
        await install(spec.name, spec.url, 'config');
      }
      await syncStore();
      // The embedded models do not count: the usual local servers are looked for beside them.
      if ([...upstreams.values()].every((u) => u.source === 'local') && probe) {
        const found = await probeLocal();
        if (found.length === 0) {
          logger.warn(
            `no upstream configured and none found on ports ${probePorts.map((p) => `${p.port} (${p.product})`).join(', ')}; add one with: palisade upstreams add NAME URL, or let Palisade run a model: palisade models pull URL`,
          );
        }
      }
      await Promise.all([...upstreams.values()].filter((u) => u.checkedAt === null).map(check));
      timer = setInterval(() => void checkAll(), options.healthIntervalMs);
      timer.unref();
    },
    list(): Upstream[] {
      return [...upstreams.values()];
    },
    /**
     * Where a request for `model` may go, best first: healthy upstreams listing it, then
     * unhealthy ones that listed it (their health may be stale). With a single upstream,
     * every model goes there (llama.cpp answers to any model name).
     */
    candidates(model: string): Upstream[] {
      // One upstream takes every model, listed or not; no need to look further.
      if (upstreams.size === 1) return [upstreams.values().next().value as Upstream];
      const listing = [...upstreams.values()].filter((u) => u.modelIds.has(model));
      if (listing.length > 0) {
        return [...listing.filter((u) => u.healthy), ...listing.filter((u) => !u.healthy)];
      }
      return [];
    },
    /** True when some upstream lists `model` (the single-upstream fallback aside). */
    serves(model: string): boolean {
      for (const upstream of upstreams.values()) if (upstream.modelIds.has(model)) return true;
      return false;
    },
    /** Models of healthy upstreams, deduplicated by id (the first upstream wins). */
    models(): ModelEntry[] {
      const seen = new Map<string, ModelEntry>();
      for (const upstream of upstreams.values()) {
        if (!upstream.healthy) continue;
        for (const model of upstream.models) if (!seen.has(model.id)) seen.set(model.id, model);
      }
      return [...seen.values()];
    },
    checkAll,
    syncStore,
    async close(): Promise<void> {
      if (timer) clearInterval(timer);
      await Promise.all([...upstreams.values()].map((u) => u.pool.close().catch(() => undefined)));
      upstreams.clear();
    },
  };
}

export type UpstreamRegistry = ReturnType<typeof createUpstreamRegistry>;

import { join } from 'node:path';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LocalGpu } from '../config/index.js';
import { createCatalog, type Catalog } from './catalog.js';
import { createEngine, type Engine, type GenerationOutcome } from './engine.js';
import { startLocalServer } from './server.js';

/** The upstream name the embedded models are served under. */
export const LOCAL_UPSTREAM = 'local';

export interface LocalUpstreamOptions {
  logger: Logger;
  home: string;
  /** GGUF files named with --model / PALISADE_MODELS. */
  files: string[];
  /** Also serve PALISADE_HOME/models. */
  serveFolder: boolean;
  gpu: LocalGpu;
  threads: number;
  contextSize: number;
  parallel: number;
  queueLimit: number;
  idleUnloadMs: number;
  bodyLimit: number;
  maxTokens: number;
  /** Prometheus registry for the embedded model's own instruments. */
  metrics?: Registry;
}

export interface LocalUpstream {
  name: string;
  url: string;
  apiKey: string;
  engine: Engine;
  catalog: Catalog;
  /** Whether there is a model to serve now (the registry keeps `local` in service only then). */
  hasModels(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Starts the embedded model server: checks the named files (a bad one throws a GgufError),
 * then listens on a loopback port for the gateway. Models load on their first request.
 */
export async function startLocalUpstream(options: LocalUpstreamOptions): Promise<LocalUpstream> {
  const { logger } = options;
  const catalog = await createCatalog({
    files: options.files,
    ...(options.serveFolder ? { folder: join(options.home, 'models') } : {}),
    onInvalid: (path, error) =>
      logger.warn({ file: path, err: error.message }, 'model file in the models folder refused'),
  });
  const outcomes = options.metrics
    ? localMetrics(options.metrics, () => engine.stats())
    : undefined;
  const engine = createEngine({
    logger,
    gpu: options.gpu,
    threads: options.threads,
    contextSize: options.contextSize,
    parallel: options.parallel,
    queueLimit: options.queueLimit,
    idleUnloadMs: options.idleUnloadMs,
    ...(outcomes ? { onOutcome: outcomes } : {}),
  });
  const server = await startLocalServer({
    logger,
    engine,
    catalog,
    bodyLimit: options.bodyLimit,
    maxTokens: options.maxTokens,
  });
  const models = await catalog.list();
  logger.info(
    { upstream: LOCAL_UPSTREAM, models: models.map((m) => m.id) },
    models.length > 0
      ? `serving ${models.length} GGUF model(s) in-process`
      : 'no GGUF model to serve in-process yet (palisade models pull URL)',
  );
  return {
    name: LOCAL_UPSTREAM,
    url: server.url,
    apiKey: server.token,
    engine,
    catalog,
    hasModels: async () => (await catalog.list()).length > 0,
    async close() {
      await server.close();
      await engine.close();
    },
  };
}

function localMetrics(
  registry: Registry,
  stats: () => { loaded: number; running: number; waiting: number },
) {
  const requests = new Counter({
    name: 'palisade_local_requests_total',
    help: 'Requests the embedded model answered, by model, kind and status (completed, cancelled, failed).',
    labelNames: ['model', 'kind', 'status'] as const,
    registers: [registry],
  });
  const generated = new Counter({
    name: 'palisade_local_generated_tokens_total',
    help: 'Tokens the embedded model generated, by model.',
    labelNames: ['model'] as const,
    registers: [registry],
  });
  for (const [name, help, field] of [
    ['palisade_local_running', 'Requests the embedded model is answering now.', 'running'],
    ['palisade_local_queued', 'Requests waiting for the embedded model.', 'waiting'],
    ['palisade_local_loaded_models', 'Embedded models loaded in memory.', 'loaded'],
  ] as const) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(stats()[field]);
      },
    });
  }
  return (outcome: GenerationOutcome) => {
    requests.inc({ model: outcome.model, kind: outcome.kind, status: outcome.status });
    if (outcome.completionTokens > 0)
      generated.inc({ model: outcome.model }, outcome.completionTokens);
  };
}

export { GgufError, readGgufHeader, type GgufInfo } from './gguf.js';
export { createCatalog, modelIdOf, type Catalog, type LocalModel } from './catalog.js';
export { createEngine, ContextLengthError, type Engine } from './engine.js';
export { createRequestQueue, QueueFullError, type RequestQueue } from './queue.js';
export {
  startLocalUpstream,
  LOCAL_UPSTREAM,
  type LocalUpstream,
  type LocalUpstreamOptions,
} from './upstream.js';
export {
  assertStaysInside,
  ensureModelsDir,
  listModels,
  modelFileName,
  modelName,
  modelsDirOf,
  removeModel,
  resolveModelPath,
  ModelBusyError,
  ModelNameError,
  ModelNotFoundError,
  type ListedModel,
  type PartSidecar,
} from './models-dir.js';
export {
  hfEndpoint,
  parseSource,
  pullModel,
  shaFromEtag,
  PullError,
  type PullOptions,
  type PullProgress,
  type PullResult,
  type PullSource,
} from './pull.js';
export { createProgressPrinter, formatBytes, type ProgressOutput } from './progress.js';

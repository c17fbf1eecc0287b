export { loadConfig, ConfigError, type FlagValues } from './load.js';
export {
  SETTINGS,
  UPSTREAM_NAME,
  parseUpstreamSpec,
  type Config,
  type LogLevel,
  type UpstreamSpec,
  type LocalGpu,
} from './settings.js';
export { isLoopbackHost } from './bind.js';
export { parseDuration, parseBytes, formatDuration } from './units.js';
export { prepareHome, homeFile, writePrivateFile } from './home.js';

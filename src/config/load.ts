import { SETTINGS, type Config } from './settings.js';

/** A setting with a bad value: the message is one line meant for the terminal. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Raw values from command-line flags, keyed like Config; repeated flags arrive as arrays. */
export type FlagValues = Partial<Record<keyof Config, string | string[]>>;

/**
 * Builds the configuration: flags > environment > defaults. A bad value throws a ConfigError
 * naming the setting, where it came from, and what is allowed.
 *
 * @example
 * const config = loadConfig({ flags: { port: '9000' }, env: process.env });
 */
export function loadConfig(sources: { flags?: FlagValues; env?: NodeJS.ProcessEnv } = {}): Config {
  const flags = sources.flags ?? {};
  const env = sources.env ?? {};
  const config: Record<string, unknown> = {};

  for (const [key, setting] of Object.entries(SETTINGS)) {
    const flag = flags[key as keyof Config];
    const fromEnv = env[setting.env];
    const flagName = 'flag' in setting ? setting.flag : undefined;
    let origin: string;
    let text: string | undefined;
    if (flag !== undefined && !(Array.isArray(flag) && flag.length === 0)) {
      origin = `${flagName ?? key}`;
      text = Array.isArray(flag) ? flag.join(',') : flag;
    } else if (fromEnv !== undefined) {
      origin = setting.env;
      text = fromEnv;
    } else {
      const fallback = setting.default;
      config[key] = typeof fallback === 'function' ? (fallback as () => unknown)() : fallback;
      continue;
    }
    try {
      config[key] = (setting.parse as (t: string) => unknown)(text);
    } catch (error) {
      const shown = ['PALISADE_SECRET', 'PALISADE_SETUP_TOKEN'].includes(setting.env)
        ? '(hidden)'
        : JSON.stringify(text);
      const why = error instanceof Error ? error.message : String(error);
      const name = origin === setting.env ? origin : `${origin} (${setting.env})`;
      throw new ConfigError(`invalid ${name}: ${why}; got ${shown}`);
    }
  }
  return config as Config;
}

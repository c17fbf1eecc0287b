import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const path of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'palisade' && pkg.version) return pkg.version;
    } catch {
      // Try the next layout (source tree or built dist/).
    }
  }
  return '0.0.0';
}

export const VERSION = readVersion();

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LookupFunction } from 'node:net';
import { createApiKey, type NewApiKey } from '../../src/auth/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { Lookup } from '../../src/gateway/index.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { openStore } from '../../src/store/index.js';

export function tempHome(prefix = 'palisade-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestPalisade {
  server: RunningServer;
  url: string;
  home: string;
  /** Every log line written so far, raw. */
  logs: string[];
  announced: string[];
  createKey(input: NewApiKey): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts a real Palisade in this process on port 0 with a temporary home, capturing its
 * log. `env` holds PALISADE_* settings as a user would set them.
 */
export async function startPalisade(
  options: {
    env?: Record<string, string>;
    home?: string;
    lookup?: Lookup;
    connectLookup?: LookupFunction;
  } = {},
): Promise<TestPalisade> {
  const home = options.home ?? tempHome();
  const config = loadConfig({
    env: {
      PALISADE_HOME: home,
      PALISADE_PORT: '0',
      PALISADE_PROBE_LOCAL: 'false',
      PALISADE_LOG_LEVEL: 'info',
      PALISADE_SHUTDOWN_GRACE: '2s',
      ...options.env,
    },
  });
  const logs: string[] = [];
  const announced: string[] = [];
  const server = await startServer(config, {
    logStream: { write: (line: string) => void logs.push(line) },
    announce: (text) => void announced.push(text),
    ...(options.lookup ? { lookup: options.lookup } : {}),
    ...(options.connectLookup ? { connectLookup: options.connectLookup } : {}),
  });
  const url = server.url.replace('0.0.0.0', '127.0.0.1').replace('[::]', '[::1]');
  return {
    server,
    url,
    home,
    logs,
    announced,
    async createKey(input) {
      // Through a connection of its own, as `palisade keys create` does beside a live server.
      const cli = await openStore(home);
      try {
        return (await createApiKey(cli, input)).key;
      } finally {
        await cli.close();
      }
    },
    close: () => server.close(),
  };
}

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'index.ts');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `palisade ...` from source (through tsx) as its own process. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, options.env);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin?.end(options.input ?? '');
  });
}

export function spawnCli(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    env: { ...process.env, PALISADE_PROBE_LOCAL: 'false', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Waits until `text` appears in a child's output (or the child exits, or time runs out). */
export function waitForOutput(
  child: ChildProcess,
  pattern: RegExp,
  timeoutMs = 20_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${pattern}; saw:\n${seen}`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      seen += d.toString();
      const match = pattern.exec(seen);
      if (match) {
        clearTimeout(timer);
        resolve(match[0]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process exited (${code}) before ${pattern}; saw:\n${seen}`));
    });
  });
}

/** Parses captured pino lines. */
export function logRecords(logs: string[]): Array<Record<string, unknown>> {
  return logs.flatMap((chunk) =>
    chunk
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>),
  );
}

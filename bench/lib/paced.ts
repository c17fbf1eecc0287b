/**
 * Latency at a steady, moderate load: wrk with bench/paced.lua, microsecond histogram.
 * autocannon cannot do this: it reports whole milliseconds and sends as fast as it can.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chatRoute, type Route, type Target } from './targets.js';

const run = promisify(execFile);

export interface PacedSettings {
  seconds: number;
  /** Requests per second across all connections. */
  rate: number;
  connections: number;
}

export interface PacedRun {
  rps: number;
  errors: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
}

interface WrkReport {
  requests: number;
  duration_us: number;
  errors: Record<string, number>;
  latency_us: { p50: number; p90: number; p99: number; p999: number };
}

/** The `wrk` version line, or undefined when wrk is not installed. */
export function wrkVersion(): string | undefined {
  const result = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (result.error !== undefined) return undefined;
  const text = `${result.stdout}${result.stderr}`;
  return /wrk \S+/.exec(text)?.[0] ?? 'wrk';
}

export const WRK_MISSING =
  'wrk is not installed; paced latency needs it. On Debian or Ubuntu: sudo apt-get install -y wrk';

export async function measurePaced(
  ctx: { root: string },
  target: Target,
  settings: PacedSettings,
  route: Route = chatRoute(target),
): Promise<PacedRun> {
  // Each connection pauses a random 0..2x this between requests (see paced.lua).
  const pauseMs = Math.round((settings.connections * 1000) / settings.rate);
  const headers = Object.entries(route.headers).map(([name, value]) => `${name}: ${value}`);
  const args = [
    '-t1',
    `-c${settings.connections}`,
    `-d${settings.seconds}s`,
    '--latency',
    '-s',
    'bench/paced.lua',
    `${target.origin}${route.path}`,
    '--',
    String(pauseMs),
    route.body,
    ...headers,
  ];
  const { stdout } = await run('wrk', args, {
    cwd: ctx.root,
    timeout: (settings.seconds + 30) * 1000,
  });
  const line = stdout.split('\n').find((l) => l.startsWith('PACED_JSON '));
  if (line === undefined) throw new Error(`wrk printed no result:\n${stdout.slice(-500)}`);
  const report = JSON.parse(line.slice('PACED_JSON '.length)) as WrkReport;
  return {
    rps: report.requests / (report.duration_us / 1e6),
    errors: Object.values(report.errors).reduce((sum, n) => sum + n, 0),
    p50Us: report.latency_us.p50,
    p90Us: report.latency_us.p90,
    p99Us: report.latency_us.p99,
    p999Us: report.latency_us.p999,
  };
}

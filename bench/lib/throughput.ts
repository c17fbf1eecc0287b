/** Maximum throughput: autocannon, 50 connections, non-streaming requests (chat by default). */
import autocannon from 'autocannon';
import { readCpuSeconds } from './processes.js';
import { chatRoute, routeHeaders, type Route, type Target } from './targets.js';

export const THROUGHPUT_CONNECTIONS = 50;

export interface ThroughputRun {
  /** Successful (2xx) responses per second. */
  rps: number;
  non2xx: number;
  errors: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** CPU time the target process spent per successful request, in microseconds. */
  cpuUsPerRequest: number;
}

export async function measureThroughput(
  target: Target,
  seconds: number,
  route: Route = chatRoute(target),
): Promise<ThroughputRun> {
  const cpuBefore = readCpuSeconds(target.pid);
  const result = await autocannon({
    url: `${target.origin}${route.path}`,
    method: 'POST',
    connections: THROUGHPUT_CONNECTIONS,
    duration: seconds,
    headers: routeHeaders(route),
    body: route.body,
    timeout: 10,
  });
  const cpuSeconds = readCpuSeconds(target.pid) - cpuBefore;
  return {
    rps: result['2xx'] / result.duration,
    cpuUsPerRequest: (cpuSeconds * 1e6) / Math.max(1, result['2xx']),
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
  };
}

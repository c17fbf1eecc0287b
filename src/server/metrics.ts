import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Palisade's Prometheus instruments, on a registry of their own (no global state, so
 * several servers in one test process do not collide).
 */
export function createMetrics() {
  const registry = new Registry();
  const requests = new Counter({
    name: 'palisade_http_requests_total',
    help: 'HTTP requests by route and status.',
    labelNames: ['route', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'palisade_http_request_duration_seconds',
    help: 'Time to the end of the response, by route (streams included).',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
    registers: [registry],
  });
  const tokens = new Counter({
    name: 'palisade_tokens_total',
    help: 'Tokens reported by upstreams in usage, by kind (prompt or completion).',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'palisade_rate_limited_total',
    help: 'Requests refused with 429, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'palisade_auth_failures_total',
    help: 'Requests refused for a missing or bad API key, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const activeStreams = new Gauge({
    name: 'palisade_active_streams',
    help: 'Streaming responses in progress.',
    registers: [registry],
  });
  const upstreamUp = new Gauge({
    name: 'palisade_upstream_up',
    help: '1 when the upstream answered its last health check.',
    labelNames: ['upstream'] as const,
    registers: [registry],
  });
  // Resolving labels costs more than the count itself; each (route, status) child is kept.
  const children = new Map<string, { count: () => void; time: (seconds: number) => void }>();
  function observeRequest(route: string, status: number, seconds: number): void {
    const key = `${status} ${route}`;
    let child = children.get(key);
    if (child === undefined) {
      const counter = requests.labels(route, String(status));
      const histogram = latency.labels(route);
      child = { count: () => counter.inc(), time: (s) => histogram.observe(s) };
      if (children.size < 1000) children.set(key, child);
    }
    child.count();
    child.time(seconds);
  }

  return {
    registry,
    requests,
    latency,
    tokens,
    rateLimited,
    authFailures,
    activeStreams,
    upstreamUp,
    observeRequest,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Streaming timings: from sending the request to the first body bytes (time to first chunk)
 * and to the end of the stream (total stream time).
 */
import { Pool } from 'undici';
import { percentile } from './stats.js';
import { chatRoute, routeHeaders, type Route, type Target } from './targets.js';

export interface TtfbSettings {
  requests: number;
  concurrency: number;
  warmup: number;
}

export interface TtfbRun {
  count: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  /** Whole stream, from sending to the last byte. */
  totalP50Ms: number;
  totalP99Ms: number;
}

/** Raw timings of the streams that completed, in milliseconds. */
export interface StreamSamples {
  firstMs: number[];
  totalMs: number[];
  errors: number;
}

async function timeStream(pool: Pool, route: Route): Promise<{ firstMs: number; totalMs: number }> {
  const start = process.hrtime.bigint();
  const res = await pool.request({
    path: route.path,
    method: 'POST',
    headers: routeHeaders(route),
    body: route.streamBody,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  let first: bigint | undefined;
  let tail = '';
  // Read to the end so the connection is reused, as a real client would.
  for await (const chunk of res.body) {
    first ??= process.hrtime.bigint();
    tail = (tail + (chunk as Buffer).toString('latin1')).slice(-200);
  }
  const end = process.hrtime.bigint();
  if (res.statusCode !== 200 || first === undefined) {
    throw new Error(`status ${res.statusCode}`);
  }
  if (!tail.includes(route.streamEnd)) throw new Error('stream ended early');
  return { firstMs: Number(first - start) / 1e6, totalMs: Number(end - start) / 1e6 };
}

/** Runs `total` requests, `concurrency` at a time; returns the timings that succeeded. */
async function runBatch(
  pool: Pool,
  route: Route,
  total: number,
  concurrency: number,
): Promise<StreamSamples> {
  const samples: StreamSamples = { firstMs: [], totalMs: [], errors: 0 };
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < total) {
      started++;
      await timeStream(pool, route).then(
        ({ firstMs, totalMs }) => {
          samples.firstMs.push(firstMs);
          samples.totalMs.push(totalMs);
        },
        () => samples.errors++,
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return samples;
}

/**
 * `settings.requests` streamed requests on `route`, `settings.concurrency` at a time over
 * one pool, after `settings.warmup` unmeasured ones.
 */
export async function collectStreams(
  target: Target,
  route: Route,
  settings: TtfbSettings,
): Promise<StreamSamples> {
  const pool = new Pool(target.origin, { connections: settings.concurrency });
  try {
    await runBatch(pool, route, settings.warmup, settings.concurrency);
    return await runBatch(pool, route, settings.requests, settings.concurrency);
  } finally {
    await pool.destroy();
  }
}

/** Percentiles of one or more sample sets, pooled. */
export function summarizeStreams(sets: StreamSamples[]): TtfbRun {
  const firstMs = sets.flatMap((s) => s.firstMs);
  const totalMs = sets.flatMap((s) => s.totalMs);
  return {
    count: firstMs.length,
    errors: sets.reduce((sum, s) => sum + s.errors, 0),
    p50Ms: percentile(firstMs, 50),
    p99Ms: percentile(firstMs, 99),
    totalP50Ms: percentile(totalMs, 50),
    totalP99Ms: percentile(totalMs, 99),
  };
}

/** Streaming chat completions on `target`: time to first chunk and total stream time. */
export async function measureTtfb(target: Target, settings: TtfbSettings): Promise<TtfbRun> {
  return summarizeStreams([await collectStreams(target, chatRoute(target), settings)]);
}

/** Streaming time to first chunk: from sending the request to the first body bytes. */
import { Pool } from 'undici';
import { percentile } from './stats.js';
import { CHAT_PATH, STREAM_BODY, requestHeaders, type Target } from './targets.js';

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
}

async function timeFirstChunk(pool: Pool, target: Target): Promise<number> {
  const start = process.hrtime.bigint();
  const res = await pool.request({
    path: CHAT_PATH,
    method: 'POST',
    headers: requestHeaders(target),
    body: STREAM_BODY,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  let first: bigint | undefined;
  // Read to the end so the connection is reused, as a real client would.
  for await (const _chunk of res.body) first ??= process.hrtime.bigint();
  if (res.statusCode !== 200 || first === undefined) {
    throw new Error(`status ${res.statusCode}`);
  }
  return Number(first - start) / 1e6;
}

/** Runs `total` requests, `concurrency` at a time; returns the timings that succeeded. */
async function runBatch(
  pool: Pool,
  target: Target,
  total: number,
  concurrency: number,
): Promise<{ samples: number[]; errors: number }> {
  const samples: number[] = [];
  let errors = 0;
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < total) {
      started++;
      await timeFirstChunk(pool, target).then(
        (ms) => samples.push(ms),
        () => errors++,
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { samples, errors };
}

export async function measureTtfb(target: Target, settings: TtfbSettings): Promise<TtfbRun> {
  const pool = new Pool(target.origin, { connections: settings.concurrency });
  try {
    await runBatch(pool, target, settings.warmup, settings.concurrency);
    const { samples, errors } = await runBatch(
      pool,
      target,
      settings.requests,
      settings.concurrency,
    );
    return {
      count: samples.length,
      errors,
      p50Ms: percentile(samples, 50),
      p99Ms: percentile(samples, 99),
    };
  } finally {
    await pool.destroy();
  }
}

/** Memory while holding many open streams: the target's VmRSS with N endless streams open. */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { readRssBytes } from './processes.js';
import { CHAT_PATH, ENDLESS_BODY, requestHeaders, type Target } from './targets.js';

export interface RssSettings {
  streams: number;
  /** How long all streams may take to deliver their first chunk. */
  timeoutMs: number;
}

export interface RssRun {
  streams: number;
  /** Streams that delivered a first chunk before the deadline. */
  open: number;
  idleMb: number;
  /** Highest RSS seen over one second once the streams were open. */
  heldMb: number;
  firstError: string | undefined;
}

const MB = 1024 * 1024;

interface OpenStream {
  /** Resolves with undefined at the first chunk, or with the reason it failed. */
  first: Promise<string | undefined>;
  /** Settles when the stream is over (aborted, failed or, unexpectedly, ended). */
  done: Promise<void>;
}

function openStream(pool: Pool, target: Target, signal: AbortSignal): OpenStream {
  let settleFirst: (problem: string | undefined) => void = () => {};
  const first = new Promise<string | undefined>((resolve) => (settleFirst = resolve));
  const done = (async () => {
    try {
      const res = await pool.request({
        path: CHAT_PATH,
        method: 'POST',
        headers: requestHeaders(target),
        body: ENDLESS_BODY,
        signal,
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      if (res.statusCode !== 200) {
        settleFirst(`status ${res.statusCode}: ${(await res.body.text()).slice(0, 200)}`);
        return;
      }
      // Keep reading, as a real client does, so nothing piles up in the target's buffers.
      for await (const _chunk of res.body) settleFirst(undefined);
      settleFirst('stream ended');
    } catch (error) {
      settleFirst((error as Error).message);
    }
  })();
  return { first, done };
}

async function peakRss(pid: number, samples: number, intervalMs: number): Promise<number> {
  let peak = 0;
  for (let i = 0; i < samples; i++) {
    peak = Math.max(peak, readRssBytes(pid));
    await sleep(intervalMs);
  }
  return peak;
}

export async function measureStreamsRss(target: Target, settings: RssSettings): Promise<RssRun> {
  const idle = readRssBytes(target.pid);
  const pool = new Pool(target.origin, { connections: settings.streams, pipelining: 1 });
  const abort = new AbortController();
  // Every stream listens on the one signal that ends them all.
  setMaxListeners(settings.streams + 10, abort.signal);
  const streams = Array.from({ length: settings.streams }, () =>
    openStream(pool, target, abort.signal),
  );
  try {
    const firsts = await Promise.race([
      Promise.all(streams.map((s) => s.first)),
      sleep(settings.timeoutMs, undefined, { ref: false }),
    ]);
    const problems = firsts ?? ['timed out waiting for first chunks'];
    const held = await peakRss(target.pid, 5, 200);
    return {
      streams: settings.streams,
      open: firsts === undefined ? await countOpen(streams) : problems.filter((p) => !p).length,
      idleMb: idle / MB,
      heldMb: held / MB,
      firstError: problems.find((p) => p !== undefined),
    };
  } finally {
    abort.abort();
    await Promise.race([
      Promise.all(streams.map((s) => s.done)),
      sleep(10_000, undefined, { ref: false }),
    ]);
    await pool.destroy();
  }
}

/** Streams whose first chunk has arrived by now. */
async function countOpen(streams: OpenStream[]): Promise<number> {
  const now = Symbol('pending');
  const states = await Promise.all(
    streams.map((s) => Promise.race([s.first, Promise.resolve(now)])),
  );
  return states.filter((state) => state === undefined).length;
}

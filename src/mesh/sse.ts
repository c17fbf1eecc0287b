import { request } from 'undici';
import type { EventView } from './broker.js';
import { brokerError, describeNoBroker, MeshUnavailableError } from './client.js';
import {
  createSseParser as createSharedParser,
  SseLineTooLong,
  type SseFrame,
} from '../server/sse-parser.js';
import { readMeshEndpoint } from './token.js';

/** An SSE line longer than this is not the broker talking (its frames hold at most 64 KB). */
const MAX_SSE_LINE = 4 * 1024 * 1024;

export type { SseFrame } from '../server/sse-parser.js';

/** The mesh's SSE parser: the shared one, with the broker's own line limit. */
export function createSseParser(
  onFrame: (frame: SseFrame) => void,
  onRetry: (ms: number) => void = () => {},
): { push(chunk: string): void } {
  const parser = createSharedParser({ onFrame, onRetry, maxLine: MAX_SSE_LINE });
  return {
    push(chunk) {
      try {
        parser.push(chunk);
      } catch (error) {
        if (!(error instanceof SseLineTooLong)) throw error;
        throw new Error('the event stream sent a line over 4 MB; it is not the mesh broker');
      }
    },
  };
}

/**
 * Reads one connection of `GET /mesh/events/stream` (the operator's view, or `peerId`'s)
 * until it ends; events go to `onEvent`. Throws what the broker answered when it refuses.
 */
export async function streamEventsOnce(
  home: string,
  since: number,
  signal: AbortSignal,
  onOpen: () => void,
  onEvent: (event: EventView) => void,
  onRetry: (ms: number) => void,
): Promise<void> {
  const { url, token } = readMeshEndpoint(home);
  if (url === undefined || token === undefined) {
    throw new MeshUnavailableError(describeNoBroker(home));
  }
  const response = await request(`${url}/mesh/events/stream?since=${since}`, {
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'text/event-stream',
      'last-event-id': String(since),
    },
    signal,
    headersTimeout: 10_000,
    // The broker sends a keep-alive comment every 15 s; silence for longer is a dead link.
    bodyTimeout: 60_000,
  });
  if (response.statusCode !== 200) {
    throw brokerError(response.statusCode, await response.body.text());
  }
  onOpen();
  response.body.setEncoding('utf8');
  const parser = createSseParser((frame) => {
    let event: unknown;
    try {
      event = JSON.parse(frame.data);
    } catch {
      return;
    }
    if (
      typeof event === 'object' &&
      event !== null &&
      typeof (event as EventView).seq === 'number'
    ) {
      onEvent(event as EventView);
    }
  }, onRetry);
  for await (const chunk of response.body) parser.push(chunk as string);
}

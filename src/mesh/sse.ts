import { request } from 'undici';
import type { EventView } from './broker.js';
import { brokerError, describeNoBroker, MeshUnavailableError } from './client.js';
import { readMeshEndpoint } from './token.js';

/** An SSE line longer than this is not the broker talking (its frames hold at most 64 KB). */
const MAX_SSE_LINE = 4 * 1024 * 1024;

export interface SseFrame {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * A small parser for `text/event-stream`: feed it text as it arrives (any chunking, `\n`,
 * `\r\n` or `\r` line ends); it calls `onFrame` for each event and `onRetry` for `retry:`.
 */
export function createSseParser(
  onFrame: (frame: SseFrame) => void,
  onRetry: (ms: number) => void = () => {},
): { push(chunk: string): void } {
  let buffer = '';
  let data: string[] = [];
  let event = '';
  let id: string | undefined;

  function line(text: string): void {
    if (text === '') {
      if (data.length > 0) onFrame({ id, event: event || 'message', data: data.join('\n') });
      data = [];
      event = '';
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) onRetry(Number(value));
  }

  return {
    push(chunk) {
      buffer += chunk;
      let start = 0;
      for (let i = 0; i < buffer.length; i += 1) {
        const c = buffer[i];
        if (c !== '\n' && c !== '\r') continue;
        // A \r at the very end may be the first half of a \r\n split across chunks.
        if (c === '\r' && i + 1 === buffer.length) break;
        line(buffer.slice(start, i));
        if (c === '\r' && buffer[i + 1] === '\n') i += 1;
        start = i + 1;
      }
      buffer = buffer.slice(start);
      if (buffer.length > MAX_SSE_LINE) {
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

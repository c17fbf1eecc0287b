/** One event of a `text/event-stream`. */
export interface SseFrame {
  id: string | undefined;
  event: string;
  data: string;
}

/** A line longer than the parser's limit: not the server the reader expected. */
export class SseLineTooLong extends Error {
  override name = 'SseLineTooLong';
}

/**
 * A parser for `text/event-stream`, shared by every reader of one (the mesh CLI, the chat's
 * upstream streams). Feed it text as it arrives, in any chunking, with `\n`, `\r\n` or `\r`
 * line ends; it calls `onFrame` for each event and `onRetry` for `retry:`. Each character is
 * looked at once, so a line sent a byte at a time costs no more than one sent whole, and a
 * line past `maxLine` characters throws `SseLineTooLong`.
 *
 * @example
 * const parser = createSseParser({ maxLine: 1 << 20, onFrame: (frame) => handle(frame.data) });
 * parser.push(text);
 * parser.end(); // a last event without its blank line
 */
export function createSseParser(options: {
  onFrame: (frame: SseFrame) => void;
  onRetry?: (ms: number) => void;
  maxLine: number;
}): { push(chunk: string): void; end(): void } {
  const { onFrame, maxLine } = options;
  let buffer = '';
  /** How far `buffer` has been looked at for line ends. */
  let scanned = 0;
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
    else if (field === 'retry' && /^\d+$/.test(value)) options.onRetry?.(Number(value));
  }

  return {
    push(chunk) {
      buffer += chunk;
      let start = 0;
      let i = scanned;
      for (; i < buffer.length; i += 1) {
        const c = buffer[i];
        if (c !== '\n' && c !== '\r') continue;
        // A \r at the very end may be the first half of a \r\n split across chunks.
        if (c === '\r' && i + 1 === buffer.length) break;
        line(buffer.slice(start, i));
        if (c === '\r' && buffer[i + 1] === '\n') i += 1;
        start = i + 1;
      }
      buffer = buffer.slice(start);
      scanned = i - start;
      if (buffer.length > maxLine) {
        throw new SseLineTooLong(`the event stream sent a line longer than ${maxLine} characters`);
      }
    },
    end() {
      const last = buffer.endsWith('\r') ? buffer.slice(0, -1) : buffer;
      buffer = '';
      scanned = 0;
      if (last !== '') line(last);
      line('');
    },
  };
}

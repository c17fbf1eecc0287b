import { connect } from 'node:net';
import { request } from 'undici';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  json: () => Record<string, unknown>;
}

/**
 * Sends bytes exactly as given over a fresh TCP connection and reads the response, so
 * tests can send what fetch would never send (lying Content-Length, endless chunks, bad
 * Host). Resolves once the server answers, even if it answers before the body is sent.
 */
export function rawRequest(
  url: string,
  head: string,
  body: AsyncIterable<string | Buffer> | string | Buffer = '',
  timeoutMs = 10_000,
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) });
    let received = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(() => finish(new Error('raw request timed out')), timeoutMs);
    function finish(error?: Error) {
      if (settled) return;
      const text = received.toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      if (error && end === -1) {
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(error);
        return;
      }
      if (end === -1) return;
      const [statusLine, ...headerLines] = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      let bodyText = text.slice(end + 4);
      const length = headers['content-length'];
      if (length !== undefined && Buffer.byteLength(bodyText) < Number(length) && !error) return;
      if (headers['transfer-encoding'] === 'chunked') {
        if (!bodyText.includes('\r\n0\r\n\r\n') && !error) return;
        bodyText = decodeChunked(bodyText);
      }
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const status = Number(statusLine?.split(' ')[1]);
      resolve({
        status,
        headers,
        body: bodyText,
        json: () => JSON.parse(bodyText) as Record<string, unknown>,
      });
    }
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      finish();
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error('connection closed')));
    socket.on('connect', async () => {
      socket.write(head);
      try {
        if (typeof body === 'string' || Buffer.isBuffer(body)) socket.write(body);
        else for await (const part of body) if (!settled && !socket.destroyed) socket.write(part);
      } catch {
        // The server may close the connection while we still send: that is the point.
      }
    });
  });
}

function decodeChunked(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n');
    const size = Number.parseInt(rest.slice(0, lineEnd), 16);
    if (!size) return out;
    out += rest.slice(lineEnd + 2, lineEnd + 2 + size);
    rest = rest.slice(lineEnd + 2 + size + 2);
  }
}

/** A request head with the usual headers filled in. */
export function head(
  method: string,
  path: string,
  headers: Record<string, string | number>,
): string {
  return (
    `${method} ${path} HTTP/1.1\r\n` +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    '\r\n'
  );
}

export interface JsonResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: <T = Record<string, unknown>>() => T;
}

/**
 * One request through undici: an object body is sent as JSON, a string or buffer as it is
 * (hostile tests send broken JSON on purpose); `token` adds `Authorization: Bearer`.
 */
export async function sendRequest(
  url: string,
  options: {
    method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';
    body?: unknown;
    headers?: Record<string, string>;
    token?: string | null;
  } = {},
): Promise<JsonResponse> {
  const headers: Record<string, string> = {};
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (typeof options.token === 'string') headers.authorization = `Bearer ${options.token}`;
  Object.assign(headers, options.headers);
  const response = await request(url, {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    headers,
    body:
      options.body === undefined
        ? undefined
        : typeof options.body === 'string' || Buffer.isBuffer(options.body)
          ? options.body
          : JSON.stringify(options.body),
  });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    headers: response.headers,
    text,
    json: <T>() => JSON.parse(text) as T,
  };
}

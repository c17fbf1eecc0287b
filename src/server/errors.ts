import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { newRequestId } from './request-id.js';

/** OpenAI's error `type`s, chosen by status. */
function typeForStatus(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

/**
 * An error meant for the client: its status, a stable machine `code` and a message that
 * names the fix. Anything else thrown is answered with a bare 500.
 */
export class HttpError extends Error {
  readonly type: string;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options: { type?: string; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.type = options.type ?? typeForStatus(status);
    this.headers = options.headers ?? {};
  }
  readonly headers: Record<string, string>;
}

/** The wire shape of an error, per face. The gateway speaks OpenAI's. */
export type ErrorBody = (error: HttpError, requestId: string) => unknown;

export const openAiErrorBody: ErrorBody = (error, requestId) => ({
  error: { message: error.message, type: error.type, code: error.code },
  request_id: requestId,
});

/** Maps what Fastify itself throws (body parsing, limits) to errors a client can act on. */
export function toHttpError(
  error: FastifyError | Error,
  bodyLimit: number,
  limitName = 'PALISADE_BODY_LIMIT',
): HttpError {
  if (error instanceof HttpError) return error;
  const code = (error as FastifyError).code;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpError(
        413,
        'body_too_large',
        `request body is larger than the limit of ${bodyLimit} bytes (${limitName})`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpError(
        415,
        'unsupported_media_type',
        'send the body as Content-Type: application/json',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpError(400, 'invalid_json', 'the request body is empty; send a JSON object');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpError(
        400,
        'invalid_content_length',
        'Content-Length does not match the body sent',
      );
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new HttpError(400, 'invalid_json', 'the request body is not valid JSON');
  }
  if (error instanceof SyntaxError || (error as FastifyError).statusCode === 400) {
    const message = /__proto__|constructor/.test(error.message)
      ? 'the request body holds a forbidden key (__proto__ or constructor.prototype)'
      : 'the request body is not valid JSON';
    return new HttpError(400, 'invalid_json', message);
  }
  if (error instanceof RangeError) {
    return new HttpError(400, 'invalid_request', 'the request JSON is nested too deeply');
  }
  const status = (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return new HttpError(status, 'bad_request', 'the request could not be read');
  }
  return new HttpError(
    500,
    'internal_error',
    'internal error; the request id is in the server log',
  );
}

/**
 * A Fastify error handler answering in one face's wire format. Unexpected errors are logged
 * with their request id; the client only learns that id.
 *
 * @example
 * app.setErrorHandler(createErrorHandler(config.bodyLimit, () => anthropicErrorBody));
 */
export function createErrorHandler(
  bodyLimit: number,
  bodyFor: (request: FastifyRequest) => ErrorBody = () => openAiErrorBody,
  /** What the client is told sets `bodyLimit`. */
  limitName?: string,
) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const httpError = toHttpError(error as FastifyError, bodyLimit, limitName);
    if (httpError.status >= 500 && !(error instanceof HttpError)) {
      request.log.error({ err: error }, 'unhandled error');
    }
    if (reply.sent || reply.raw.headersSent) return;
    return sendError(request, reply, httpError, bodyFor(request));
  };
}

/** Sends an error in the face's wire format with its request id. */
export function sendError(
  request: FastifyRequest,
  reply: FastifyReply,
  error: HttpError,
  body: ErrorBody = openAiErrorBody,
): FastifyReply {
  return reply
    .code(error.status)
    .headers(error.headers)
    .header('content-type', 'application/json; charset=utf-8')
    .send(body(error, request.id));
}

const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [
    431,
    'headers_too_large',
    'request headers are larger than PALISADE_MAX_HEADER_SIZE',
  ],
  ERR_HTTP_REQUEST_TIMEOUT: [
    408,
    'request_timeout',
    'the request took too long to arrive (PALISADE_REQUEST_TIMEOUT)',
  ],
  ERR_HTTP_HEADERS_TIMEOUT: [
    408,
    'request_timeout',
    'the request headers took too long to arrive (PALISADE_HEADERS_TIMEOUT)',
  ],
};

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

/**
 * Answers what Node's HTTP parser refuses before a request exists (malformed HTTP, headers
 * too large, slow clients) in the same JSON shape as every other error, then closes.
 */
export function answerClientError(
  error: Error & { code?: string },
  socket: Socket,
  logger: Logger,
): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code, message] = CLIENT_ERRORS[error.code ?? ''] ?? [
    400,
    'bad_request',
    'malformed HTTP request',
  ];
  const requestId = newRequestId();
  const body = JSON.stringify(openAiErrorBody(new HttpError(status, code, message), requestId));
  logger.info(
    { request_id: requestId, status, code: error.code, ip: socket.remoteAddress },
    'client error',
  );
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Bad Request'}\r\n` +
      'content-type: application/json; charset=utf-8\r\n' +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\n` +
      'connection: close\r\n\r\n' +
      body,
  );
}

import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from '../config/index.js';

/**
 * The process logger. Nothing that could hold a secret is logged: no headers, no bodies,
 * no query strings. The redact list is a second line of defence for fields that should
 * never be passed in the first place.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: {
        paths: [
          'authorization',
          'apiKey',
          'api_key',
          'key',
          'password',
          'secret',
          'token',
          '*.authorization',
          '*.apiKey',
          '*.api_key',
          '*.password',
          '*.secret',
          '*.token',
          'req.headers',
          'headers',
          'body',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * The benchmark's upstream: the test mock in its own process, without request recording.
 * Usage: node --import tsx bench/mock-server.ts --port 0 [--chunk-delay-ms 0]
 * Prints one line `{"port":N}` once it listens.
 */
import { parseArgs } from 'node:util';
import { startMockUpstream } from '../test/support/mock-upstream.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'chunk-delay-ms': { type: 'string', default: '0' },
  },
});

const upstream = await startMockUpstream({
  record: false,
  port: Number(values.port),
  chunkDelayMs: Number(values['chunk-delay-ms']),
  // Gateways that route by listed model ids must see the streaming behaviours too.
  models: ['mock-small', 'mock-large', 'endless-stream', 'stall-stream'],
});
process.stdout.write(`${JSON.stringify({ port: upstream.port })}\n`);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void upstream.close().finally(() => process.exit(0));
  });
}

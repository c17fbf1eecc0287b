/**
 * The reference gateway: a `node:http` server relaying every request to one undici Pool with
 * no checks at all, responses and streams piped straight through. Whatever Palisade adds on
 * top (auth, limits, policy, audit, logging) is measured against this.
 * Usage: node --import tsx bench/bare-proxy.ts --port P --upstream http://127.0.0.1:M
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'host',
]);

type Headers = Record<string, string | string[] | undefined>;

function endToEnd(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * Reads the (small, JSON) request body, as any gateway must, then lets undici write the
 * upstream response straight into `res`, chunk by chunk. If the client goes away, undici
 * sees `res` close early and aborts the upstream request.
 */
async function relay(pool: Pool, req: http.IncomingMessage, res: http.ServerResponse) {
  const method = req.method ?? 'GET';
  const body = method === 'GET' || method === 'HEAD' ? null : await readBody(req);
  await pool.stream(
    { path: req.url ?? '/', method, headers: endToEnd(req.headers), body },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, endToEnd(headers));
      return res;
    },
  );
}

function fail(res: http.ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(502, { 'content-type': 'application/json' });
  res.end('{"error":{"message":"bad gateway","type":"server_error"}}');
}

const { values } = parseArgs({
  options: { port: { type: 'string', default: '0' }, upstream: { type: 'string' } },
});
if (values.upstream === undefined) throw new Error('--upstream is required');

const pool = new Pool(values.upstream, { connections: 4096, keepAliveTimeout: 60_000 });
const server = http.createServer({ keepAlive: true, noDelay: true }, (req, res) => {
  relay(pool, req, res).catch(() => fail(res));
});
server.keepAliveTimeout = 60_000;
server.listen(Number(values.port), '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    server.closeAllConnections();
    server.close();
    void pool.destroy().finally(() => process.exit(0));
  });
}

import Fastify, { LogController } from 'fastify';
import { Pool } from 'undici';
import { pino } from 'pino';
import { randomUUID } from 'node:crypto';
import { Counter, Histogram, Registry } from 'prom-client';
import { applyPolicy } from '../dist/gateway/policy.js';
const F = new Set(process.argv[2].split(','));
const pool = new Pool('http://127.0.0.1:19001');
const opts = { logger: false };
if (F.has('log')) { delete opts.logger; opts.loggerInstance = pino({ level: 'info' }, pino.destination({ dest: 1, sync: true })); opts.logController = new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }); }
if (F.has('id')) opts.genReqId = () => `req_${randomUUID().replaceAll('-', '').slice(0, 24)}`;
if (F.has('http')) { opts.http = { maxHeaderSize: 16384, headersTimeout: 10000, connectionsCheckingInterval: 1000 }; opts.requestTimeout = 60000; opts.forceCloseConnections = 'idle'; opts.return503OnClosing = false; }
const app = Fastify(opts);
const reg = new Registry();
const c = new Counter({ name: 'a', help: 'a', labelNames: ['route', 'status'], registers: [reg] });
const h = new Histogram({ name: 'b', help: 'b', labelNames: ['route'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300], registers: [reg] });
if (F.has('hooks')) {
  app.addHook('onRequest', async (request, reply) => { reply.header('x-request-id', request.id).headers({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY', 'content-security-policy': "default-src 'none'", 'cross-origin-resource-policy': 'same-origin' }); });
  app.addHook('onRequest', async (request) => { if (request.headers.origin) throw new Error('x'); });
  app.addHook('onRequest', async (request) => { if (!request.headers.host) throw new Error('x'); });
}
if (F.has('onresp')) app.addHook('onResponse', async (request, reply) => {
  if (F.has('prom')) { const route = request.routeOptions.url; c.inc({ route, status: reply.statusCode }); h.observe({ route }, reply.elapsedTime / 1000); }
  if (F.has('log')) request.log.info({ method: request.method, path: request.url.split('?', 1)[0], status: reply.statusCode, ms: reply.elapsedTime, ip: request.ip }, 'request');
});
app.post('/v1/chat/completions', async (request, reply) => {
  let body = request.body;
  if (F.has('zod')) body = applyPolicy('chat', body, { maxTokens: 8192, maxChoices: 4 });
  const controller = new AbortController();
  if (F.has('abort')) reply.raw.once('close', () => { if (!reply.raw.writableFinished) controller.abort(); });
  const r = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(F.has('abort') ? { signal: controller.signal } : {}), headersTimeout: 300000, bodyTimeout: 120000 });
  const chunks = []; for await (const c of r.body) chunks.push(c);
  return reply.code(r.statusCode).header('content-type', r.headers['content-type']).send(Buffer.concat(chunks));
});
await app.listen({ port: 19005, host: '127.0.0.1' });

import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { pino } from 'pino';
import { writeJobFixtures } from '../../test/fixtures/jobs.js';
import { createAuditLog } from '../audit/index.js';
import { openStore } from '../store/index.js';
import { createJobRunner } from './runner.js';
import { jobsRoutes } from './routes.js';

test('an event stream whose client goes away leaves no watcher behind', async () => {
  const home = writeJobFixtures();
  const store = await openStore(home);
  const runner = createJobRunner({
    home,
    store,
    audit: createAuditLog(store, home),
    logger: pino({ level: 'silent' }),
    maxJobs: 1,
    killGraceMs: 100,
    pollMs: 20,
  });
  runner.start();
  const app = Fastify();
  // Stands in for the /api scope's session: every request is an admin here.
  app.decorateRequest('user', null);
  app.addHook('onRequest', async (request) => {
    request.user = { id: 'u1', username: 'root', role: 'admin' };
  });
  await app.register(jobsRoutes, { prefix: '/jobs', runner });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address() as { port: number };
  try {
    const run = runner.submit({ template: 'sleep-long', params: {} }, { username: 'root' });
    const controller = new AbortController();
    const response = await fetch(`http://127.0.0.1:${address.port}/jobs/runs/${run.id}/events`, {
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let seen = '';
    while (!seen.includes('sleeping')) seen += (await reader.read()).value ?? '';
    assert.equal(runner.watcherCount(), 1);
    controller.abort();
    while (runner.watcherCount() > 0) await new Promise((r) => setTimeout(r, 10));
    assert.equal(runner.watcherCount(), 0);
    runner.cancel(run.id, { username: 'root' });
  } finally {
    await app.close();
    await runner.close();
    await store.close();
  }
});

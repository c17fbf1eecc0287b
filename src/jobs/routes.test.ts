import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { pino } from 'pino';
import { writeJobFixtures } from '../../test/fixtures/jobs.js';
import { createAuditLog } from '../audit/index.js';
import { createSession, createUser, revokeSession, setUserRole } from '../auth/index.js';
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

test(
  'an event stream ends at a keep-alive once its session is revoked or no longer admin',
  { timeout: 30_000 },
  async () => {
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
    const user = await createUser(
      store,
      { username: 'root', password: 'correct horse battery staple', role: 'admin' },
      { n: 1024, r: 8, p: 1 },
    );
    const sessions = [1, 2].map(
      () =>
        createSession(store, {
          userId: user.id,
          userAgent: 'test',
          ip: '127.0.0.1',
          ttlMs: 3_600_000,
        }).session,
    );
    const app = Fastify();
    // Stands in for the /api scope: the session named by a header, as the cookie would.
    app.decorateRequest('user', null);
    app.decorateRequest('sessionId', null);
    app.addHook('onRequest', async (request) => {
      request.user = { id: user.id, username: user.username, role: 'admin' };
      request.sessionId = String(request.headers['x-session']);
    });
    await app.register(jobsRoutes, { prefix: '/jobs', runner, keepAliveMs: 20 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address() as { port: number };
    const run = runner.submit({ template: 'sleep-long', params: {} }, { username: 'root' });
    /** Reads a stream until it has seen two keep-alives (the session passed its re-check). */
    async function open(session: string) {
      const response = await fetch(`http://127.0.0.1:${address.port}/jobs/runs/${run.id}/events`, {
        headers: { 'x-session': session },
      });
      assert.equal(response.status, 200);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let seen = '';
      while (seen.split(': keep-alive').length < 3) seen += (await reader.read()).value ?? '';
      return async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return seen;
          seen += value;
        }
      };
    }
    try {
      const first = await open(sessions[0]!.id);
      revokeSession(store, user.id, sessions[0]!.id);
      assert.match(await first(), /event: closed\ndata: .*session has ended/);
      const second = await open(sessions[1]!.id);
      setUserRole(store, user.id, 'user');
      assert.match(await second(), /event: closed/);
      while (runner.watcherCount() > 0) await new Promise((r) => setTimeout(r, 10));
      runner.cancel(run.id, { username: 'root' });
    } finally {
      await app.close();
      await runner.close();
      await store.close();
    }
  },
);

import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  countOtherUsers,
  findUser,
  listSessions,
  requireAdmin,
  type SessionUser,
} from '../auth/index.js';
import { HttpError } from '../server/errors.js';
import { lastEventId, openEventStream } from '../server/event-stream.js';
import { parseWith } from '../server/validate.js';
import type { Store } from '../store/index.js';
import { readLogChunk } from './log-file.js';
import { ParamsError } from './params.js';
import type { JobRunner, RunEvent } from './runner.js';
import { FINAL_STATUSES, RUN_ID, runNotFound, type JobRun } from './runs.js';
import { describeTemplate, TEMPLATE_NAME } from './templates.js';

export interface JobsRoutesOptions {
  runner: JobRunner;
  /**
   * How often an idle event stream gets a comment line, so proxies keep it open; the
   * watcher's session is checked again each time.
   */
  keepAliveMs?: number;
  /** Event streams one user may have open at once (default 16). */
  maxStreamsPerUser?: number;
}

export const MAX_STREAMS_PER_USER = 16;

/** GET .../log answers at most this much; the client asks again from the next offset. */
export const MAX_LOG_RESPONSE = 1024 * 1024;
/** One `log` event carries at most this much. */
const SSE_CHUNK = 64 * 1024;
/** Unread SSE output past this waits (read again from the file) until the client drains. */
const SSE_BACKLOG = 1024 * 1024;

const decimal = (max: number) =>
  z
    .string()
    .regex(/^\d{1,15}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(0).max(max));

const ListQuery = z
  .object({
    limit: decimal(200).pipe(z.number().min(1, 'must be from 1 to 200')).optional(),
    before: z.string().regex(RUN_ID, 'must be a run id').optional(),
  })
  .strict();

const StartBody = z
  .object({
    template: z.string().regex(TEMPLATE_NAME, 'must be a template name'),
    params: z
      .record(z.string().max(64), z.unknown())
      .refine((p) => Object.keys(p).length <= 100, 'has more than 100 parameters')
      .optional(),
  })
  .strict();

const CancelBody = z.object({}).strict().optional();
const LogQuery = z.object({ offset: decimal(Number.MAX_SAFE_INTEGER).optional() }).strict();
const EventsQuery = z.object({ offset: decimal(Number.MAX_SAFE_INTEGER).optional() }).strict();

function sendParamsError(request: FastifyRequest, reply: FastifyReply, error: ParamsError) {
  return reply
    .code(400)
    .header('content-type', 'application/json; charset=utf-8')
    .send({
      error: {
        message: error.message,
        type: 'invalid_request_error',
        code: 'invalid_params',
        request_id: request.id,
        details: error.details,
      },
      request_id: request.id,
    });
}

function runOf(runner: JobRunner, request: FastifyRequest): JobRun {
  const { id } = request.params as { id: string };
  const run = RUN_ID.test(id) ? runner.get(id) : undefined;
  if (!run) throw runNotFound(id);
  return run;
}

/**
 * Whether the user who opened a stream may still watch: their session (by its public id) is
 * live, the account enabled and still an admin. Without a session (single-user mode), the
 * account is the local one and no other account may exist.
 */
export function stillAdmin(store: Store, user: SessionUser, sessionId: string | null): boolean {
  const row = findUser(store, user.id);
  if (!row || row.disabled_at !== null || row.role !== 'admin') return false;
  if (sessionId === null) return countOtherUsers(store, user.id) === 0;
  return listSessions(store, user.id).some((session) => session.id === sessionId);
}

function frame(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The jobs API, registered inside the /api scope with the prefix `/admin/jobs`: templates,
 * runs (start, list, read, cancel), a run's log and its live event stream. Every route needs
 * a signed-in admin (401 signed out, 403 for other users).
 *
 * @example
 * api.register(jobsRoutes, { prefix: '/admin/jobs', runner });
 */
export const jobsRoutes: FastifyPluginAsync<JobsRoutesOptions> = async (app, options) => {
  const { runner } = options;
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  const maxStreams = options.maxStreamsPerUser ?? MAX_STREAMS_PER_USER;
  const streams = new Set<() => void>();
  /** Open event streams by user id. */
  const openStreams = new Map<string, number>();

  app.addHook('onRequest', async (request) => {
    requireAdmin(request);
  });
  app.addHook('preClose', async () => {
    for (const end of streams) end();
  });

  app.get('/templates', async () => {
    const set = runner.templates();
    return { templates: set.templates.map(describeTemplate), error: set.error };
  });

  app.get('/runs', async (request) => {
    const query = parseWith(ListQuery, request.query, 'query');
    return {
      runs: runner.list({
        limit: query.limit ?? 50,
        ...(query.before !== undefined && { before: query.before }),
      }),
    };
  });

  app.post('/runs', async (request, reply) => {
    const admin = requireAdmin(request);
    const body = parseWith(StartBody, request.body, 'body');
    try {
      const run = runner.submit(
        { template: body.template, params: body.params ?? {} },
        { username: admin.username },
        request,
      );
      return reply.code(201).send({ run });
    } catch (error) {
      if (error instanceof ParamsError) return sendParamsError(request, reply, error);
      throw error;
    }
  });

  app.get('/runs/:id', async (request) => ({ run: runOf(runner, request) }));

  app.post('/runs/:id/cancel', async (request) => {
    const admin = requireAdmin(request);
    const run = runOf(runner, request);
    parseWith(CancelBody, request.body, 'body');
    return { run: runner.cancel(run.id, { username: admin.username }, request) };
  });

  app.get('/runs/:id/log', async (request, reply) => {
    const run = runOf(runner, request);
    const query = parseWith(LogQuery, request.query, 'query');
    const chunk = readLogChunk(
      runner.logFile(run.id),
      query.offset ?? 0,
      MAX_LOG_RESPONSE,
      !FINAL_STATUSES.has(run.status),
    );
    return reply
      .header('content-type', 'text/plain; charset=utf-8')
      .header('x-log-size', String(chunk.size))
      .header('x-log-next-offset', String(chunk.offset + chunk.bytes.length))
      .send(chunk.bytes);
  });

  app.get('/runs/:id/events', { exposeHeadRoute: false }, async (request, reply: FastifyReply) => {
    const admin = requireAdmin(request);
    const run = runOf(runner, request);
    const query = parseWith(EventsQuery, request.query, 'query');
    const open = openStreams.get(admin.id) ?? 0;
    if (open >= maxStreams) {
      throw new HttpError(
        429,
        'too_many_streams',
        `this account already has ${maxStreams} job event streams open: close one (a dashboard tab following a run) and try again`,
      );
    }
    const sessionId = request.sessionId ?? null;
    let sent = lastEventId(request) ?? query.offset ?? 0;
    const path = runner.logFile(run.id);

    const raw = openEventStream(reply);
    raw.write(frame('run', run));

    let ending: JobRun | undefined = FINAL_STATUSES.has(run.status) ? run : undefined;
    let scheduled = false;
    let done = false;

    /** Sends the log from `sent` on, as far as the client keeps up; then `end` if over. */
    const flush = () => {
      scheduled = false;
      if (done || raw.destroyed) return;
      for (;;) {
        if (raw.writableLength > SSE_BACKLOG) return; // 'drain' calls again
        const chunk = readLogChunk(path, sent, SSE_CHUNK, ending === undefined);
        if (chunk.offset < sent) sent = chunk.offset; // a log shorter than the offset asked
        if (chunk.bytes.length === 0) break;
        sent = chunk.offset + chunk.bytes.length;
        raw.write(frame('log', { offset: chunk.offset, text: chunk.bytes.toString('utf8') }, sent));
      }
      if (ending) {
        raw.write(frame('end', ending));
        finish();
      }
    };
    const schedule = () => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(flush);
    };
    const unwatch = runner.watch(run.id, (event: RunEvent) => {
      if (done) return;
      if (event.type === 'log') schedule();
      else if (event.type === 'run') raw.write(frame('run', event.run));
      else {
        ending = event.run;
        schedule();
      }
    });
    const keepAlive = setInterval(() => {
      let allowed = false;
      try {
        allowed = stillAdmin(runner.store, admin, sessionId);
      } catch (error) {
        request.log.warn({ err: error }, 'could not check the session of a job event stream');
      }
      if (!allowed) {
        // Signed out, revoked, disabled or no longer an admin since the stream opened.
        raw.write(
          frame('closed', { message: 'the session has ended or is no longer an admin: sign in' }),
        );
        finish();
        return;
      }
      raw.write(': keep-alive\n\n');
    }, keepAliveMs);
    keepAlive.unref();
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(keepAlive);
      unwatch();
      streams.delete(finish);
      const left = (openStreams.get(admin.id) ?? 1) - 1;
      if (left > 0) openStreams.set(admin.id, left);
      else openStreams.delete(admin.id);
      raw.end();
    };
    streams.add(finish);
    openStreams.set(admin.id, open + 1);
    raw.on('drain', schedule);
    raw.once('close', finish);
    flush();
  });
};

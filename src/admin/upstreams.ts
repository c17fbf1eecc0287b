import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { requireAdmin } from '../auth/index.js';
import { UPSTREAM_NAME } from '../config/index.js';
import {
  addUpstream,
  listStoredUpstreams,
  removeUpstream,
  SsrfError,
  type Upstream,
} from '../gateway/index.js';
import { HttpError } from '../server/errors.js';
import { parseWith } from '../server/validate.js';
import type { UpstreamRow } from '../store/index.js';
import { recordChange, type AdminOptions } from './options.js';

const AddUpstream = z
  .object({
    name: z
      .string()
      .regex(UPSTREAM_NAME, 'use 1 to 64 letters, digits and . _ -, starting with one'),
    url: z.string().min(1).max(2048),
  })
  .strict();

const NameParam = z.object({ name: z.string().max(128) });

const NOT_LOADED = 'stored but not in service: the server refused it or has not loaded it yet';

function describeUpstream(upstream: Upstream) {
  return {
    name: upstream.name,
    url: upstream.url,
    source: upstream.source,
    healthy: upstream.healthy,
    checked_at: upstream.checkedAt?.toISOString() ?? null,
    last_error: upstream.lastError,
    models: upstream.models.map((model) => model.id),
  };
}

/** A stored upstream the registry does not serve (yet): listed so an admin can remove it. */
function describeStored(row: UpstreamRow): ReturnType<typeof describeUpstream> {
  return {
    name: row.name,
    url: row.url,
    source: 'store',
    healthy: false,
    checked_at: null,
    last_error: NOT_LOADED,
    models: [],
  };
}

/** `/admin/upstreams`: the live list with health; add and remove stored upstreams. */
export const upstreamRoutes: FastifyPluginAsync<AdminOptions> = async (app, options) => {
  const { store, registry } = options;
  const sync = options.syncUpstreams ?? (() => registry.syncStore());

  const live = (name: string) => registry.list().find((upstream) => upstream.name === name);

  app.get('/upstreams', async (request) => {
    requireAdmin(request);
    const serving = registry.list();
    const names = new Set(serving.map((upstream) => upstream.name));
    const waiting = (await listStoredUpstreams(store)).filter((row) => !names.has(row.name));
    return {
      upstreams: [...serving.map(describeUpstream), ...waiting.map(describeStored)],
    };
  });

  app.post('/upstreams', async (request, reply) => {
    const admin = requireAdmin(request);
    const body = parseWith(AddUpstream, request.body, 'body');
    if (live(body.name) !== undefined) {
      throw new HttpError(
        409,
        'upstream_exists',
        `an upstream named "${body.name}" is already in service; pick another name`,
      );
    }
    let row: UpstreamRow;
    try {
      row = await addUpstream(options.store, options.masterKey, body, options.lookup);
    } catch (error) {
      if (error instanceof SsrfError) {
        throw new HttpError(400, 'upstream_refused', error.message);
      }
      if (/already exists/.test((error as Error).message)) {
        throw new HttpError(
          409,
          'upstream_exists',
          `an upstream named "${body.name}" is already stored; pick another name`,
        );
      }
      throw error;
    }
    recordChange(options.audit, request, admin, {
      action: 'upstream.added',
      target: row.name,
      details: { name: row.name, url: row.url, source: 'none' },
    });
    await sync();
    let installed = live(row.name);
    if (installed !== undefined && installed.checkedAt === null) {
      // The sync starts the first health check without waiting for it: wait here, so the
      // answer shows its health and its models are served as soon as it is given.
      await registry.checkAll();
      installed = live(row.name);
    }
    return reply.code(201).send(installed ? describeUpstream(installed) : describeStored(row));
  });

  app.delete('/upstreams/:name', async (request, reply) => {
    const admin = requireAdmin(request);
    const { name } = parseWith(NameParam, request.params, 'path');
    if (!(await removeUpstream(store, name))) {
      const other = live(name);
      if (other !== undefined) {
        const from =
          other.source === 'config'
            ? 'the --upstream flag or PALISADE_UPSTREAMS'
            : 'probing the usual local ports';
        throw new HttpError(
          409,
          'upstream_not_removable',
          `"${name}" comes from ${from}, not from the store; change it there`,
        );
      }
      throw new HttpError(
        404,
        'upstream_not_found',
        'no such upstream; GET /api/admin/upstreams lists them',
      );
    }
    recordChange(options.audit, request, admin, {
      action: 'upstream.removed',
      target: name,
      details: { name },
    });
    await sync();
    return reply.code(204).send();
  });
};

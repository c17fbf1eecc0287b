import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { findUser, requireAdmin } from '../auth/index.js';
import { HttpError } from '../server/errors.js';
import { parseWith } from '../server/validate.js';
import { queryAudit } from './audit-query.js';
import { instanceSettings, setTotpRequired } from './instance-settings.js';
import { keyRoutes } from './keys.js';
import { recordChange, type AdminOptions } from './options.js';
import { upstreamRoutes } from './upstreams.js';
import { userRoutes } from './users.js';

const UpdateInstanceSettings = z.object({ require_totp: z.boolean().optional() }).strict();

const decimal = (max: number) =>
  z
    .string()
    .regex(/^\d{1,15}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1).max(max));

const AuditFilters = z
  .object({
    action: z
      .string()
      .max(64)
      .regex(/^[a-z0-9_.-]*$/, 'is the start of an action name, such as "key." or "user.created"')
      .optional(),
    actor: z.string().max(200).optional(),
    before: decimal(Number.MAX_SAFE_INTEGER).optional(),
    limit: decimal(200).optional(),
  })
  .strict();

/**
 * The admin API, registered inside the /api scope with the prefix `/admin`: users, instance
 * settings, API keys, upstreams and the audit log. Every route needs a signed-in admin (401
 * signed out, 403 for other users, before the body is read); every change is audited as
 * `user:<name>` with the request's ip and id.
 *
 * @example
 * api.register(admin, { prefix: '/admin', store, audit, keys, registry, masterKey, scrypt });
 */
export const admin: FastifyPluginAsync<AdminOptions> = async (app, options) => {
  const { store } = options;

  app.addHook('onRequest', async (request) => {
    requireAdmin(request);
  });
  // Unknown admin paths need an admin too: the route map is not shown to anyone else.
  app.setNotFoundHandler(async (request) => {
    requireAdmin(request);
    throw new HttpError(
      404,
      'not_found',
      `no admin route for ${request.method} ${request.url.split('?', 1)[0]}`,
    );
  });

  // Not `options` itself: it carries the `prefix`, which would apply a second time.
  const { prefix: _prefix, ...shared } = options as AdminOptions & { prefix?: string };
  await app.register(userRoutes, shared);
  await app.register(keyRoutes, shared);
  await app.register(upstreamRoutes, shared);

  app.get('/settings', async (request) => {
    requireAdmin(request);
    return instanceSettings(store);
  });

  app.put('/settings', async (request) => {
    const user = requireAdmin(request);
    const body = parseWith(UpdateInstanceSettings, request.body, 'body');
    if (body.require_totp === true && findUser(store, user.id)?.totp_enabled_at === null) {
      throw new HttpError(
        409,
        'enroll_first',
        'set up two-factor sign-in for yourself first (Settings): requiring it now would lock you out of the admin pages until you do',
      );
    }
    if (
      body.require_totp !== undefined &&
      body.require_totp !== instanceSettings(store).require_totp
    ) {
      setTotpRequired(store, body.require_totp);
      recordChange(options.audit, request, user, {
        action: 'settings.updated',
        details: { require_totp: body.require_totp },
      });
    }
    return instanceSettings(store);
  });

  app.get('/audit', async (request) => {
    requireAdmin(request);
    const filters = parseWith(AuditFilters, request.query, 'query');
    return queryAudit(store, { ...filters, limit: filters.limit ?? 50 });
  });
};

import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import {
  createApiKey,
  KEY_NAME_PATTERN,
  keyAuditDetails,
  listApiKeys,
  requireAdmin,
  type ApiKey,
} from '../auth/index.js';
import { parseDuration } from '../config/index.js';
import { HttpError } from '../server/errors.js';
import { parseWith } from '../server/validate.js';
import { isoNow } from '../store/index.js';
import { recordChange, type AdminOptions } from './options.js';

const MAX_LIFETIME_MS = 100 * 365 * 86_400_000;

const CreateKey = z
  .object({
    name: z
      .string()
      .regex(KEY_NAME_PATTERN, 'use up to 64 letters, digits and . _ @ -, starting with one'),
    scope: z.enum(['inference', 'admin']).optional(),
    models: z.array(z.string().min(1).max(200)).min(1).max(100).optional(),
    expires: z.string().max(32).optional(),
    rpm: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();

const IdParam = z.object({ id: z.string().max(64) });

/** The JSON shape of a key for admins: never the key, only its last four characters. */
export function describeKey(key: ApiKey) {
  return {
    id: key.id,
    name: key.name,
    owner: key.owner,
    scope: key.scope,
    hint: key.hint,
    models: key.models,
    rpm: key.rpm,
    expires_at: key.expiresAt?.toISOString() ?? null,
    created_at: key.createdAt.toISOString(),
    last_used_at: key.lastUsedAt?.toISOString() ?? null,
    revoked_at: key.revokedAt?.toISOString() ?? null,
  };
}

function lifetime(expires: string | undefined): number | null {
  if (expires === undefined) return null;
  const ms = parseDuration(expires);
  if (ms === undefined || ms <= 0 || ms > MAX_LIFETIME_MS) {
    throw new HttpError(
      400,
      'invalid_request',
      'invalid body field "expires": give a duration such as 90s, 15m, 12h or 30d (at most 100 years)',
    );
  }
  return ms;
}

/** `/admin/keys`: list, create (the key is answered once), revoke. */
export const keyRoutes: FastifyPluginAsync<AdminOptions> = async (app, options) => {
  const { store, keys } = options;

  app.get('/keys', async (request) => {
    requireAdmin(request);
    return { keys: (await listApiKeys(store)).map(describeKey) };
  });

  app.post('/keys', async (request, reply) => {
    const admin = requireAdmin(request);
    const body = parseWith(CreateKey, request.body, 'body');
    const expiresInMs = lifetime(body.expires);
    let created;
    try {
      created = await createApiKey(store, {
        name: body.name,
        owner: admin.username,
        scope: body.scope ?? 'inference',
        models: body.models ?? null,
        expiresInMs,
        rpm: body.rpm ?? null,
      });
    } catch (error) {
      // The name was checked above: what is left is a name already in use.
      if (!/already exists/.test((error as Error).message)) throw error;
      throw new HttpError(409, 'key_name_taken', (error as Error).message);
    }
    keys.invalidate();
    const { key, apiKey } = created;
    recordChange(options.audit, request, admin, {
      action: 'key.created',
      target: apiKey.id,
      details: keyAuditDetails(apiKey),
    });
    return reply.code(201).send({ key, api_key: describeKey(apiKey) });
  });

  app.delete('/keys/:id', async (request, reply) => {
    const admin = requireAdmin(request);
    const { id } = parseWith(IdParam, request.params, 'path');
    // By id only: revokeApiKey also matches names, and a key may be named like another's id.
    const existing = store.sqlite
      .prepare<[string], { name: string }>('select name from api_key where id = ?')
      .get(id);
    if (!existing) {
      throw new HttpError(404, 'key_not_found', 'no such key; GET /api/admin/keys lists them');
    }
    const revoked = store.sqlite
      .prepare('update api_key set revoked_at = ? where id = ? and revoked_at is null')
      .run(isoNow(), id).changes;
    if (revoked > 0) {
      keys.invalidate();
      recordChange(options.audit, request, admin, {
        action: 'key.revoked',
        target: id,
        details: { name: existing.name },
      });
    }
    return reply.code(204).send();
  });
};

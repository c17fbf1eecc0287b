import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { recordRequest, type AuditLog, type AuditValue } from '../audit/index.js';
import { requireUser, type SessionUser } from '../auth/index.js';
import { HttpError } from '../server/errors.js';
import { parseWith } from '../server/validate.js';
import type { Store } from '../store/index.js';
import { defaultModelFor, setDefaultModel } from './preferences.js';
import { MAX_SECRET_LENGTH, MAX_URL_LENGTH, SecretError, type UserSecrets } from './secrets.js';

export interface SettingsOptions {
  store: Store;
  audit: AuditLog;
  /** The same instance the chat uses to read the keys back. */
  secrets: UserSecrets;
}

// eslint-disable-next-line no-control-regex
const NO_CONTROL = /^[^\u0000-\u001f\u007f-\u009f]+$/;

const UpdateSettings = z
  .object({
    default_model: z
      .string()
      .min(1)
      .max(256)
      .regex(NO_CONTROL, 'must not hold control characters')
      .nullable()
      .optional(),
  })
  .strict();

// Lengths a little above the service's own limits, so its clearer messages are the ones seen.
const SetUpstreamKey = z.object({ key: z.string().max(MAX_SECRET_LENGTH + 1) }).strict();

const AddMcpServer = z
  .object({
    name: z.string().max(256),
    url: z.string().max(MAX_URL_LENGTH + 1),
    token: z
      .string()
      .max(MAX_SECRET_LENGTH + 1)
      .optional(),
  })
  .strict();

const UpstreamParam = z.object({ upstream: z.string().max(128) });
const IdParam = z.object({ id: z.string().max(64) });

const SECRET_STATUS: Record<SecretError['code'], number> = {
  invalid_upstream: 400,
  invalid_secret: 400,
  invalid_name: 400,
  invalid_url: 400,
  too_many_secrets: 409,
  name_taken: 409,
};

function asHttpError(error: unknown): unknown {
  return error instanceof SecretError
    ? new HttpError(SECRET_STATUS[error.code], error.code, error.message)
    : error;
}

const notFound = (what: string) =>
  new HttpError(404, 'secret_not_found', `you have no ${what}; GET /api/settings lists yours`);

/**
 * The signed-in user's settings and personal secrets, registered inside the /api scope:
 * `GET|PUT /settings`, `PUT|DELETE /settings/upstream-keys/:upstream`,
 * `POST /settings/mcp-servers`, `DELETE /settings/mcp-servers/:id`. Every answer is the whole
 * `Settings` with secrets masked; a user only ever reaches their own secrets.
 *
 * @example
 * api.register(settings, { store, audit, secrets: createUserSecrets({ store, masterKey }) });
 */
export const settings: FastifyPluginAsync<SettingsOptions> = async (app, options) => {
  const { store, audit, secrets } = options;

  app.addHook('onRequest', async (request) => {
    requireUser(request);
  });

  const answer = (user: SessionUser) => ({
    default_model: defaultModelFor(store, user.id),
    ...secrets.listMasked(user.id),
  });

  const record = (
    request: FastifyRequest,
    user: SessionUser,
    action: 'secret.set' | 'secret.removed',
    details: Record<string, AuditValue>,
  ) =>
    recordRequest(audit, request, {
      action,
      actor: `user:${user.username}`,
      target: user.id,
      details,
    });

  app.get('/settings', async (request) => answer(requireUser(request)));

  app.put('/settings', async (request) => {
    const user = requireUser(request);
    const body = parseWith(UpdateSettings, request.body, 'body');
    if (body.default_model !== undefined) setDefaultModel(store, user.id, body.default_model);
    return answer(user);
  });

  app.put('/settings/upstream-keys/:upstream', async (request) => {
    const user = requireUser(request);
    const { upstream } = parseWith(UpstreamParam, request.params, 'path');
    const { key } = parseWith(SetUpstreamKey, request.body, 'body');
    try {
      secrets.setUpstreamKey(user.id, upstream, key);
    } catch (error) {
      throw asHttpError(error);
    }
    record(request, user, 'secret.set', { kind: 'upstream_key', name: upstream });
    return answer(user);
  });

  app.delete('/settings/upstream-keys/:upstream', async (request) => {
    const user = requireUser(request);
    const { upstream } = parseWith(UpstreamParam, request.params, 'path');
    if (!secrets.removeUpstreamKey(user.id, upstream)) {
      throw notFound('key stored for that upstream');
    }
    record(request, user, 'secret.removed', { kind: 'upstream_key', name: upstream });
    return answer(user);
  });

  app.post('/settings/mcp-servers', async (request, reply) => {
    const user = requireUser(request);
    const body = parseWith(AddMcpServer, request.body, 'body');
    let added;
    try {
      added = secrets.addMcpServer(user.id, body);
    } catch (error) {
      throw asHttpError(error);
    }
    record(request, user, 'secret.set', {
      kind: 'mcp_server',
      name: added.name,
      id: added.id,
      host: new URL(body.url).host,
    });
    return reply.code(201).send(answer(user));
  });

  app.delete('/settings/mcp-servers/:id', async (request) => {
    const user = requireUser(request);
    const { id } = parseWith(IdParam, request.params, 'path');
    const removed = secrets.removeMcpServer(user.id, id);
    if (!removed) throw notFound('MCP server with that id');
    record(request, user, 'secret.removed', {
      kind: 'mcp_server',
      name: removed.name,
      id: removed.id,
    });
    return answer(user);
  });
};

import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import {
  AccountError,
  createUser,
  describeUser,
  findUser,
  listUsers,
  requireAdmin,
  resetUserTotp,
  setUserDisabled,
  setUserRole,
} from '../auth/index.js';
import { HttpError } from '../server/errors.js';
import { parseWith } from '../server/validate.js';
import type { Store, UserRow } from '../store/index.js';
import { recordChange, type AdminOptions } from './options.js';

const Role = z.enum(['admin', 'user']);

const CreateUser = z
  .object({
    username: z.string().max(64),
    // The policy (src/crypto/password.ts) gives the useful message; this only bounds the work.
    password: z.string().max(1024),
    role: Role,
  })
  .strict();

const UpdateUser = z
  .object({ disabled: z.boolean().optional(), role: Role.optional() })
  .strict()
  .refine((body) => body.disabled !== undefined || body.role !== undefined, {
    message: 'give "disabled", "role" or both',
  });

const NoBody = z.object({}).strict().optional();
const IdParam = z.object({ id: z.string().max(64) });

const ACCOUNT_STATUS: Record<AccountError['code'], number> = {
  invalid_username: 400,
  weak_password: 400,
  username_taken: 409,
  user_not_found: 404,
};

function requireTarget(store: Store, id: string): UserRow {
  const user = findUser(store, id);
  if (!user) {
    throw new HttpError(404, 'user_not_found', 'no such user; GET /api/admin/users lists them');
  }
  return user;
}

function countOtherActiveAdmins(store: Store, userId: string): number {
  return (
    store.sqlite
      .prepare<[string], number>(
        `select count(*) from user where role = 'admin' and disabled_at is null and id != ?`,
      )
      .pluck()
      .get(userId) ?? 0
  );
}

/** `/admin/users`: list, create, disable or change role, reset TOTP. */
export const userRoutes: FastifyPluginAsync<AdminOptions> = async (app, options) => {
  const { store } = options;

  app.get('/users', async (request) => {
    requireAdmin(request);
    return { users: listUsers(store).map(describeUser) };
  });

  app.post('/users', async (request, reply) => {
    const admin = requireAdmin(request);
    const body = parseWith(CreateUser, request.body, 'body');
    let user: UserRow;
    try {
      user = await createUser(store, body, options.scrypt);
    } catch (error) {
      if (!(error instanceof AccountError)) throw error;
      throw new HttpError(ACCOUNT_STATUS[error.code], error.code, error.message);
    }
    recordChange(options.audit, request, admin, {
      action: 'user.created',
      target: user.id,
      details: { username: user.username, role: user.role },
    });
    return reply.code(201).send(describeUser(user));
  });

  app.patch('/users/:id', async (request) => {
    const admin = requireAdmin(request);
    const { id } = parseWith(IdParam, request.params, 'path');
    const body = parseWith(UpdateUser, request.body, 'body');
    // Checked and applied in one write transaction: two admins demoting each other at once
    // cannot leave the instance without an admin.
    let revokedKeys = 0;
    const { target, roleChanged, disabledChanged } = store.sqlite
      .transaction(() => {
        const target = requireTarget(store, id);
        const roleChanged = body.role !== undefined && body.role !== target.role;
        const disabledChanged =
          body.disabled !== undefined && body.disabled !== (target.disabled_at !== null);
        const demote = roleChanged && body.role === 'user';
        const disable = disabledChanged && body.disabled === true;
        if ((demote || disable) && target.id === admin.id) {
          throw new HttpError(
            409,
            'cannot_change_self',
            'you cannot disable or demote your own account; ask another admin',
          );
        }
        const activeAdmin = target.role === 'admin' && target.disabled_at === null;
        if ((demote || disable) && activeAdmin && countOtherActiveAdmins(store, target.id) === 0) {
          throw new HttpError(
            409,
            'last_admin',
            'this is the last active admin; make another user an admin first',
          );
        }
        if (roleChanged && body.role !== undefined) setUserRole(store, id, body.role);
        if (disabledChanged && body.disabled !== undefined) {
          revokedKeys = setUserDisabled(store, id, body.disabled);
        }
        return { target, roleChanged, disabledChanged };
      })
      .immediate();

    if (roleChanged) {
      recordChange(options.audit, request, admin, {
        action: 'user.role_changed',
        target: id,
        details: { username: target.username, role: body.role ?? target.role },
      });
    }
    if (disabledChanged) {
      if (revokedKeys > 0) options.keys.invalidate();
      recordChange(options.audit, request, admin, {
        action: body.disabled ? 'user.disabled' : 'user.enabled',
        target: id,
        details: {
          username: target.username,
          disabled: body.disabled === true,
          ...(revokedKeys > 0 ? { count: revokedKeys } : {}),
        },
      });
    }
    return describeUser(requireTarget(store, id));
  });

  app.post('/users/:id/reset-totp', async (request) => {
    const admin = requireAdmin(request);
    const { id } = parseWith(IdParam, request.params, 'path');
    parseWith(NoBody, request.body, 'body');
    const user = requireTarget(store, id);
    resetUserTotp(store, user.id, { endSessions: true });
    recordChange(options.audit, request, admin, {
      action: 'user.totp_reset',
      target: user.id,
      details: { username: user.username },
    });
    return describeUser(requireTarget(store, id));
  });
};

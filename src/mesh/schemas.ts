import { z } from 'zod';
import { HttpError } from '../server/errors.js';

/** The most a message, a state value, or anything else a peer hands over may hold. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
/** The most one request body to /mesh may hold. */
export const MESH_BODY_LIMIT = 1024 * 1024;
export const MAX_SUMMARY_CHARS = 500;

const STATUSES = ['active', 'busy', 'idle', 'blocked'] as const;
const SCOPES = ['machine', 'directory', 'repo'] as const;

// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

// UUIDs are case-insensitive; the broker stores them as randomUUID() writes them, in lower case.
/** A peer id as the broker hands them out: a UUIDv4, in any case. */
export const PEER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

const peerId = z
  .uuidv4({ error: 'must be a peer id (a UUIDv4 from POST /mesh/peers)' })
  .transform((id) => id.toLowerCase());

const label = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !CONTROL.test(s), 'must not hold control characters');

const absolutePath = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .max(4096, 'must be at most 4096 characters')
  .refine((s) => !CONTROL.test(s), 'must not hold control characters')
  .refine((s) => s.startsWith('/') || /^[A-Za-z]:[\\/]/.test(s), 'must be an absolute path');

const summary = z
  .string({ error: 'must be a string' })
  .refine(
    (s) => [...s].length <= MAX_SUMMARY_CHARS,
    `must be at most ${MAX_SUMMARY_CHARS} characters`,
  );

const status = z.enum(STATUSES, { error: `must be one of ${STATUSES.join(', ')}` });
const scope = z.enum(SCOPES, { error: `must be one of ${SCOPES.join(', ')}` });
const text = z.string({ error: 'must be a string' }).min(1, 'must not be empty');

export const schemas = {
  peerParams: z.object({ id: peerId }),
  register: z.strictObject({
    name: label(64).optional(),
    agent: label(64).optional(),
    cwd: absolutePath,
    git_root: absolutePath.nullable().optional(),
    pid: z
      .number()
      .int()
      .positive()
      .max(2 ** 31)
      .nullable()
      .optional(),
    summary: summary.optional(),
    status: status.optional(),
  }),
  update: z.strictObject({
    name: label(64).optional(),
    agent: label(64).optional(),
    summary: summary.optional(),
    status: status.optional(),
    cwd: absolutePath.optional(),
    git_root: absolutePath.nullable().optional(),
  }),
  peersQuery: z.object({
    scope: scope.optional(),
    peer_id: peerId.optional(),
    include_left: z.enum(['true', 'false']).optional(),
  }),
  send: z.strictObject({
    from: peerId,
    to: peerId.nullable().optional(),
    text,
    scope: scope.optional(),
  }),
  inboxQuery: z.object({
    unread: z.enum(['true', 'false']).optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    after: z.coerce.number().int().min(0).optional(),
  }),
  markRead: z.strictObject({
    ids: z.array(z.number().int().positive()).max(1000).optional(),
  }),
  eventsQuery: z.object({
    peer_id: peerId.optional(),
    since: z.coerce.number().int().min(0).optional(),
    wait: z.coerce.number().int().min(0).max(60_000).optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
  }),
  stateQuery: z.object({
    project: label(4096),
    key: label(256).optional(),
  }),
  stateSet: z.strictObject({
    peer_id: peerId,
    project: label(4096),
    key: label(256),
    value: z.string({ error: 'must be a string' }),
  }),
  stateDelete: z.object({ peer_id: peerId, project: label(4096), key: label(256) }),
  claim: z.strictObject({
    peer_id: peerId,
    path: absolutePath,
    ttl_ms: z
      .number()
      .int()
      .min(1000)
      .max(24 * 3_600_000)
      .optional(),
  }),
  release: z.strictObject({ peer_id: peerId, path: absolutePath }),
};

function valueAt(value: unknown, path: PropertyKey[]): unknown {
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function describe(error: z.ZodError, value: unknown, where: string): string {
  const issue = error.issues[0];
  if (!issue) return `the ${where} is not valid`;
  const path = issue.path.map(String).join('.');
  if (issue.code === 'invalid_type' && path !== '' && valueAt(value, issue.path) === undefined) {
    return `${path} is required`;
  }
  if (issue.code === 'invalid_type' && path === '') return `the ${where} must be a JSON object`;
  if (issue.code === 'unrecognized_keys')
    return `unknown field ${issue.keys.join(', ')} in the ${where}`;
  return path ? `${path}: ${issue.message}` : issue.message;
}

/** Parses `value` with `schema`, or throws a 400 naming the first field that is wrong. */
export function parse<T>(schema: z.ZodType<T>, value: unknown, where = 'request body'): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new HttpError(400, 'invalid_request', describe(result.error, value, where));
}

/** Throws 413 when a peer-supplied payload is over 64 KB (UTF-8). */
export function checkPayload(field: string, value: string): void {
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_PAYLOAD_BYTES) {
    throw new HttpError(
      413,
      'payload_too_large',
      `${field} is ${bytes} bytes; the most a peer may send is ${MAX_PAYLOAD_BYTES} bytes (64 KB)`,
    );
  }
}

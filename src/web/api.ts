/**
 * The web app's client for Palisade's JSON API (`/api/*`). This file is also the contract
 * between the front end and the server: every route, body and answer the pages use is here.
 *
 * Every request carries `X-Requested-With: palisade` (the server refuses /api requests
 * without it) and the browser's own `Origin`. Errors arrive as
 * `{ error: { message, type, code }, request_id }` and are thrown as `ApiError`.
 */

export type Role = 'admin' | 'user';

export interface Me {
  id: string;
  username: string;
  role: Role;
  totp_enabled: boolean;
  /** An admin requires TOTP and this user has not enrolled yet: only enrollment is allowed. */
  totp_enrollment_required: boolean;
  created_at: string;
  last_login_at: string | null;
}

export interface AuthState {
  /** false in single-user mode (PALISADE_AUTH=false): no login, `user` is the local user. */
  auth: boolean;
  /** No admin exists yet: the setup page creates the first one. */
  setup_required: boolean;
  /** Setup must present the one-time setup token (non-loopback bind). */
  setup_token_required: boolean;
  user: Me | null;
}

export type LoginResult = { user: Me } | { totp_required: true };

export interface SessionInfo {
  id: string;
  user_agent: string;
  ip: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  current: boolean;
}

export interface TotpEnrollment {
  /** Base32 secret for manual entry. */
  secret: string;
  otpauth_url: string;
  /** An <svg> document of the QR code; show it as an <img> with a data: URL. */
  qr_svg: string;
}

export interface ModelInfo {
  id: string;
  upstream: string;
}

export interface Conversation {
  id: string;
  title: string;
  system_prompt: string;
  model: string | null;
  created_at: string;
  updated_at: string;
}

export type MessageStatus = 'complete' | 'streaming' | 'stopped' | 'error';

export interface ChatMessage {
  id: number;
  role: 'user' | 'assistant';
  content: string;
  model: string | null;
  status: MessageStatus;
  error: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  created_at: string;
}

/** Events of the stream answering `POST /api/conversations/:id/messages` and `/regenerate`. */
export type ChatStreamEvent =
  | { type: 'user'; message: ChatMessage }
  | { type: 'assistant'; message: ChatMessage }
  | { type: 'delta'; text: string }
  | { type: 'done'; message: ChatMessage; conversation: Conversation }
  | { type: 'error'; message: string; code: string; request_id: string }
  /** The model called one of the user's MCP tools; `arguments` is its JSON text, cut to 2 KB. */
  | { type: 'tool_call'; id: string; name: string; arguments: string }
  /** The call's outcome (`content` cut to 2 KB); the model got up to 64 KB of it. */
  | { type: 'tool_result'; id: string; name: string; ok: boolean; content: string }
  /** Something the user should know that is not an error (an MCP server left out, say). */
  | { type: 'notice'; message: string };

/** A user's chat usage so far (`GET /api/usage`), deleted conversations included. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  /** Messages sent and answers received. */
  messages: number;
}

export interface UpstreamKeyInfo {
  upstream: string;
  /** e.g. `••••abcd`; the key itself is never sent back. */
  masked: string;
  created_at: string;
}

export interface McpServerInfo {
  id: string;
  name: string;
  url: string;
  /** Masked token, or null when none was given. */
  token_masked: string | null;
  created_at: string;
}

export interface Settings {
  default_model: string | null;
  upstream_keys: UpstreamKeyInfo[];
  mcp_servers: McpServerInfo[];
}

export interface AdminUser {
  id: string;
  username: string;
  role: Role;
  totp_enabled: boolean;
  disabled: boolean;
  created_at: string;
  last_login_at: string | null;
}

export interface InstanceSettings {
  require_totp: boolean;
}

export interface ApiKeyInfo {
  id: string;
  name: string;
  owner: string | null;
  scope: 'inference' | 'admin';
  hint: string;
  models: string[] | null;
  rpm: number | null;
  expires_at: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface UpstreamInfo {
  name: string;
  url: string;
  source: 'config' | 'store' | 'probe';
  healthy: boolean;
  checked_at: string | null;
  last_error: string | null;
  models: string[];
}

export interface AuditEntry {
  seq: number;
  ts: string;
  action: string;
  actor: string;
  target?: string;
  ip?: string;
  request_id?: string;
  details?: Record<string, string | number | boolean | null | string[]>;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | undefined,
    /** Seconds from `Retry-After` on a 429. */
    readonly retryAfter: number | undefined,
  ) {
    super(message);
  }
}

const HEADERS = { 'x-requested-with': 'palisade' };

let unauthorizedListener: (() => void) | undefined;

/**
 * Registers the app's reaction to a 401 from any route outside `/api/auth/` (the session
 * expired or was revoked): it shows the sign-in page. Sign-in routes answer 401 for a wrong
 * password, which the page itself reports.
 */
export function onUnauthorized(listener: (() => void) | undefined): void {
  unauthorizedListener = listener;
}

function checkUnauthorized(path: string, response: Response): void {
  if (response.status === 401 && !path.startsWith('/api/auth/')) unauthorizedListener?.();
}

async function failure(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`;
  let code = 'http_error';
  let requestId: string | undefined;
  try {
    const body = (await response.json()) as {
      error?: { message?: string; code?: string };
      request_id?: string;
    };
    message = body.error?.message ?? message;
    code = body.error?.code ?? code;
    requestId = body.request_id;
  } catch {
    // Not JSON (a proxy's page): keep the status line.
  }
  // Number(null) is 0: without the header, retryAfter must stay undefined.
  const retryHeader = response.headers.get('retry-after');
  const retry = retryHeader === null || retryHeader.trim() === '' ? NaN : Number(retryHeader);
  return new ApiError(
    response.status,
    code,
    message,
    requestId,
    Number.isFinite(retry) ? retry : undefined,
  );
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? HEADERS : { ...HEADERS, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    checkUnauthorized(path, response);
    throw await failure(response);
  }
  if (response.status === 204) return undefined as T;
  // An empty 200 (a bodiless answer to logout, say) is undefined, not a JSON parse error.
  const text = await response.text();
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

const streamListeners = new Set<(event: ChatStreamEvent) => void>();

/**
 * Follows every event of every answer this tab streams, besides the caller's `onEvent`; returns
 * the function that stops following. The message view shows tool calls this way.
 */
export function onStreamEvent(listener: (event: ChatStreamEvent) => void): () => void {
  streamListeners.add(listener);
  return () => {
    streamListeners.delete(listener);
  };
}

/**
 * Streams a chat answer: calls `onEvent` for each event until the answer is done, failed or
 * `signal` aborts (the Stop button; the server keeps what was generated as `stopped`).
 */
async function stream(
  path: string,
  body: unknown,
  onEvent: (event: ChatStreamEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { ...HEADERS, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok || !response.body) {
    checkUnauthorized(path, response);
    throw await failure(response);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    let end: number;
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      const frame = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = frame
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (data === '') continue;
      const event = JSON.parse(data) as ChatStreamEvent;
      for (const listener of streamListeners) listener(event);
      onEvent(event);
    }
  }
}

// Jobs (admin): templates from PALISADE_HOME/jobs.json and the built-ins, their runs and logs.

export type JobParamType = 'integer' | 'enum' | 'string' | 'path';

/** One parameter of a job template, as the form is generated from it. */
export interface JobParam {
  name: string;
  type: JobParamType;
  description?: string;
  default?: string | number;
  optional?: boolean;
  /** integer */
  min?: number;
  max?: number;
  /** enum */
  values?: string[];
  /** string: a regular expression the whole value must match. */
  pattern?: string;
  maxLength?: number;
  /** path: the named folder the value is a path inside. */
  folder?: string;
  /** Written before the value as its own argument (`--tag VALUE`) when the value is given. */
  flag?: string;
}

export interface JobTemplate {
  name: string;
  description: string;
  builtin: boolean;
  params: JobParam[];
}

export type JobRunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobRun {
  id: string;
  template: string;
  params: Record<string, string | number>;
  status: JobRunStatus;
  /** 0..100 from the last `progress: N%` line, or null. */
  progress: number | null;
  exit_code: number | null;
  signal: string | null;
  /** Why it ended that way: "timed out after 2h", "cancelled by alice", … */
  reason: string | null;
  /** A username, or `cli` for runs started with `palisade jobs run`. */
  created_by: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  log_bytes: number;
}

/** The server's verdict on one parameter of a refused run. */
export interface JobParamProblem {
  param: string;
  message: string;
}

/** A run refused for its parameters (400 `invalid_params`): `details` name each field. */
export class JobParamsError extends ApiError {
  constructor(
    base: ApiError,
    readonly details: JobParamProblem[],
  ) {
    super(base.status, base.code, base.message, base.requestId, base.retryAfter);
  }
}

/** Events of `GET /api/admin/jobs/runs/:id/events`. */
export type JobRunEvent =
  /** Log text; `id` is the byte offset after it, where a new connection resumes. */
  | { type: 'log'; offset: number; text: string; id: string | null }
  | { type: 'run'; run: JobRun }
  /** The run finished; the stream closes after this. */
  | { type: 'end'; run: JobRun };

/** `failure()`, plus the per-parameter details of a 400 and a request id nested in `error`. */
async function jobFailure(response: Response): Promise<ApiError> {
  let details: JobParamProblem[] = [];
  let nestedId: string | undefined;
  try {
    const body = (await response.clone().json()) as {
      error?: { details?: unknown; request_id?: unknown };
    };
    if (typeof body.error?.request_id === 'string') nestedId = body.error.request_id;
    if (Array.isArray(body.error?.details)) {
      details = body.error.details.flatMap((item: unknown) => {
        const { param, message } = (item ?? {}) as { param?: unknown; message?: unknown };
        return typeof param === 'string' && typeof message === 'string' ? [{ param, message }] : [];
      });
    }
  } catch {
    // Not JSON: failure() keeps the status line.
  }
  let error = await failure(response);
  if (error.requestId === undefined && nestedId !== undefined) {
    error = new ApiError(error.status, error.code, error.message, nestedId, error.retryAfter);
  }
  return details.length > 0 ? new JobParamsError(error, details) : error;
}

async function startJobRun(body: {
  template: string;
  params: Record<string, string | number>;
}): Promise<{ run: JobRun }> {
  const path = '/api/admin/jobs/runs';
  const response = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { ...HEADERS, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    checkUnauthorized(path, response);
    throw await jobFailure(response);
  }
  return (await response.json()) as { run: JobRun };
}

function jobEvent(event: string, id: string | null, data: string): JobRunEvent | undefined {
  const parsed = JSON.parse(data) as Record<string, unknown>;
  if (event === 'log') {
    const text = typeof parsed.text === 'string' ? parsed.text : '';
    const offset = typeof parsed.offset === 'number' ? parsed.offset : 0;
    return { type: 'log', offset, text, id };
  }
  // `data` is the run itself; `{ run }` is accepted too.
  const run = (parsed.run ?? parsed) as JobRun;
  if (event === 'run') return { type: 'run', run };
  if (event === 'end') return { type: 'end', run };
  return undefined;
}

/**
 * Follows a run's events until the stream closes or `signal` aborts. Read with fetch rather
 * than EventSource, which cannot send the header every /api request needs; `lastEventId`
 * resumes the log after that byte offset.
 */
async function followJobRun(
  id: string,
  options: { lastEventId?: string; signal: AbortSignal; onEvent: (event: JobRunEvent) => void },
): Promise<void> {
  const path = `/api/admin/jobs/runs/${encodeURIComponent(id)}/events`;
  const response = await fetch(path, {
    credentials: 'same-origin',
    headers: {
      ...HEADERS,
      accept: 'text/event-stream',
      ...(options.lastEventId === undefined ? {} : { 'last-event-id': options.lastEventId }),
    },
    signal: options.signal,
  });
  if (!response.ok || !response.body) {
    checkUnauthorized(path, response);
    throw await jobFailure(response);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value.replace(/\r\n?/g, '\n');
    let end: number;
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      const frame = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let event = 'message';
      let eventId: string | null = null;
      const data: string[] = [];
      for (const line of frame.split('\n')) {
        // Lines starting with ':' are comments (keep-alives).
        const colon = line.indexOf(':');
        if (colon === 0) continue;
        const field = colon === -1 ? line : line.slice(0, colon);
        const text = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = text;
        else if (field === 'id') eventId = text;
        else if (field === 'data') data.push(text);
      }
      if (data.length === 0) continue;
      const parsed = jobEvent(event, eventId, data.join('\n'));
      if (parsed) options.onEvent(parsed);
    }
  }
}

async function jobRunLog(id: string, offset = 0): Promise<{ text: string; size: number | null }> {
  const path = `/api/admin/jobs/runs/${encodeURIComponent(id)}/log?offset=${offset}`;
  const response = await fetch(path, { credentials: 'same-origin', headers: HEADERS });
  if (!response.ok) {
    checkUnauthorized(path, response);
    throw await jobFailure(response);
  }
  const size = Number(response.headers.get('x-log-size') ?? NaN);
  return { text: await response.text(), size: Number.isFinite(size) ? size : null };
}

export const api = {
  // Sign-in
  authState: () => call<AuthState>('GET', '/api/auth/state'),
  setup: (body: { username: string; password: string; setup_token?: string }) =>
    call<{ user: Me }>('POST', '/api/auth/setup', body),
  login: (body: { username: string; password: string }) =>
    call<LoginResult>('POST', '/api/auth/login', body),
  /** The second step of a login with TOTP: a 6-digit code or a recovery code. */
  loginTotp: (body: { code: string }) => call<{ user: Me }>('POST', '/api/auth/totp/verify', body),
  logout: () => call<void>('POST', '/api/auth/logout', {}),

  // The signed-in user
  me: () => call<Me>('GET', '/api/me'),
  changePassword: (body: { current_password: string; new_password: string }) =>
    call<void>('POST', '/api/me/password', body),
  sessions: () => call<{ sessions: SessionInfo[] }>('GET', '/api/me/sessions'),
  revokeSession: (id: string) => call<void>('DELETE', `/api/me/sessions/${encodeURIComponent(id)}`),
  /** Starts enrollment; the password again, so a session left open cannot bind a phone. */
  totpEnroll: (body: { password: string }) =>
    call<TotpEnrollment>('POST', '/api/auth/totp/enroll', body),
  /** Confirms enrollment with a code from the app; answers the 10 recovery codes, shown once. */
  totpConfirm: (body: { code: string }) =>
    call<{ recovery_codes: string[] }>('POST', '/api/auth/totp/confirm', body),
  totpDisable: (body: { password: string }) => call<void>('POST', '/api/auth/totp/disable', body),

  // Settings and personal secrets
  settings: () => call<Settings>('GET', '/api/settings'),
  updateSettings: (body: { default_model?: string | null }) =>
    call<Settings>('PUT', '/api/settings', body),
  setUpstreamKey: (upstream: string, key: string) =>
    call<Settings>('PUT', `/api/settings/upstream-keys/${encodeURIComponent(upstream)}`, { key }),
  removeUpstreamKey: (upstream: string) =>
    call<Settings>('DELETE', `/api/settings/upstream-keys/${encodeURIComponent(upstream)}`),
  addMcpServer: (body: { name: string; url: string; token?: string }) =>
    call<Settings>('POST', '/api/settings/mcp-servers', body),
  removeMcpServer: (id: string) =>
    call<Settings>('DELETE', `/api/settings/mcp-servers/${encodeURIComponent(id)}`),

  // Chat
  models: () => call<{ models: ModelInfo[] }>('GET', '/api/models'),
  usage: () => call<Usage>('GET', '/api/usage'),
  conversations: (query?: string) =>
    call<{ conversations: Conversation[] }>(
      'GET',
      query ? `/api/conversations?q=${encodeURIComponent(query)}` : '/api/conversations',
    ),
  createConversation: (body: { title?: string; model?: string; system_prompt?: string }) =>
    call<Conversation>('POST', '/api/conversations', body),
  conversation: (id: string) =>
    call<{ conversation: Conversation; messages: ChatMessage[] }>(
      'GET',
      `/api/conversations/${encodeURIComponent(id)}`,
    ),
  updateConversation: (
    id: string,
    body: { title?: string; system_prompt?: string; model?: string | null },
  ) => call<Conversation>('PATCH', `/api/conversations/${encodeURIComponent(id)}`, body),
  deleteConversation: (id: string) =>
    call<void>('DELETE', `/api/conversations/${encodeURIComponent(id)}`),
  /**
   * The conversation as a file (`format` is `markdown` or `json`). Fetched rather than linked:
   * a plain link cannot carry the header every /api request needs.
   */
  exportConversation: async (id: string, format: 'markdown' | 'json') => {
    const response = await fetch(
      `/api/conversations/${encodeURIComponent(id)}/export?format=${format}`,
      { credentials: 'same-origin', headers: HEADERS },
    );
    if (!response.ok) throw await failure(response);
    return { text: await response.text(), type: response.headers.get('content-type') ?? '' };
  },
  send: (
    id: string,
    body: { content: string; model?: string },
    onEvent: (event: ChatStreamEvent) => void,
    signal: AbortSignal,
  ) => stream(`/api/conversations/${encodeURIComponent(id)}/messages`, body, onEvent, signal),
  /** Replaces the last answer with a new one. */
  regenerate: (
    id: string,
    body: { model?: string },
    onEvent: (event: ChatStreamEvent) => void,
    signal: AbortSignal,
  ) => stream(`/api/conversations/${encodeURIComponent(id)}/regenerate`, body, onEvent, signal),

  // Admin
  adminUsers: () => call<{ users: AdminUser[] }>('GET', '/api/admin/users'),
  adminCreateUser: (body: { username: string; password: string; role: Role }) =>
    call<AdminUser>('POST', '/api/admin/users', body),
  adminUpdateUser: (id: string, body: { disabled?: boolean; role?: Role }) =>
    call<AdminUser>('PATCH', `/api/admin/users/${encodeURIComponent(id)}`, body),
  adminResetTotp: (id: string) =>
    call<AdminUser>('POST', `/api/admin/users/${encodeURIComponent(id)}/reset-totp`, {}),
  adminSettings: () => call<InstanceSettings>('GET', '/api/admin/settings'),
  adminUpdateSettings: (body: Partial<InstanceSettings>) =>
    call<InstanceSettings>('PUT', '/api/admin/settings', body),
  adminKeys: () => call<{ keys: ApiKeyInfo[] }>('GET', '/api/admin/keys'),
  /** Answers the new key once, in `key`. */
  adminCreateKey: (body: {
    name: string;
    scope?: 'inference' | 'admin';
    models?: string[];
    expires?: string;
    rpm?: number;
  }) => call<{ key: string; api_key: ApiKeyInfo }>('POST', '/api/admin/keys', body),
  adminRevokeKey: (id: string) => call<void>('DELETE', `/api/admin/keys/${encodeURIComponent(id)}`),
  adminUpstreams: () => call<{ upstreams: UpstreamInfo[] }>('GET', '/api/admin/upstreams'),
  adminAddUpstream: (body: { name: string; url: string }) =>
    call<UpstreamInfo>('POST', '/api/admin/upstreams', body),
  adminRemoveUpstream: (name: string) =>
    call<void>('DELETE', `/api/admin/upstreams/${encodeURIComponent(name)}`),
  adminAudit: (filters: { action?: string; actor?: string; before?: number; limit?: number }) => {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(filters)) {
      if (value !== undefined && value !== '') query.set(name, String(value));
    }
    return call<{ entries: AuditEntry[]; next_before: number | null }>(
      'GET',
      `/api/admin/audit?${query}`,
    );
  },

  // Jobs (admin)
  /** `error` names a problem with jobs.json (and its fix); the built-ins are listed anyway. */
  adminJobTemplates: () =>
    call<{ templates: JobTemplate[]; error: string | null }>('GET', '/api/admin/jobs/templates'),
  /** Newest first. */
  adminJobRuns: (options: { limit?: number; before?: string } = {}) => {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.before !== undefined) query.set('before', options.before);
    return call<{ runs: JobRun[] }>('GET', `/api/admin/jobs/runs?${query}`);
  },
  adminJobRun: (id: string) =>
    call<{ run: JobRun }>('GET', `/api/admin/jobs/runs/${encodeURIComponent(id)}`),
  /** Throws `JobParamsError` when the server refuses parameters. */
  adminStartJob: startJobRun,
  /** 409 when the run has already finished. */
  adminCancelJob: (id: string) =>
    call<{ run: JobRun }>('POST', `/api/admin/jobs/runs/${encodeURIComponent(id)}/cancel`, {}),
  /** Up to 1 MB of the log from byte `offset`; `size` is the whole log's (X-Log-Size). */
  adminJobLog: jobRunLog,
  adminFollowJob: followJobRun,
};

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
};

/**
 * The chat's MCP client: a user's remote MCP servers (Streamable HTTP only) as tools offered
 * to the model. Every connection goes through the SSRF guard (metadata and link-local
 * addresses refused, loopback and private ones allowed, as for upstreams), every response is
 * size-capped, and every step is timed out. Tokens, tool arguments and results never reach
 * the log.
 */
import { createHash } from 'node:crypto';
import net, { type LookupFunction } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { Agent, fetch as undiciFetch, type RequestInit as UndiciRequestInit } from 'undici';
import { checkUpstreamUrl, guardedLookup, SsrfError, type SsrfPolicy } from '../gateway/index.js';
import { VERSION } from '../server/version.js';

/** Connecting and listing a server's tools, together. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** One tool call. */
export const CALL_TIMEOUT_MS = 60_000;
/** All the tool calls of one answer together; past it, calls fail at once. */
export const TOOL_BUDGET_MS = 5 * 60_000;
/** How long a server's tool list is reused (per user and server). */
export const LIST_CACHE_MS = 60_000;
/** Tools offered to the model, all servers together. */
export const MAX_TOOLS = 64;
/** Text of one tool result given to the model; past it the result is cut with a note. */
export const MAX_RESULT_BYTES = 64 * 1024;
/** Any one HTTP response from an MCP server (a tool list, a result, an error page). */
export const MAX_RESPONSE_BYTES = 2 * 1024 * 1024;
/** A tool whose input schema is larger than this is not offered. */
export const MAX_SCHEMA_BYTES = 16 * 1024;
const MAX_DESCRIPTION = 1024;
const MAX_LIST_PAGES = 4;
const MAX_CACHE_ENTRIES = 1000;
/** What all cached tool lists may hold together (each is trimmed as it arrives). */
const MAX_CACHE_BYTES = 16 * 1024 * 1024;

/**
 * A tool as kept from a listing: only what may be offered, so a server sending megabytes of
 * descriptions costs no more memory than one that does not. `inputSchema` is null when it
 * was too large to offer.
 */
interface ListedTool {
  name: string;
  description: string;
  inputSchema: Record<string, unknown> | null;
}

function trimmed(tool: Tool): ListedTool {
  const schema = JSON.stringify(tool.inputSchema);
  return {
    name: tool.name.slice(0, 256),
    description: (tool.description ?? tool.title ?? '').slice(0, MAX_DESCRIPTION),
    inputSchema:
      schema.length > MAX_SCHEMA_BYTES ? null : (tool.inputSchema as Record<string, unknown>),
  };
}
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** A remote MCP server as the user's settings hold it, token opened. */
export interface McpServerEntry {
  id: string;
  name: string;
  url: string;
  token?: string | undefined;
}

/** A tool as the model is offered it: its name there, and where it really lives. */
export interface OfferedTool {
  /** `<server>__<tool>`, sanitized to `^[a-zA-Z0-9_-]{1,64}$` and unique in the session. */
  name: string;
  server: string;
  tool: string;
  description: string;
  parameters: Record<string, unknown>;
}

/** What a tool call gave back, as text for the model. */
export interface ToolOutcome {
  ok: boolean;
  content: string;
}

/** The user's MCP servers for one answer: the tools to offer, and calls to them. */
export interface ToolSession {
  readonly tools: readonly OfferedTool[];
  /** Servers or tools left out, said to the user (never containing a token). */
  readonly notices: readonly string[];
  /**
   * Calls a tool by its offered name. Failures (unknown tool, refused connection, `isError`,
   * timeout) are outcomes with `ok: false`; only the session's stop signal makes it reject.
   */
  call(name: string, args: Record<string, unknown>): Promise<ToolOutcome>;
  /** Ends the session's connections; never rejects. */
  close(): Promise<void>;
}

export interface McpToolboxOptions {
  connectTimeoutMs?: number;
  callTimeoutMs?: number;
  /** Time all the tool calls of one answer may take together (default 5 minutes). */
  toolBudgetMs?: number;
  cacheTtlMs?: number;
  /** DNS lookup under the SSRF guard, replaceable in tests. */
  lookup?: LookupFunction;
  /**
   * Which addresses users' MCP servers may be on. Default strict: not this machine, not a
   * private network (PALISADE_MCP_ALLOWED_HOSTS exempts hosts the operator trusts).
   */
  ssrf?: SsrfPolicy;
  /** Clock of the tool-list cache. */
  now?: () => number;
}

/** An MCP server's response that grew past MAX_RESPONSE_BYTES. */
class ResponseTooLarge extends Error {
  readonly code = 'ERR_MCP_RESPONSE_TOO_LARGE';
}

/** OpenAI `tools` entries for the offered tools. */
export function toOpenAiTools(tools: readonly OfferedTool[]) {
  return tools.map((tool) => ({
    type: 'function' as const,
    function: {
      name: tool.name,
      ...(tool.description === '' ? {} : { description: tool.description }),
      parameters: tool.parameters,
    },
  }));
}

/**
 * The name a tool is offered under: `<server>__<tool>` with every character outside
 * `[a-zA-Z0-9_-]` replaced by `_`, cut to 64, and made unique against `taken` with a `_2`,
 * `_3`... suffix, so the same servers and tools always give the same names.
 *
 * @example
 * offeredName('My files', 'read.file', new Set()); // 'My_files__read_file'
 */
export function offeredName(
  server: string,
  tool: string,
  taken: { has(name: string): boolean },
): string {
  const base = `${server}__${tool}`.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64);
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) {
    const suffix = `_${n}`;
    const candidate = base.slice(0, 64 - suffix.length) + suffix;
    if (!taken.has(candidate)) return candidate;
  }
}

/**
 * `text` cut to at most `limit` UTF-8 bytes (never inside a character), with a note saying how
 * much there was when it was cut.
 *
 * @example
 * truncateText('x'.repeat(70_000), 65_536); // 65,536 x's, then "[truncated: ...]"
 */
export function truncateText(text: string, limit: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= limit) return text;
  const kept = new TextDecoder().decode(bytes.subarray(0, limit)).replace(/\uFFFD$/, '');
  return `${kept}\n[truncated: ${bytes.length} bytes, the first ${limit} shown]`;
}

function errorChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e !== undefined && e !== null && chain.length < 6;) {
    chain.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return chain;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/**
 * Why talking to a server failed, in words fit for the user and the model: no response
 * bodies (they may echo the token) and the token itself redacted from whatever is left.
 */
function describeFailure(error: unknown, token: string | undefined, timeoutMs: number): string {
  const chain = errorChain(error);
  const ssrf = chain.find((e) => e instanceof SsrfError);
  // What the user typed may be explained; what a name resolves to inside the network, or
  // whether it exists at all, is not the user's to learn: those read the same.
  if (ssrf instanceof SsrfError && ssrf.message.startsWith('upstream URL refused: ')) {
    return `its address is not allowed (${ssrf.message.replace(/^upstream URL refused: /, '')})`;
  }
  const unresolved = chain.some((e) =>
    ['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME'].includes(
      String((e as { code?: unknown }).code),
    ),
  );
  if (ssrf instanceof SsrfError || unresolved) {
    return 'its name does not lead to an address Palisade may reach (a public one, or a host in PALISADE_MCP_ALLOWED_HOSTS)';
  }
  if (chain.some((e) => e instanceof ResponseTooLarge)) {
    return `it sent a response larger than ${MAX_RESPONSE_BYTES / 1024 / 1024} MB`;
  }
  const http = chain.find((e) => e instanceof StreamableHTTPError);
  if (http instanceof StreamableHTTPError && http.code !== undefined && http.code > 0) {
    if (http.code === 401 || http.code === 403) {
      return !token
        ? `it requires a token (HTTP ${http.code}); add one in Settings`
        : `it refused the token (HTTP ${http.code}); check it in Settings`;
    }
    return `it answered HTTP ${http.code}`;
  }
  const timedOut = chain.some(
    (e) =>
      (e instanceof McpError && e.code === Number(ErrorCode.RequestTimeout)) ||
      (e instanceof Error && e.name === 'TimeoutError'),
  );
  if (timedOut) return `it did not answer within ${seconds(timeoutMs)}`;
  const code = chain
    .map((e) => (e as { code?: unknown }).code)
    .find((c): c is string => typeof c === 'string');
  if (code !== undefined) return `the connection failed (${code})`;
  // The innermost cause says most ("fetch failed" wraps the reason).
  const deepest = chain.at(-1);
  const message = deepest instanceof Error ? deepest.message : String(deepest);
  const cleaned = message.replace(/[^\x20-\x7e]+/g, ' ').slice(0, 300);
  return token ? cleaned.replaceAll(token, '[redacted]') : cleaned;
}

/** Node skips `lookup` for IP literals, so those are checked here, on every request. */
function assertHostAllowed(url: URL, policy: SsrfPolicy): void {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (net.isIP(host) !== 0) checkUpstreamUrl(url.origin, policy);
}

/** A response whose body errors once it passes `limit` bytes. */
function capped(response: Response, limit: number): Response {
  if (response.body === null) return response;
  let size = 0;
  const body = response.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        size += chunk.byteLength;
        if (size > limit) controller.error(new ResponseTooLarge('response too large'));
        else controller.enqueue(chunk);
      },
    }),
  );
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** The SDK's fetch: undici through the guarded agent, cut off when the session stops. */
function guardedFetch(agent: Agent, stop: AbortSignal, policy: SsrfPolicy): FetchLike {
  return async (url, init) => {
    const target = new URL(url);
    assertHostAllowed(target, policy);
    const signal = init?.signal ? AbortSignal.any([init.signal, stop]) : stop;
    // A redirect to an IP literal would pass without the lookup check: follow none.
    const options = { ...init, signal, dispatcher: agent, redirect: 'error' } as UndiciRequestInit;
    const response = (await undiciFetch(target, options)) as unknown as Response;
    return capped(response, MAX_RESPONSE_BYTES);
  };
}

/** The text a model gets from a tool result's content parts. */
function resultText(result: Record<string, unknown>): string {
  const parts = Array.isArray(result.content) ? (result.content as unknown[]) : [];
  const texts: string[] = [];
  for (const part of parts) {
    const p = (typeof part === 'object' && part !== null ? part : {}) as Record<string, unknown>;
    const resource = (p.resource ?? {}) as Record<string, unknown>;
    if (p.type === 'text' && typeof p.text === 'string') texts.push(p.text);
    else if (p.type === 'image' || p.type === 'audio') texts.push(`[${p.type} omitted]`);
    else if (p.type === 'resource' && typeof resource.text === 'string') texts.push(resource.text);
    else if (p.type === 'resource' || p.type === 'resource_link') {
      const uri = typeof p.uri === 'string' ? p.uri : resource.uri;
      texts.push(`[resource ${typeof uri === 'string' ? uri : ''}]`);
    }
  }
  if (texts.length === 0 && result.structuredContent !== undefined) {
    return JSON.stringify(result.structuredContent);
  }
  return texts.join('\n');
}

function errorContent(message: string): string {
  return JSON.stringify({ error: message });
}

function cacheKey(userId: string, server: McpServerEntry): string {
  const token = createHash('sha256')
    .update(server.token ?? '')
    .digest('hex');
  return `${userId}\0${server.id}\0${server.url}\0${token}`;
}

/**
 * The MCP client of the chat, one per app: a connection pool under the SSRF guard and a
 * 60-second cache of tool lists. `open` starts one answer's session.
 *
 * @example
 * const toolbox = createMcpToolbox();
 * const session = await toolbox.open(user.id, secrets.mcpServersFor(user.id), stop, log);
 * body.tools = toOpenAiTools(session.tools);
 * const outcome = await session.call('files__read', { path: 'notes.md' });
 * await session.close();
 */
export function createMcpToolbox(options: McpToolboxOptions = {}) {
  const connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  const callTimeoutMs = options.callTimeoutMs ?? CALL_TIMEOUT_MS;
  const toolBudgetMs = options.toolBudgetMs ?? TOOL_BUDGET_MS;
  const cacheTtlMs = options.cacheTtlMs ?? LIST_CACHE_MS;
  const now = options.now ?? Date.now;
  const ssrf = options.ssrf ?? { strict: true };
  const agent = new Agent({
    connect: { lookup: guardedLookup(options.lookup, ssrf), timeout: connectTimeoutMs },
    headersTimeout: callTimeoutMs,
    bodyTimeout: callTimeoutMs,
  });
  const cache = new Map<string, { expires: number; tools: ListedTool[]; bytes: number }>();
  let cacheBytes = 0;

  function forget(key: string): void {
    const entry = cache.get(key);
    if (entry === undefined) return;
    cacheBytes -= entry.bytes;
    cache.delete(key);
  }

  function cached(key: string): ListedTool[] | undefined {
    const entry = cache.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires > now()) return entry.tools;
    forget(key);
    return undefined;
  }

  function remember(key: string, tools: ListedTool[]): void {
    forget(key);
    const bytes = JSON.stringify(tools).length;
    // The oldest lists go first, by count and by size.
    while (
      cache.size > 0 &&
      (cache.size >= MAX_CACHE_ENTRIES || cacheBytes + bytes > MAX_CACHE_BYTES)
    ) {
      forget(cache.keys().next().value as string);
    }
    cache.set(key, { expires: now() + cacheTtlMs, tools, bytes });
    cacheBytes += bytes;
  }

  /** A deadline of CONNECT_TIMEOUT_MS that the session's stop also ends. */
  const connectDeadline = (stop: AbortSignal) =>
    AbortSignal.any([stop, AbortSignal.timeout(connectTimeoutMs)]);

  /** Connects; `stop` ends the connection's requests, `deadline` the handshake. */
  async function connect(
    server: McpServerEntry,
    stop: AbortSignal,
    deadline: AbortSignal,
  ): Promise<Client> {
    const transport = new StreamableHTTPClientTransport(new URL(server.url), {
      fetch: guardedFetch(agent, stop, ssrf),
      ...(server.token
        ? { requestInit: { headers: { authorization: `Bearer ${server.token}` } } }
        : {}),
      reconnectionOptions: {
        maxRetries: 0,
        initialReconnectionDelay: 1000,
        maxReconnectionDelay: 1000,
        reconnectionDelayGrowFactor: 1,
      },
    });
    const client = new Client({ name: 'palisade', version: VERSION });
    try {
      await client.connect(transport, { signal: deadline, timeout: connectTimeoutMs });
    } catch (error) {
      await client.close().catch(() => undefined);
      throw error;
    }
    return client;
  }

  async function listTools(client: Client, signal: AbortSignal): Promise<ListedTool[]> {
    const tools: ListedTool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES && tools.length < MAX_TOOLS; page++) {
      const result = await client.listTools(cursor === undefined ? undefined : { cursor }, {
        signal,
        timeout: connectTimeoutMs,
      });
      for (const tool of result.tools) tools.push(trimmed(tool));
      cursor = result.nextCursor;
      if (cursor === undefined) break;
    }
    return tools.slice(0, MAX_TOOLS);
  }

  return {
    /**
     * Lists the tools of every server (in parallel; cached lists reused) and names them for
     * the model. A server that cannot be reached or listed is left out with a notice. `stop`
     * aborts everything the session does.
     */
    async open(
      userId: string,
      servers: readonly McpServerEntry[],
      stop: AbortSignal,
      log?: FastifyBaseLogger,
    ): Promise<ToolSession> {
      const notices: string[] = [];
      const clients = new Map<string, Promise<Client>>();

      function clientFor(server: McpServerEntry, deadline: AbortSignal): Promise<Client> {
        let client = clients.get(server.id);
        if (client === undefined) {
          client = connect(server, stop, deadline);
          // A failed connection is retried by the next call, not remembered.
          client.catch(() => clients.delete(server.id));
          clients.set(server.id, client);
        }
        return client;
      }

      const listed = await Promise.all(
        servers.map(async (server): Promise<ListedTool[] | string> => {
          const key = cacheKey(userId, server);
          try {
            checkUpstreamUrl(server.url, ssrf);
            const hit = cached(key);
            if (hit !== undefined) return hit;
            // Connecting and listing share one deadline.
            const deadline = connectDeadline(stop);
            const tools = await listTools(await clientFor(server, deadline), deadline);
            remember(key, tools);
            return tools;
          } catch (error) {
            log?.warn({ mcpServer: server.name }, 'MCP server skipped');
            return describeFailure(error, server.token, connectTimeoutMs);
          }
        }),
      );

      const offered: OfferedTool[] = [];
      // Starts with the first call: listing has its own deadline.
      let budget: AbortSignal | undefined;
      const BUDGET_SPENT = `the tool calls of this answer took more than ${seconds(toolBudgetMs)} in all; no more are run`;
      const byName = new Map<string, { server: McpServerEntry; tool: string }>();
      let skipped = 0;
      for (const [index, server] of servers.entries()) {
        const tools = listed[index] ?? [];
        if (typeof tools === 'string') {
          if (!stop.aborted) notices.push(`MCP server "${server.name}" skipped: ${tools}`);
          continue;
        }
        for (const tool of tools) {
          if (offered.length >= MAX_TOOLS) {
            skipped++;
            continue;
          }
          const parameters = tool.inputSchema;
          if (parameters === null) {
            notices.push(
              `tool "${tool.name.slice(0, 64)}" of MCP server "${server.name}" skipped: its input schema is larger than ${MAX_SCHEMA_BYTES / 1024} KB`,
            );
            continue;
          }
          const name = offeredName(server.name, tool.name, byName);
          byName.set(name, { server, tool: tool.name });
          offered.push({
            name,
            server: server.name,
            tool: tool.name,
            description: tool.description,
            parameters,
          });
        }
      }
      if (skipped > 0) {
        notices.push(`only ${MAX_TOOLS} tools can be offered at once; ${skipped} left out`);
      }

      return {
        tools: offered,
        notices,

        async call(name, args) {
          const target = TOOL_NAME.test(name) ? byName.get(name) : undefined;
          if (target === undefined) {
            return { ok: false, content: errorContent(`no tool named "${name.slice(0, 64)}"`) };
          }
          const { server } = target;
          budget ??= AbortSignal.timeout(toolBudgetMs);
          if (budget.aborted) return { ok: false, content: errorContent(BUDGET_SPENT) };
          const signal = AbortSignal.any([stop, budget, AbortSignal.timeout(callTimeoutMs)]);
          try {
            const client = await clientFor(server, connectDeadline(stop));
            const result = await client.callTool(
              { name: target.tool, arguments: args },
              undefined,
              {
                signal,
                timeout: callTimeoutMs,
              },
            );
            return {
              ok: result.isError !== true,
              content: truncateText(resultText(result), MAX_RESULT_BYTES),
            };
          } catch (error) {
            if (stop.aborted) throw error;
            if (budget.aborted) return { ok: false, content: errorContent(BUDGET_SPENT) };
            log?.warn({ mcpServer: server.name, tool: target.tool }, 'MCP tool call failed');
            const reason = describeFailure(error, server.token, callTimeoutMs);
            return { ok: false, content: errorContent(`the tool call failed: ${reason}`) };
          }
        },

        async close() {
          await Promise.allSettled(
            [...clients.values()].map(async (pending) => {
              const client = await pending;
              await client.close();
            }),
          );
        },
      };
    },

    /** Closes the pool (the app is shutting down). */
    close: () => agent.close(),
  };
}

export type McpToolbox = ReturnType<typeof createMcpToolbox>;

/**
 * A real remote MCP server for the chat's tests (no tests of its own: it is named `.test.ts`
 * so the build leaves it out). The SDK's `McpServer` behind a stateless
 * `StreamableHTTPServerTransport` on a node:http server on 127.0.0.1, requiring a bearer token.
 *
 * Tools: `add(a, b)`, `fail()` (throws), `wait()` (answers only when released or aborted),
 * `big()` (100 KB of text), `read.file(path)` (a name to sanitize), plus `extraTools` more.
 *
 * @example
 * const mcp = await startMcpFixture({ token: 'tok' });
 * // ... point a client at mcp.url, then inspect mcp.calls
 * await mcp.close();
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export interface McpFixture {
  /** `http://127.0.0.1:PORT/mcp` */
  url: string;
  port: number;
  /** Tool calls received, in order, with the Authorization header they came with. */
  calls: Array<{ name: string; arguments: unknown; authorization: string | undefined }>;
  /** JSON-RPC methods received (`initialize`, `tools/list`, `tools/call`...), refused ones too. */
  methods: string[];
  /** `tools/call` requests whose connection closed before their answer was sent. */
  abortedCalls: number;
  /** Requests refused for a missing or wrong token. */
  refused: number;
  close(): Promise<void>;
}

export const BIG_RESULT_BYTES = 100 * 1024;

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text === '' ? undefined : (JSON.parse(text) as unknown));
      } catch (error) {
        reject(error as Error);
      }
    });
    req.on('error', reject);
  });
}

function methodsOf(body: unknown): string[] {
  const messages = Array.isArray(body) ? (body as unknown[]) : [body];
  return messages.flatMap((m) => {
    const method = (m as { method?: unknown } | null)?.method;
    return typeof method === 'string' ? [method] : [];
  });
}

export async function startMcpFixture(
  options: { token?: string; extraTools?: number } = {},
): Promise<McpFixture> {
  const waiting = new Set<() => void>();
  const state: McpFixture = {
    url: '',
    port: 0,
    calls: [],
    methods: [],
    abortedCalls: 0,
    refused: 0,
    close: async () => {
      for (const release of waiting) release();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };

  function mcpServer(authorization: string | undefined): McpServer {
    const mcp = new McpServer({ name: 'fixture', version: '1.0.0' });
    const record = (name: string, args: unknown) =>
      state.calls.push({ name, arguments: args, authorization });
    mcp.registerTool(
      'add',
      {
        description: 'Adds two numbers.',
        inputSchema: { a: z.number(), b: z.number() },
      },
      ({ a, b }) => {
        record('add', { a, b });
        return { content: [{ type: 'text', text: String(a + b) }] };
      },
    );
    mcp.registerTool('fail', { description: 'Always fails.' }, () => {
      record('fail', {});
      throw new Error('the tool broke');
    });
    mcp.registerTool('wait', { description: 'Waits.' }, async (extra) => {
      record('wait', {});
      await new Promise<void>((resolve) => {
        waiting.add(resolve);
        extra.signal.addEventListener('abort', () => resolve());
      });
      return { content: [{ type: 'text', text: 'waited' }] };
    });
    mcp.registerTool('big', { description: 'A large result.' }, () => {
      record('big', {});
      return { content: [{ type: 'text', text: 'x'.repeat(BIG_RESULT_BYTES) }] };
    });
    mcp.registerTool(
      'read.file',
      { description: 'Reads a file.', inputSchema: { path: z.string() } },
      ({ path }) => {
        record('read.file', { path });
        return { content: [{ type: 'text', text: `contents of ${path}` }] };
      },
    );
    for (let i = 0; i < (options.extraTools ?? 0); i++) {
      mcp.registerTool(`t${i}`, { description: `Tool ${i}.` }, () => ({
        content: [{ type: 'text', text: String(i) }],
      }));
    }
    return mcp;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    const body = await readBody(req);
    const methods = methodsOf(body);
    state.methods.push(...methods);
    const authorization = req.headers.authorization;
    if (options.token !== undefined && authorization !== `Bearer ${options.token}`) {
      state.refused++;
      // Echoes what it got, as careless servers do: the client must not pass it on.
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
      res.end(JSON.stringify({ error: `bad token: ${authorization ?? 'none'}` }));
      return;
    }
    if (methods.includes('tools/call')) {
      res.once('close', () => {
        if (!res.writableFinished) state.abortedCalls++;
      });
    }
    const mcp = mcpServer(authorization);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.once('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}/mcp`;
  return state;
}

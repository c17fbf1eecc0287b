import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { join } from 'node:path';

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'index.ts');
// Agents run in folders of their own, where a bare `tsx` would not resolve.
const TSX = import.meta.resolve('tsx');

/** Variables through which a coding agent would name itself; tests choose their own. */
const AGENT_VARIABLES =
  /^(CLAUDECODE|CLAUDE_CODE_|CODEX_|GEMINI_CLI|CURSOR_|AIDER_|OPENCODE|CLINE_|ROO_CODE|PALISADE_MESH_)/;

export interface MeshAgent {
  client: Client;
  transport: StdioClientTransport;
  /** Calls a tool; returns its text and whether it was a tool error. */
  call(name: string, args?: Record<string, unknown>): Promise<{ text: string; isError: boolean }>;
  close(): Promise<void>;
}

/**
 * Starts `palisade mcp` (from source, through tsx) as an agent would, with the MCP SDK's
 * stdio client, and connects to it.
 */
export async function startMeshAgent(options: {
  home: string;
  cwd?: string;
  name?: string;
  env?: Record<string, string>;
  startBroker?: boolean;
  clientName?: string;
}): Promise<MeshAgent> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !AGENT_VARIABLES.test(key)) env[key] = value;
  }
  // A broker the agent starts takes a free port, never the default one a developer may use.
  Object.assign(env, {
    PALISADE_PROBE_LOCAL: 'false',
    PALISADE_LOG_LEVEL: 'warn',
    PALISADE_PORT: '0',
  });
  if (options.name) env.PALISADE_MESH_NAME = options.name;
  Object.assign(env, options.env);
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      '--import',
      TSX,
      CLI,
      'mcp',
      '--home',
      options.home,
      ...(options.startBroker ? [] : ['--no-start-broker']),
    ],
    env,
    cwd: options.cwd ?? process.cwd(),
    stderr: 'pipe',
  });
  const client = new Client({ name: options.clientName ?? 'palisade-test', version: '1.0.0' });
  await client.connect(transport);
  return {
    client,
    transport,
    async call(name, args = {}) {
      const result = await client.callTool({ name, arguments: args });
      const content = result.content as Array<{ type: string; text?: string }>;
      return {
        text: content.map((c) => c.text ?? '').join('\n'),
        isError: result.isError === true,
      };
    },
    close: () => client.close(),
  };
}

/** The text of each peer-content block in a tool answer, in order. */
export function peerBlocks(text: string): Array<{ kind: string; from: string; body: string }> {
  const tag = /carry the tag ([0-9a-f]{12})/.exec(text)?.[1];
  if (tag === undefined) return [];
  const blocks: Array<{ kind: string; from: string; body: string }> = [];
  const pattern = new RegExp(
    `<<<peer-(\\w+) ${tag} from=("(?:[^"\\\\]|\\\\.)*")[^\\n]*>>>\\n([\\s\\S]*?)\\n<<<end peer-\\1 ${tag}>>>`,
    'g',
  );
  for (const match of text.matchAll(pattern)) {
    blocks.push({
      kind: match[1] as string,
      from: JSON.parse(match[2] as string) as string,
      body: match[3] as string,
    });
  }
  return blocks;
}

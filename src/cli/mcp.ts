import type { Command } from 'commander';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { loadConfig, prepareHome, type FlagValues } from '../config/index.js';
import { runMcpServer, startBackgroundBroker } from '../mesh/index.js';
import { VERSION } from '../server/index.js';
import type { GlobalOptions } from './context.js';

export function registerMcpCommand(program: Command): void {
  program
    .command('mcp')
    .description(
      'MCP stdio server that joins this session to the agent mesh (starts a broker if none runs)',
    )
    .option('--no-start-broker', 'never start a broker; tools report how to start one')
    .addHelpText(
      'after',
      `
Add it to an agent's MCP configuration, for example:
  { "mcpServers": { "palisade-mesh": { "command": "palisade", "args": ["mcp"] } } }
The session registers with its working directory and git repository, and unregisters on exit.
Environment: PALISADE_MESH_NAME (the name others see), PALISADE_MESH_AGENT (which agent this is),
PALISADE_MESH_RETRY (how long a call waits for a broker that is restarting, default 10s).`,
    )
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ startBroker: boolean } & GlobalOptions>();
      const configFlags: FlagValues = flags.home ? { home: flags.home } : {};
      const config = loadConfig({ flags: configFlags, env: process.env });
      prepareHome(config.home);
      const transport = new StdioServerTransport();
      const server = await runMcpServer({
        home: config.home,
        cwd: process.cwd(),
        env: process.env,
        name: config.meshName,
        agent: config.meshAgent,
        retryForMs: config.meshRetryMs,
        transport,
        version: VERSION,
        ...(flags.startBroker
          ? { startBroker: () => startBackgroundBroker(config.home, { port: config.port }) }
          : {}),
        onClosed: () => process.exit(0),
      });
      // The agent closing our stdin is how an MCP client says goodbye.
      process.stdin.once('end', () => void server.close());
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
        process.once(signal, () => void server.close());
      }
    });
}

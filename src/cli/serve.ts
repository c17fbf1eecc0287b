import type { Command } from 'commander';
import { loadConfig, type FlagValues } from '../config/index.js';
import { startServer } from '../server/index.js';

interface ServeFlags {
  host?: string;
  port?: string;
  home?: string;
  upstream?: string[];
  model?: string[];
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the server (gateway on /v1, health on /healthz, metrics on /metrics)')
    .option(
      '--host <address>',
      'address to bind (default 127.0.0.1; anything else requires API keys)',
    )
    .option('--port <port>', 'port to listen on (default 8642)')
    .option('--upstream <name=url>', 'an upstream model server; repeat for more', collect)
    .option(
      '--model <file.gguf>',
      'serve a GGUF model in-process as the upstream `local`; repeat for more',
      collect,
    )
    .addHelpText(
      'after',
      '\nEvery flag has an environment variable (PALISADE_HOST, PALISADE_PORT, PALISADE_UPSTREAMS, ...);\nflags win over the environment. See the configuration table in README.md.',
    )
    .action(async (_options: ServeFlags, command: Command) => {
      const options = command.optsWithGlobals<ServeFlags>();
      const flags: FlagValues = {};
      if (options.host !== undefined) flags.host = options.host;
      if (options.port !== undefined) flags.port = options.port;
      if (options.home !== undefined) flags.home = options.home;
      if (options.upstream !== undefined) flags.upstreams = options.upstream;
      if (options.model !== undefined) flags.models = options.model;
      const config = loadConfig({ flags, env: process.env });
      const server = await startServer(config);

      let signals = 0;
      const stop = (signal: NodeJS.Signals) => {
        signals += 1;
        if (signals > 1) {
          server.logger.warn(`second ${signal}: exiting now`);
          process.exit(130);
        }
        void server.close().then(
          () => process.exit(0),
          (error: unknown) => {
            server.logger.error({ err: error }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}

#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/index.js';
import { SsrfError } from '../gateway/index.js';
import { MeshRequestError, MeshUnavailableError } from '../mesh/index.js';
import { AlreadyRunningError, VERSION } from '../server/index.js';
import { registerAnthropicCommands } from './anthropic.js';
import { registerAuditCommands } from './audit.js';
import { CliError } from './context.js';
import { registerDoctorCommand } from './doctor.js';
import { registerJobCommands } from './jobs.js';
import { registerKeyCommands } from './keys.js';
import { registerMcpCommand } from './mcp.js';
import { registerModelCommands } from './models.js';
import { registerMeshCommands } from './mesh.js';
import { registerSecretCommands } from './secret.js';
import { registerServeCommand } from './serve.js';
import { registerUpstreamCommands } from './upstreams.js';
import { registerUserCommands } from './users.js';

const program = new Command('palisade')
  .description('A hardened, multi-user front door for the LLM servers you run yourself.')
  .version(VERSION)
  .option('--home <dir>', 'data directory (default: PALISADE_HOME or ~/.palisade)')
  .showHelpAfterError()
  .exitOverride();

registerServeCommand(program);
registerKeyCommands(program);
registerUserCommands(program);
registerUpstreamCommands(program);
registerAnthropicCommands(program);
registerAuditCommands(program);
registerSecretCommands(program);
registerDoctorCommand(program);
registerMcpCommand(program);
registerMeshCommands(program);
registerJobCommands(program);
registerModelCommands(program);

/** Errors a user can fix print one line and no stack trace. */
function fail(error: unknown): never {
  // Help and --version exit 0; every other parse error is a usage error.
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  if (
    error instanceof ConfigError ||
    error instanceof AlreadyRunningError ||
    error instanceof SsrfError
  ) {
    process.stderr.write(`palisade: ${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof MeshUnavailableError || error instanceof MeshRequestError) {
    process.stderr.write(`palisade: ${error.message}\n`);
    process.exit(1);
  }
  if (error instanceof CliError) {
    process.stderr.write(`palisade: ${error.message}\n`);
    process.exit(error.exitCode);
  }
  const e = error as NodeJS.ErrnoException;
  if (e?.code === 'EADDRINUSE') {
    process.stderr.write(
      `palisade: the address is already in use; pick another with --port or PALISADE_PORT\n`,
    );
    process.exit(2);
  }
  if (e?.code === 'EACCES' || e?.code === 'EPERM') {
    process.stderr.write(`palisade: permission denied: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`palisade: ${e instanceof Error ? e.message : String(e)}\n`);
  if (process.env.PALISADE_DEBUG) console.error(error);
  process.exit(1);
}

program.parseAsync(process.argv).catch(fail);

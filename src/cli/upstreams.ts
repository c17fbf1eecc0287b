import type { Command } from 'commander';
import { addUpstream, listStoredUpstreams, removeUpstream } from '../gateway/index.js';
import { CliError, printRows, withContext, type GlobalOptions } from './context.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').trim();
}

export function registerUpstreamCommands(program: Command): void {
  const upstreams = program
    .command('upstreams')
    .description('the model servers behind the gateway (works while the server runs)');

  upstreams
    .command('add <name> <url>')
    .description('add an OpenAI-compatible upstream, e.g. lmstudio http://127.0.0.1:1234')
    .option('--api-key-env <var>', "environment variable holding the upstream's API key")
    .option('--api-key-stdin', "read the upstream's API key from stdin and store it encrypted")
    .action(async (name: string, url: string, _f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<
        { apiKeyEnv?: string; apiKeyStdin?: boolean } & GlobalOptions
      >();
      if (flags.apiKeyEnv && flags.apiKeyStdin) {
        throw new CliError('use either --api-key-env or --api-key-stdin, not both', 2);
      }
      const apiKey = flags.apiKeyStdin ? await readStdin() : undefined;
      if (flags.apiKeyStdin && !apiKey) throw new CliError('--api-key-stdin read an empty key', 2);
      await withContext(flags, async (ctx) => {
        let row;
        try {
          row = await addUpstream(ctx.store, ctx.masterKey, {
            name,
            url,
            ...(flags.apiKeyEnv !== undefined ? { apiKeyEnv: flags.apiKeyEnv } : {}),
            ...(apiKey !== undefined ? { apiKey } : {}),
          });
        } catch (error) {
          throw new CliError((error as Error).message);
        }
        ctx.audit.record({
          action: 'upstream.added',
          actor: 'cli',
          target: row.name,
          details: {
            name: row.name,
            url: row.url,
            source: row.api_key_env ? 'env' : row.api_key_enc ? 'sealed' : 'none',
          },
        });
        process.stdout.write(`added upstream "${row.name}" (${row.url})\n`);
      });
    });

  upstreams
    .command('list')
    .description('list stored upstreams (configured ones are shown by GET /healthz)')
    .option('--json', 'print JSON')
    .action(async (_f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ json?: boolean } & GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const rows = (await listStoredUpstreams(ctx.store)).map((u) => ({
          name: u.name,
          url: u.url,
          api_key: u.api_key_env
            ? `env:${u.api_key_env}`
            : u.api_key_enc
              ? 'stored (encrypted)'
              : null,
          created_at: u.created_at,
        }));
        printRows(rows, flags.json);
      });
    });

  upstreams
    .command('remove <name>')
    .description('remove a stored upstream')
    .action(async (name: string, _f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        if (!(await removeUpstream(ctx.store, name))) {
          throw new CliError(
            `no stored upstream named "${name}" (palisade upstreams list shows them)`,
          );
        }
        ctx.audit.record({
          action: 'upstream.removed',
          actor: 'cli',
          target: name,
          details: { name },
        });
        process.stdout.write(`removed upstream "${name}"\n`);
      });
    });
}

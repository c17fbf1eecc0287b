import type { Command } from 'commander';
import { createApiKey, keyAuditDetails, listApiKeys, revokeApiKey } from '../auth/index.js';
import { parseDuration } from '../config/index.js';
import { CliError, printRows, withContext, type GlobalOptions } from './context.js';

interface CreateFlags {
  user?: string;
  models?: string;
  expires?: string;
  rpm?: string;
  maxStreams?: string;
  admin?: boolean;
}

function positiveInteger(flag: string, text: string | undefined): number | null {
  if (text === undefined) return null;
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new CliError(`${flag} takes a whole number above 0, got "${text}"`, 2);
  }
  return Number(text);
}

export function registerKeyCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('API keys for /v1 (works while the server runs)');

  keys
    .command('create <name>')
    .description('create a key and print it once')
    .option('--user <user>', 'owner of the key')
    .option('--models <globs>', 'models the key may use, comma separated globs (default: all)')
    .option('--expires <duration>', 'lifetime such as 90s, 15m, 12h, 30d (default: never)')
    .option('--rpm <n>', 'requests per minute (default: PALISADE_RATE_LIMIT per second)')
    .option('--max-streams <n>', 'concurrent streams (default: PALISADE_MAX_STREAMS)')
    .option('--admin', 'may also read /metrics from other machines')
    .action(async (name: string, _flags: CreateFlags, command: Command) => {
      const flags = command.optsWithGlobals<CreateFlags & GlobalOptions>();
      let expiresInMs: number | null = null;
      if (flags.expires !== undefined) {
        const ms = parseDuration(flags.expires);
        if (ms === undefined || ms <= 0 || ms > 100 * 365 * 86_400_000) {
          throw new CliError(
            `--expires takes a duration such as 90s, 15m, 12h or 30d (at most 100 years), got "${flags.expires}"`,
            2,
          );
        }
        expiresInMs = ms;
      }
      const models =
        flags.models
          ?.split(',')
          .map((m) => m.trim())
          .filter(Boolean) ?? null;
      if (models !== null && models.length === 0) {
        throw new CliError(
          '--models needs at least one model name or glob, such as "llama*,qwen3:8b"',
          2,
        );
      }
      const rpm = positiveInteger('--rpm', flags.rpm);
      const maxStreams = positiveInteger('--max-streams', flags.maxStreams);
      await withContext(flags, async (ctx) => {
        let created;
        try {
          created = await createApiKey(ctx.store, {
            name,
            owner: flags.user ?? null,
            scope: flags.admin ? 'admin' : 'inference',
            models,
            expiresInMs,
            rpm,
            maxStreams,
          });
        } catch (error) {
          throw new CliError((error as Error).message);
        }
        const { key, apiKey } = created;
        ctx.audit.record({
          action: 'key.created',
          actor: 'cli',
          target: apiKey.id,
          // The admin API takes no stream limit; keys made here may have one.
          details: { ...keyAuditDetails(apiKey), max_streams: apiKey.maxStreams },
        });
        process.stdout.write(`${key}\n`);
        process.stderr.write(
          `created key "${apiKey.name}" (${apiKey.id}). This is the only time it is shown: store it now.\n`,
        );
      });
    });

  keys
    .command('list')
    .description('list keys (never the keys themselves)')
    .option('--json', 'print JSON')
    .action(async (_flags: { json?: boolean }, command: Command) => {
      const flags = command.optsWithGlobals<{ json?: boolean } & GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const now = Date.now();
        const rows = (await listApiKeys(ctx.store)).map((k) => ({
          id: k.id,
          name: k.name,
          key: `pk_…${k.hint}`,
          owner: k.owner,
          scope: k.scope,
          models: k.models,
          rpm: k.rpm,
          max_streams: k.maxStreams,
          status: k.revokedAt
            ? 'revoked'
            : k.expiresAt && k.expiresAt.getTime() <= now
              ? 'expired'
              : 'active',
          expires_at: k.expiresAt?.toISOString() ?? null,
          created_at: k.createdAt.toISOString(),
          last_used_at: k.lastUsedAt?.toISOString() ?? null,
        }));
        printRows(rows, flags.json);
      });
    });

  keys
    .command('revoke <id-or-name>')
    .description('revoke a key at once (the running server stops accepting it)')
    .action(async (idOrName: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const revoked = await revokeApiKey(ctx.store, idOrName);
        if (!revoked)
          throw new CliError(
            `no key with id or name "${idOrName}" (palisade keys list shows them)`,
          );
        ctx.audit.record({
          action: 'key.revoked',
          actor: 'cli',
          target: revoked.id,
          details: { name: revoked.name },
        });
        process.stdout.write(`revoked key "${revoked.name}" (${revoked.id})\n`);
      });
    });
}

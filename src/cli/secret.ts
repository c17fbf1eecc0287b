import type { Command } from 'commander';
import { rotateMasterKey, RotationError, type SettleOutcome } from '../admin/index.js';
import { createAuditLog } from '../audit/index.js';
import { loadConfig, prepareHome, type FlagValues } from '../config/index.js';
import { AlreadyRunningError, acquirePidLock } from '../server/index.js';
import { openStore } from '../store/index.js';
import { CliError, type GlobalOptions } from './context.js';

const HEX_KEY = /^[0-9a-fA-F]{64}$/;

const SETTLED: Record<Exclude<SettleOutcome, 'clean'>, string> = {
  rolled_back: 'an earlier rotation had stopped before its commit; its unused key was dropped',
  finished: 'an earlier rotation had stopped after its commit; its new key was put in place',
  restored: 'the database was sealed under secret.key.old; that key was put back in secret.key',
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').trim();
}

/** Takes the pid lock so no server starts mid-rotation; a running one holds the old key. */
function lockHome(home: string): () => void {
  try {
    return acquirePidLock(home);
  } catch (error) {
    if (!(error instanceof AlreadyRunningError)) throw error;
    throw new CliError(
      `a Palisade server is running on ${home} and holds the current key in memory: stop it, run palisade secret rotate, then start it again`,
    );
  }
}

/**
 * Adds `palisade secret rotate`: a new master key for everything sealed in the database
 * (upstream API keys, TOTP secrets, users' upstream keys and MCP tokens).
 *
 * With the key in `secret.key` (the default) a new random key replaces it; nothing is
 * printed. With `PALISADE_SECRET` set, the key lives outside the home, so this refuses
 * unless `--new-secret-stdin` hands it the new key (64 hex), which the operator has stored
 * where PALISADE_SECRET comes from: the database is re-sealed under it and no file written.
 *
 * @example
 * registerSecretCommands(program); // palisade secret rotate
 */
export function registerSecretCommands(program: Command): void {
  const secret = program.command('secret').description('the master key of the stored secrets');

  secret
    .command('rotate')
    .description('re-seal every stored secret under a new master key (stop the server first)')
    .option(
      '--new-secret-stdin',
      'with PALISADE_SECRET set: read the new key (64 hex) from stdin; no file is written',
    )
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ newSecretStdin?: boolean } & GlobalOptions>();
      const configFlags: FlagValues = flags.home ? { home: flags.home } : {};
      const config = loadConfig({ flags: configFlags, env: process.env });
      const fromEnv = config.secret !== undefined;
      if (fromEnv && !flags.newSecretStdin) {
        throw new CliError(
          'PALISADE_SECRET is set, so the master key is not in secret.key and cannot be replaced here. ' +
            'Make a new key (openssl rand -hex 32), store it where PALISADE_SECRET comes from, then run ' +
            'palisade secret rotate --new-secret-stdin with the new key on stdin, and start the server with ' +
            'PALISADE_SECRET set to it',
        );
      }
      if (!fromEnv && flags.newSecretStdin) {
        throw new CliError(
          '--new-secret-stdin is for a key given by PALISADE_SECRET; without it, secret.key gets a new random key',
          2,
        );
      }
      let newKey: Buffer | undefined;
      if (flags.newSecretStdin) {
        const text = await readStdin();
        if (!HEX_KEY.test(text)) {
          throw new CliError('--new-secret-stdin expects 64 hex characters on stdin', 2);
        }
        newKey = Buffer.from(text, 'hex');
      }

      const home = prepareHome(config.home);
      const release = lockHome(home);
      try {
        const store = await openStore(home);
        try {
          let result;
          try {
            result = rotateMasterKey({
              home,
              store,
              ...(config.secret !== undefined
                ? { currentKey: Buffer.from(config.secret, 'hex'), newKey }
                : {}),
            });
          } catch (error) {
            if (error instanceof RotationError) {
              throw new CliError(`${error.message}; nothing was changed`);
            }
            throw error;
          }
          if (result.settled !== 'clean') {
            process.stderr.write(`palisade: ${SETTLED[result.settled]}\n`);
          }
          createAuditLog(store, home).record({
            action: 'secret.rotated',
            actor: 'cli',
            details: { count: result.resealed, source: fromEnv ? 'env' : 'file' },
          });
          process.stdout.write(
            fromEnv
              ? `re-sealed ${result.resealed} secrets under the new key; start the server with PALISADE_SECRET set to it (the old key no longer opens them)\n`
              : `re-sealed ${result.resealed} secrets under a new master key in secret.key; the old key is gone\n`,
          );
        } finally {
          await store.close();
        }
      } finally {
        release();
      }
    });
}

import type { Command } from 'commander';
import { recordRequest, type AuditValue } from '../audit/index.js';
import {
  AccountError,
  createUser,
  describeUser,
  findUserByName,
  listUsers,
  requireUserRow,
  resetUserTotp,
  setUserDisabled,
  USERNAME_PATTERN,
} from '../auth/index.js';
import { passwordProblem } from '../crypto/index.js';
import type { Store, UserRow } from '../store/index.js';
import {
  CliError,
  printRows,
  withContext,
  type CliContext,
  type GlobalOptions,
} from './context.js';

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const BACKSPACE = new Set(['\u007f', '\b']);

/** Reads a line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  const input = process.stdin;
  // Echo goes off before the question shows, so nothing typed early is echoed.
  input.setRawMode(true);
  input.setEncoding('utf8');
  input.resume();
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = () => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') {
          finish();
          return resolve(value);
        }
        if (char === CTRL_C || (char === CTRL_D && value === '')) {
          finish();
          return reject(new CliError('cancelled; no user was created', 130));
        }
        if (BACKSPACE.has(char)) value = [...value].slice(0, -1).join('');
        else value += char;
      }
    };
    input.on('data', onData);
  });
}

/** The new user's password: PALISADE_PASSWORD, else asked twice on the terminal. */
async function readNewPassword(username: string): Promise<string> {
  const fromEnv = process.env.PALISADE_PASSWORD;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (!process.stdin.isTTY) {
    throw new CliError(
      'no terminal to ask for the password: set PALISADE_PASSWORD for scripts, or run this in a terminal',
      2,
    );
  }
  const password = await promptHidden(`Password for ${username}: `);
  const problem = passwordProblem(password, username);
  if (problem !== undefined) throw new CliError(problem);
  if ((await promptHidden('Again, to be sure: ')) !== password) {
    throw new CliError('the two passwords differ; no user was created');
  }
  return password;
}

function findTarget(store: Store, name: string): UserRow {
  try {
    return requireUserRow(store, name);
  } catch (error) {
    if (error instanceof AccountError) {
      throw new CliError(`no user "${name}" (palisade users list shows them)`);
    }
    throw error;
  }
}

function activeAdmins(store: Store): number {
  return listUsers(store).filter((u) => u.role === 'admin' && u.disabled_at === null).length;
}

function record(
  ctx: CliContext,
  action: string,
  user: UserRow,
  extra: Record<string, AuditValue> = {},
) {
  recordRequest(ctx.audit, undefined, {
    action,
    actor: 'cli',
    target: user.id,
    details: { username: user.username, ...extra },
  });
}

/**
 * Adds `palisade users create|list|reset-totp|disable|enable`.
 *
 * @example
 * registerUserCommands(program); // PALISADE_PASSWORD=... palisade users create alice --admin
 */
export function registerUserCommands(program: Command): void {
  const users = program.command('users').description('web accounts (works while the server runs)');

  users
    .command('create <name>')
    .description('create a user; the password is asked twice, or read from PALISADE_PASSWORD')
    .option('--admin', 'make the user an admin')
    .action(async (name: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ admin?: boolean } & GlobalOptions>();
      if (!USERNAME_PATTERN.test(name)) {
        throw new CliError(
          `"${name}" is not a username: use 1 to 32 letters, digits, dots, dashes or underscores, starting with a letter or digit`,
          2,
        );
      }
      await withContext(flags, async (ctx) => {
        if (findUserByName(ctx.store, name)) {
          throw new CliError(`the username "${name}" is taken (palisade users list shows them)`);
        }
        const password = await readNewPassword(name);
        const scrypt = { n: ctx.config.scryptN, r: ctx.config.scryptR, p: ctx.config.scryptP };
        let user: UserRow;
        try {
          user = await createUser(
            ctx.store,
            { username: name, password, role: flags.admin ? 'admin' : 'user' },
            scrypt,
          );
        } catch (error) {
          if (error instanceof AccountError) throw new CliError(error.message);
          throw error;
        }
        record(ctx, 'user.created', user, { role: user.role });
        process.stdout.write(`created ${user.role} "${user.username}" (${user.id})\n`);
      });
    });

  users
    .command('list')
    .description('list users (never their passwords or secrets)')
    .option('--json', 'print JSON')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ json?: boolean } & GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const rows = listUsers(ctx.store);
        if (flags.json) {
          printRows(rows.map(describeUser), true);
          return;
        }
        printRows(
          rows.map((u) => ({
            username: u.username,
            role: u.role,
            '2fa': u.totp_enabled_at !== null ? 'on' : 'off',
            status: u.disabled_at !== null ? 'disabled' : 'active',
            created: u.created_at,
            'last login': u.last_login_at,
          })),
          false,
        );
      });
    });

  users
    .command('reset-totp <name>')
    .description("remove a user's TOTP enrollment and recovery codes (a lost phone)")
    .action(async (name: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const user = findTarget(ctx.store, name);
        if (user.totp_secret_enc === null && user.totp_enabled_at === null) {
          process.stdout.write(`"${user.username}" has no TOTP enrolled; nothing to reset\n`);
          return;
        }
        resetUserTotp(ctx.store, user.id, { endSessions: true });
        record(ctx, 'user.totp_reset', user);
        process.stdout.write(
          `reset TOTP of "${user.username}"; they sign in with the password alone and may enroll again\n`,
        );
      });
    });

  users
    .command('disable <name>')
    .description('disable a user and end their sessions at once')
    .action(async (name: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const user = findTarget(ctx.store, name);
        if (user.disabled_at !== null) {
          process.stdout.write(`"${user.username}" is already disabled\n`);
          return;
        }
        if (user.role === 'admin' && activeAdmins(ctx.store) <= 1) {
          throw new CliError(
            `"${user.username}" is the last active admin; create another first: palisade users create NAME --admin`,
          );
        }
        const revoked = setUserDisabled(ctx.store, user.id, true);
        record(ctx, 'user.disabled', user, {
          disabled: true,
          ...(revoked > 0 ? { count: revoked } : {}),
        });
        const keys =
          revoked === 0 ? '' : ` and revoked ${revoked} API key${revoked === 1 ? '' : 's'}`;
        process.stdout.write(`disabled "${user.username}", ended their sessions${keys}\n`);
      });
    });

  users
    .command('enable <name>')
    .description('enable a disabled user again')
    .action(async (name: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const user = findTarget(ctx.store, name);
        if (user.disabled_at === null) {
          process.stdout.write(`"${user.username}" is already enabled\n`);
          return;
        }
        setUserDisabled(ctx.store, user.id, false);
        record(ctx, 'user.enabled', user, { disabled: false });
        process.stdout.write(`enabled "${user.username}"\n`);
      });
    });
}

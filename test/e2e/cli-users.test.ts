import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { createUserSecrets } from '../../src/settings/index.js';
import { openStore } from '../../src/store/index.js';
import { runCli, tempHome, type CliResult } from '../support/palisade.js';

const PASSWORD = 'correct horse battery staple';

interface ListedUser {
  id: string;
  username: string;
  role: string;
  totp_enabled: boolean;
  disabled: boolean;
  created_at: string;
  last_login_at: string | null;
}

function cli(home: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(['--home', home, ...args], {
    env: { PALISADE_SCRYPT_N: '1024', PALISADE_PASSWORD: PASSWORD, ...env },
  });
}

async function listed(home: string): Promise<ListedUser[]> {
  const result = await cli(home, ['users', 'list', '--json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ListedUser[];
}

async function withStore<T>(
  home: string,
  body: (store: Awaited<ReturnType<typeof openStore>>) => T,
) {
  const store = await openStore(home);
  try {
    return body(store);
  } finally {
    await store.close();
  }
}

describe('palisade users', () => {
  const home = tempHome('palisade-cli-users-');

  before(async () => {
    const admin = await cli(home, ['users', 'create', 'alice', '--admin']);
    assert.equal(admin.code, 0, admin.stderr);
    assert.match(admin.stdout, /^created admin "alice" \([0-9a-f-]{36}\)\n$/);
    const user = await cli(home, ['users', 'create', 'bob']);
    assert.equal(user.code, 0, user.stderr);
    assert.match(user.stdout, /^created user "bob"/);
  });

  test('create stores a hashed password, never the password, and audits as cli', async () => {
    const users = await listed(home);
    assert.deepEqual(
      users.map((u) => [u.username, u.role, u.totp_enabled, u.disabled]),
      [
        ['alice', 'admin', false, false],
        ['bob', 'user', false, false],
      ],
    );
    const hash = await withStore(home, (store) =>
      store.sqlite.prepare("select password_hash from user where username = 'alice'").pluck().get(),
    );
    assert.match(String(hash), /^scrypt\$n=1024\$/, 'PALISADE_SCRYPT_N is honoured');
    const log = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.ok(!log.includes(PASSWORD));
    const created = log
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { action: string; actor: string; details?: object })
      .filter((entry) => entry.action === 'user.created');
    assert.deepEqual(
      created.map((e) => [e.actor, e.details]),
      [
        ['cli', { role: 'admin', username: 'alice' }],
        ['cli', { role: 'user', username: 'bob' }],
      ],
    );
  });

  test('list prints an aligned table', async () => {
    const result = await cli(home, ['users', 'list']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0] ?? '', /^USERNAME\s+ROLE\s+2FA\s+STATUS\s+CREATED\s+LAST LOGIN$/);
    assert.match(lines[1] ?? '', /^alice\s+admin\s+off\s+active\s+\d{4}-\d\d-\d\dT\S+\s+-$/);
    assert.match(lines[2] ?? '', /^bob\s+user\s+off\s+active\s/);
    const column = (line: string) => line.indexOf(line.includes('ROLE') ? 'ROLE' : 'admin');
    assert.equal(column(lines[0] ?? ''), column(lines[1] ?? ''), 'columns line up');
    assert.ok(!result.stdout.includes('scrypt'));
  });

  test('weak passwords, taken names and bad names are refused, naming the fix', async () => {
    const weak = await cli(home, ['users', 'create', 'carol'], { PALISADE_PASSWORD: 'short' });
    assert.equal(weak.code, 1);
    assert.match(weak.stderr, /^palisade: Use a password of at least 12 characters/);
    const own = await cli(home, ['users', 'create', 'caroline-smith'], {
      PALISADE_PASSWORD: 'Caroline-Smith',
    });
    assert.equal(own.code, 1);
    assert.match(own.stderr, /must not be the username/);

    const taken = await cli(home, ['users', 'create', 'ALICE']);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /the username "ALICE" is taken/);

    const bad = await cli(home, ['users', 'create', '-x-']);
    assert.equal(bad.code, 2, bad.stderr);
    const spaced = await cli(home, ['users', 'create', 'two words']);
    assert.equal(spaced.code, 2);
    assert.match(spaced.stderr, /is not a username: use 1 to 32 letters/);

    const missing = await cli(home, ['users', 'create']);
    assert.equal(missing.code, 2, 'a missing argument is a usage error');

    const noPassword = await cli(home, ['users', 'create', 'carol'], { PALISADE_PASSWORD: '' });
    assert.equal(noPassword.code, 2);
    assert.match(noPassword.stderr, /set PALISADE_PASSWORD/);

    assert.deepEqual(
      (await listed(home)).map((u) => u.username),
      ['alice', 'bob'],
      'nothing was created',
    );
  });

  test('disable ends sessions and enable undoes it; the last admin is kept', async () => {
    const disabled = await cli(home, ['users', 'disable', 'bob']);
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.match(disabled.stdout, /disabled "bob"/);
    assert.equal((await listed(home)).find((u) => u.username === 'bob')?.disabled, true);
    const table = await cli(home, ['users', 'list']);
    assert.match(table.stdout, /^bob\s+user\s+off\s+disabled\s/m);

    const again = await cli(home, ['users', 'disable', 'BOB']);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /already disabled/);

    const enabled = await cli(home, ['users', 'enable', 'bob']);
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.equal((await listed(home)).find((u) => u.username === 'bob')?.disabled, false);

    const lastAdmin = await cli(home, ['users', 'disable', 'alice']);
    assert.equal(lastAdmin.code, 1);
    assert.match(lastAdmin.stderr, /last active admin; create another first/);
    assert.equal((await listed(home)).find((u) => u.username === 'alice')?.disabled, false);

    const unknown = await cli(home, ['users', 'disable', 'nobody']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^palisade: no user "nobody" \(palisade users list shows them\)/);

    const log = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.match(log, /"action":"user\.disabled","actor":"cli"/);
    assert.match(log, /"action":"user\.enabled","actor":"cli"/);
  });

  test('reset-totp removes the enrollment and recovery codes', async () => {
    await withStore(home, (store) => {
      const id = store.sqlite.prepare("select id from user where username = 'bob'").pluck().get();
      store.sqlite
        .prepare(
          "update user set totp_secret_enc = 'enc$v1$a$b$c', totp_enabled_at = '2026-01-01T00:00:00.000Z' where id = ?",
        )
        .run(id);
      store.sqlite
        .prepare("insert into recovery_code (user_id, code_hash) values (?, 'h')")
        .run(id);
    });
    assert.equal((await listed(home)).find((u) => u.username === 'bob')?.totp_enabled, true);
    const reset = await cli(home, ['users', 'reset-totp', 'bob']);
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(reset.stdout, /reset TOTP of "bob"/);
    assert.equal((await listed(home)).find((u) => u.username === 'bob')?.totp_enabled, false);
    const codes = await withStore(home, (store) =>
      store.sqlite.prepare('select count(*) from recovery_code').pluck().get(),
    );
    assert.equal(codes, 0);
    const nothing = await cli(home, ['users', 'reset-totp', 'bob']);
    assert.equal(nothing.code, 0);
    assert.match(nothing.stdout, /nothing to reset/);
    const unknown = await cli(home, ['users', 'reset-totp', 'nobody']);
    assert.equal(unknown.code, 1);
  });
});

describe('palisade secret rotate', () => {
  test('re-seals stored secrets under a new secret.key; refuses beside a server or with PALISADE_SECRET', async () => {
    const home = tempHome('palisade-cli-secret-');
    const created = await cli(home, ['users', 'create', 'alice', '--admin']);
    assert.equal(created.code, 0, created.stderr);
    const oldKey = readFileSync(join(home, 'secret.key'));
    await withStore(home, (store) => {
      const id = String(store.sqlite.prepare('select id from user').pluck().get());
      createUserSecrets({ store, masterKey: oldKey }).setUpstreamKey(
        id,
        'remote',
        'sk-abcdefgh12345678',
      );
    });

    // A live process holds the pid lock: this test runner stands in for the server.
    writeFileSync(join(home, 'palisade.pid'), `${process.pid}\n`, { mode: 0o600 });
    const busy = await cli(home, ['secret', 'rotate']);
    assert.equal(busy.code, 1);
    assert.match(
      busy.stderr,
      /a Palisade server is running .* stop it, run palisade secret rotate/,
    );
    assert.ok(readFileSync(join(home, 'secret.key')).equals(oldKey), 'the key was not touched');
    writeFileSync(join(home, 'palisade.pid'), '2147483646\n', { mode: 0o600 });

    const env = await cli(home, ['secret', 'rotate'], {
      PALISADE_SECRET: randomBytes(32).toString('hex'),
    });
    assert.equal(env.code, 1);
    assert.match(env.stderr, /PALISADE_SECRET is set.*--new-secret-stdin/);

    const rotated = await cli(home, ['secret', 'rotate']);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /re-sealed 1 secrets under a new master key/);
    const newKey = readFileSync(join(home, 'secret.key'));
    assert.ok(!newKey.equals(oldKey));
    await withStore(home, (store) => {
      const id = String(store.sqlite.prepare('select id from user').pluck().get());
      assert.equal(
        createUserSecrets({ store, masterKey: newKey }).upstreamKeyFor(id, 'remote'),
        'sk-abcdefgh12345678',
      );
      assert.throws(() =>
        createUserSecrets({ store, masterKey: oldKey }).upstreamKeyFor(id, 'remote'),
      );
    });
    const log = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.match(
      log,
      /"action":"secret\.rotated","actor":"cli","details":\{"count":1,"source":"file"\}/,
    );
    assert.ok(!log.includes(newKey.toString('hex')));
  });
});

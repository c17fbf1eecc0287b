import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createUser } from '../auth/index.js';
import { deriveKey, loadMasterKey, secretBox, type KeyPurpose } from '../crypto/index.js';
import { addUpstream } from '../gateway/index.js';
import { createUserSecrets, userSecretContext } from '../settings/index.js';
import { openStore, type Store } from '../store/index.js';
import { keyFiles, rotateMasterKey, RotationError, settleKeyFiles } from './index.js';

const SCRYPT = { n: 1024, r: 8, p: 1 };
const UPSTREAM_KEY = 'sk-upstream-0123456789abcdef';
const TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const USER_KEY = 'sk-or-v1-user-key-0123456789';
const MCP_TOKEN = 'mcp-token-0123456789abcdef';

interface Sealed {
  upstream: string;
  totp: string;
  userKey: string;
  mcpToken: string;
}

interface Fixture {
  home: string;
  store: Store;
  oldKey: Buffer;
  userId: string;
  userKeyId: string;
  mcpId: string;
}

/** A home with one value of each kind sealed under its (file) master key. */
async function fixture(): Promise<Fixture> {
  const home = mkdtempSync(join(tmpdir(), 'palisade-rotate-'));
  const store = await openStore(home);
  const oldKey = loadMasterKey(home);
  await addUpstream(store, oldKey, {
    name: 'remote',
    url: 'http://127.0.0.1:1234',
    apiKey: UPSTREAM_KEY,
  });
  const user = await createUser(
    store,
    { username: 'alice', password: 'correct horse battery staple', role: 'admin' },
    SCRYPT,
  );
  const totp = secretBox(deriveKey(oldKey, 'totp')).seal(TOTP_SECRET, `totp:${user.id}`);
  store.sqlite.prepare('update user set totp_secret_enc = ? where id = ?').run(totp, user.id);
  const secrets = createUserSecrets({ store, masterKey: oldKey });
  secrets.setUpstreamKey(user.id, 'openrouter', USER_KEY);
  const mcp = secrets.addMcpServer(user.id, {
    name: 'Docs',
    url: 'https://mcp.example.com/',
    token: MCP_TOKEN,
  });
  const userKeyId = store.sqlite
    .prepare<[], string>("select id from user_secret where kind = 'upstream_key'")
    .pluck()
    .get();
  assert.ok(userKeyId);
  return { home, store, oldKey, userId: user.id, userKeyId, mcpId: mcp.id };
}

function readSealed(store: Store, f: Fixture): Sealed {
  const one = (sql: string, ...params: string[]) =>
    store.sqlite
      .prepare<string[], string>(sql)
      .pluck()
      .get(...params) as string;
  return {
    upstream: one("select api_key_enc from upstream where name = 'remote'"),
    totp: one('select totp_secret_enc from user where id = ?', f.userId),
    userKey: one('select secret_enc from user_secret where id = ?', f.userKeyId),
    mcpToken: one('select secret_enc from user_secret where id = ?', f.mcpId),
  };
}

function openWith(master: Buffer, f: Fixture, sealed: Sealed): Sealed {
  const open = (purpose: KeyPurpose, value: string, context: string) =>
    secretBox(deriveKey(master, purpose)).open(value, context);
  return {
    upstream: open('upstream-keys', sealed.upstream, 'upstream:remote'),
    totp: open('totp', sealed.totp, `totp:${f.userId}`),
    userKey: open('user-secrets', sealed.userKey, userSecretContext(f.userId, f.userKeyId)),
    mcpToken: open('user-secrets', sealed.mcpToken, userSecretContext(f.userId, f.mcpId)),
  };
}

/** For each value, whether `master` opens it. */
function opensWith(master: Buffer, f: Fixture, sealed: Sealed): boolean[] {
  const kinds: Array<[KeyPurpose, string, string]> = [
    ['upstream-keys', sealed.upstream, 'upstream:remote'],
    ['totp', sealed.totp, `totp:${f.userId}`],
    ['user-secrets', sealed.userKey, userSecretContext(f.userId, f.userKeyId)],
    ['user-secrets', sealed.mcpToken, userSecretContext(f.userId, f.mcpId)],
  ];
  return kinds.map(([purpose, value, context]) => {
    try {
      secretBox(deriveKey(master, purpose)).open(value, context);
      return true;
    } catch {
      return false;
    }
  });
}

const PLAIN: Sealed = {
  upstream: UPSTREAM_KEY,
  totp: TOTP_SECRET,
  userKey: USER_KEY,
  // An MCP server's URL is sealed with its token.
  mcpToken: JSON.stringify({ url: 'https://mcp.example.com/', token: MCP_TOKEN }),
};

test('rotation re-seals all three kinds under a new key in secret.key; the old key opens none', async () => {
  const f = await fixture();
  try {
    assert.deepEqual(openWith(f.oldKey, f, readSealed(f.store, f)), PLAIN);
    const result = rotateMasterKey({ home: f.home, store: f.store });
    assert.equal(result.resealed, 4);
    assert.equal(result.settled, 'clean');

    const files = keyFiles(f.home);
    const newKey = readFileSync(files.current);
    assert.equal(newKey.length, 32);
    assert.ok(!newKey.equals(f.oldKey));
    assert.ok(newKey.equals(result.newKey));
    assert.equal(statSync(files.current).mode & 0o777, 0o600);
    assert.ok(!existsSync(files.staged) && !existsSync(files.previous), 'no leftovers');

    const sealed = readSealed(f.store, f);
    assert.deepEqual(openWith(newKey, f, sealed), PLAIN);
    assert.deepEqual(opensWith(f.oldKey, f, sealed), [false, false, false, false]);
    // The server's own loader reads the new key.
    assert.ok(loadMasterKey(f.home).equals(newKey));
  } finally {
    await f.store.close();
  }
});

test('a value that does not open aborts the rotation with nothing changed', async () => {
  const f = await fixture();
  try {
    // A sealed value moved to another row: it no longer matches its context.
    const sealed = readSealed(f.store, f);
    f.store.sqlite
      .prepare('update user_secret set secret_enc = ? where id = ?')
      .run(sealed.userKey, f.mcpId);
    const before = JSON.stringify([
      f.store.sqlite.prepare('select * from upstream').all(),
      f.store.sqlite.prepare('select * from user').all(),
      f.store.sqlite.prepare('select * from user_secret').all(),
    ]);
    assert.throws(
      () => rotateMasterKey({ home: f.home, store: f.store }),
      (error: unknown) =>
        error instanceof RotationError &&
        /MCP server token "Docs".*does not open with the current master key/.test(error.message),
    );
    const after = JSON.stringify([
      f.store.sqlite.prepare('select * from upstream').all(),
      f.store.sqlite.prepare('select * from user').all(),
      f.store.sqlite.prepare('select * from user_secret').all(),
    ]);
    assert.equal(after, before, 'the database is unchanged');
    const files = keyFiles(f.home);
    assert.ok(readFileSync(files.current).equals(f.oldKey), 'secret.key is unchanged');
    assert.ok(!existsSync(files.staged) && !existsSync(files.previous), 'no files were staged');
  } finally {
    await f.store.close();
  }
});

test('with PALISADE_SECRET, the database is re-sealed under the given key and no file is touched', async () => {
  const f = await fixture();
  try {
    const envKey = randomBytes(32);
    // Seal under the env key first, as a server started with PALISADE_SECRET would have.
    rotateMasterKey({ home: f.home, store: f.store, currentKey: f.oldKey, newKey: envKey });
    const fileBefore = readFileSync(keyFiles(f.home).current);
    const next = randomBytes(32);
    const result = rotateMasterKey({
      home: f.home,
      store: f.store,
      currentKey: envKey,
      newKey: next,
    });
    assert.equal(result.resealed, 4);
    assert.deepEqual(openWith(next, f, readSealed(f.store, f)), PLAIN);
    assert.deepEqual(opensWith(envKey, f, readSealed(f.store, f)), [false, false, false, false]);
    assert.ok(readFileSync(keyFiles(f.home).current).equals(fileBefore), 'secret.key untouched');
    assert.ok(!existsSync(keyFiles(f.home).staged));
    assert.throws(
      () => rotateMasterKey({ home: f.home, store: f.store, currentKey: next }),
      RotationError,
    );
  } finally {
    await f.store.close();
  }
});

test('a rotation cut off after its commit is finished by the next settle', async () => {
  const f = await fixture();
  try {
    rotateMasterKey({ home: f.home, store: f.store });
    const files = keyFiles(f.home);
    const newKey = readFileSync(files.current);
    // The state right after the commit, before the rename: old key still in secret.key.
    writeFileSync(files.staged, newKey, { mode: 0o600 });
    writeFileSync(files.previous, f.oldKey, { mode: 0o600 });
    writeFileSync(files.current, f.oldKey, { mode: 0o600 });

    assert.equal(settleKeyFiles(f.home, f.store), 'finished');
    assert.ok(readFileSync(files.current).equals(newKey));
    assert.ok(!existsSync(files.staged) && !existsSync(files.previous));
    assert.deepEqual(openWith(newKey, f, readSealed(f.store, f)), PLAIN);
    assert.equal(settleKeyFiles(f.home, f.store), 'clean');
  } finally {
    await f.store.close();
  }
});

test('a rotation cut off before its commit is rolled back by the next rotation, which then runs', async () => {
  const f = await fixture();
  try {
    const files = keyFiles(f.home);
    // Staged files of a rotation that never committed: the database is still under the old key.
    writeFileSync(files.staged, randomBytes(32), { mode: 0o600 });
    writeFileSync(files.previous, f.oldKey, { mode: 0o600 });
    const result = rotateMasterKey({ home: f.home, store: f.store });
    assert.equal(result.settled, 'rolled_back');
    assert.deepEqual(openWith(readFileSync(files.current), f, readSealed(f.store, f)), PLAIN);
    assert.ok(!existsSync(files.staged) && !existsSync(files.previous));
  } finally {
    await f.store.close();
  }
});

test('when no key file opens the database, settle changes nothing and says so', async () => {
  const f = await fixture();
  try {
    const files = keyFiles(f.home);
    const stray = randomBytes(32);
    writeFileSync(files.staged, stray, { mode: 0o600 });
    writeFileSync(files.current, randomBytes(32), { mode: 0o600 });
    assert.throws(() => settleKeyFiles(f.home, f.store), /restore .* from a backup/);
    assert.ok(readFileSync(files.staged).equals(stray), 'every file is kept');
  } finally {
    await f.store.close();
  }
});

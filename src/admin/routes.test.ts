import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import {
  startApiHarness,
  testUserById,
  type ApiAnswer,
  type ApiHarness,
  type CallOptions,
} from '../../test/support/api-harness.js';
import { createAuditLog, listAuditEntries } from '../audit/index.js';
import { createKeyRing, createUser, findUser, type KeyRing } from '../auth/index.js';
import { createUpstreamRegistry, type UpstreamRegistry } from '../gateway/index.js';
import { openStore, type Store, type UserRole } from '../store/index.js';
import { admin, isTotpRequired } from './index.js';

type Answer = ApiAnswer;

interface AdminUser {
  id: string;
  username: string;
  role: UserRole;
  totp_enabled: boolean;
  disabled: boolean;
}

const SCRYPT = { n: 1024, r: 8, p: 1 };
const PASSWORD = 'correct horse battery staple';

let home: string;
let store: Store;
let keys: KeyRing;
let registry: UpstreamRegistry;
let harness: ApiHarness;
let root: string;
let carol: string;

before(async () => {
  home = mkdtempSync(join(tmpdir(), 'palisade-admin-'));
  store = await openStore(home);
  const masterKey = randomBytes(32);
  const audit = createAuditLog(store, home);
  keys = createKeyRing(store);
  registry = createUpstreamRegistry({
    store,
    masterKey,
    logger: pino({ level: 'silent' }),
    configured: [{ name: 'configured', url: 'http://127.0.0.1:9' }],
    healthIntervalMs: 3_600_000,
    probePorts: [],
  });
  await registry.start(false);
  root = (await createUser(store, { username: 'root', password: PASSWORD, role: 'admin' }, SCRYPT))
    .id;
  carol = (await createUser(store, { username: 'carol', password: PASSWORD, role: 'user' }, SCRYPT))
    .id;

  harness = await startApiHarness({
    user: testUserById(store),
    routes: (api) =>
      api.register(admin, {
        prefix: '/admin',
        store,
        audit,
        keys,
        registry,
        masterKey,
        scrypt: SCRYPT,
      }),
  });
});

after(async () => {
  await harness.close();
  await registry.close();
  keys.close();
  await store.close();
});

const call = (method: string, path: string, options?: CallOptions) =>
  harness.call(method, path, options);

const errorCode = (answer: Answer) => (answer.json as { error: { code: string } }).error.code;

/** Everything an admin route could change, as one comparable string. */
function snapshot(): string {
  const all = (table: string) => store.sqlite.prepare(`select * from ${table}`).all();
  return JSON.stringify([
    all('user'),
    all('api_key'),
    all('upstream'),
    all('instance_setting'),
    all('audit_entry'),
  ]);
}

async function newUser(username: string, role: UserRole = 'user'): Promise<string> {
  return (await createUser(store, { username, password: PASSWORD, role }, SCRYPT)).id;
}

const ROUTES: Array<[string, string, unknown?]> = [
  ['GET', '/api/admin/users'],
  ['POST', '/api/admin/users', { username: 'mallory', password: PASSWORD, role: 'admin' }],
  ['PATCH', '/api/admin/users/ROOT', { role: 'user' }],
  ['PATCH', '/api/admin/users/ROOT', { disabled: true }],
  ['POST', '/api/admin/users/ROOT/reset-totp', {}],
  ['GET', '/api/admin/settings'],
  ['PUT', '/api/admin/settings', { require_totp: true }],
  ['GET', '/api/admin/keys'],
  ['POST', '/api/admin/keys', { name: 'stolen', scope: 'admin' }],
  ['DELETE', '/api/admin/keys/KEY'],
  ['GET', '/api/admin/upstreams'],
  ['POST', '/api/admin/upstreams', { name: 'evil', url: 'http://127.0.0.1:1' }],
  ['DELETE', '/api/admin/upstreams/STORED'],
  ['GET', '/api/admin/audit'],
  ['GET', '/api/admin/no-such-route'],
];

describe('admin API: who may use it', () => {
  test('signed out: 401 on every route, before the body is read, and nothing changes', async () => {
    const before = snapshot();
    for (const [method, path, body] of ROUTES) {
      const answer = await call(method, path.replace('ROOT', root), { body });
      assert.equal(answer.status, 401, `${method} ${path}: ${answer.text}`);
      assert.equal(errorCode(answer), 'not_signed_in');
    }
    const garbled = await call('POST', '/api/admin/users', { raw: '{"username":' });
    assert.equal(garbled.status, 401, 'refused before the body is parsed');
    assert.equal(snapshot(), before);
  });

  test('a signed-in user who is not an admin: 403 on every route, and nothing changes', async () => {
    const key = await call('POST', '/api/admin/keys', { user: root, body: { name: 'existing' } });
    const keyId = (key.json as { api_key: { id: string } }).api_key.id;
    await call('POST', '/api/admin/upstreams', {
      user: root,
      body: { name: 'stored', url: 'http://127.0.0.1:2' },
    });
    const before = snapshot();
    for (const [method, path, body] of ROUTES) {
      const url = path.replace('ROOT', root).replace('KEY', keyId).replace('STORED', 'stored');
      const answer = await call(method, url, { user: carol, body });
      assert.equal(answer.status, 403, `${method} ${path}: ${answer.text}`);
      assert.equal(errorCode(answer), 'admin_required');
      assert.ok(!answer.text.includes('password_hash'));
    }
    assert.equal(snapshot(), before);
  });
});

describe('admin API: users', () => {
  test('lists users without hashes or secrets', async () => {
    const answer = await call('GET', '/api/admin/users', { user: root });
    assert.equal(answer.status, 200);
    const { users } = answer.json as { users: AdminUser[] };
    assert.ok(users.some((u) => u.username === 'root' && u.role === 'admin'));
    assert.ok(!/password_hash|scrypt\$|totp_secret/.test(answer.text));
    assert.deepEqual(Object.keys(users[0] as object).sort(), [
      'created_at',
      'disabled',
      'id',
      'last_login_at',
      'role',
      'totp_enabled',
      'username',
    ]);
  });

  test('creates a user; refuses weak passwords, taken names and malformed bodies', async () => {
    const created = await call('POST', '/api/admin/users', {
      user: root,
      body: { username: 'dave', password: PASSWORD, role: 'user' },
    });
    assert.equal(created.status, 201, created.text);
    const dave = created.json as AdminUser;
    assert.equal(dave.username, 'dave');
    assert.equal(dave.role, 'user');
    assert.equal(dave.disabled, false);
    assert.ok(!created.text.includes(PASSWORD));

    const weak = await call('POST', '/api/admin/users', {
      user: root,
      body: { username: 'erin', password: 'short', role: 'user' },
    });
    assert.equal(weak.status, 400);
    assert.equal(errorCode(weak), 'weak_password');
    assert.match(weak.text, /at least 12 characters/);

    const taken = await call('POST', '/api/admin/users', {
      user: root,
      body: { username: 'DAVE', password: PASSWORD, role: 'user' },
    });
    assert.equal(taken.status, 409);
    assert.equal(errorCode(taken), 'username_taken');

    const before = snapshot();
    const bad: unknown[] = [
      { username: 'frank', password: PASSWORD },
      { username: 'frank', password: PASSWORD, role: 'root' },
      { username: 'frank', password: PASSWORD, role: 'user', disabled: false },
      { username: 42, password: PASSWORD, role: 'user' },
      { username: 'frank', password: 'p'.repeat(2000), role: 'user' },
      { username: 'has space', password: PASSWORD, role: 'user' },
      [],
    ];
    for (const body of bad) {
      const answer = await call('POST', '/api/admin/users', { user: root, body });
      assert.equal(answer.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${answer.text}`);
    }
    assert.equal(snapshot(), before, 'nothing stored, nothing audited');

    const audited = listAuditEntries(store, { limit: 10 }).find((e) => e.action === 'user.created');
    assert.equal(audited?.actor, 'user:root');
    assert.equal(audited?.target, dave.id);
    assert.deepEqual(audited?.details, { role: 'user', username: 'dave' });
    assert.equal(audited?.ip, '127.0.0.1');
    assert.ok(audited?.request_id);
  });

  test('disables, re-enables, promotes and demotes another user, auditing each', async () => {
    const gina = await newUser('gina');
    const disabled = await call('PATCH', `/api/admin/users/${gina}`, {
      user: root,
      body: { disabled: true },
    });
    assert.equal(disabled.status, 200, disabled.text);
    assert.equal((disabled.json as AdminUser).disabled, true);
    assert.ok(findUser(store, gina)?.disabled_at);

    const promoted = await call('PATCH', `/api/admin/users/${gina}`, {
      user: root,
      body: { disabled: false, role: 'admin' },
    });
    assert.equal((promoted.json as AdminUser).disabled, false);
    assert.equal((promoted.json as AdminUser).role, 'admin');

    const demoted = await call('PATCH', `/api/admin/users/${gina}`, {
      user: root,
      body: { role: 'user' },
    });
    assert.equal((demoted.json as AdminUser).role, 'user');

    const actions = listAuditEntries(store, { limit: 4 })
      .filter((e) => e.target === gina)
      .map((e) => [e.action, e.actor, e.details?.username]);
    assert.deepEqual(actions, [
      ['user.role_changed', 'user:root', 'gina'],
      ['user.enabled', 'user:root', 'gina'],
      ['user.role_changed', 'user:root', 'gina'],
      ['user.disabled', 'user:root', 'gina'],
    ]);

    const before = snapshot();
    const same = await call('PATCH', `/api/admin/users/${gina}`, {
      user: root,
      body: { role: 'user' },
    });
    assert.equal(same.status, 200);
    assert.equal(snapshot(), before, 'a change to the same value is no change, and not audited');
  });

  test('an admin cannot disable or demote themselves (409)', async () => {
    const second = await newUser('second-admin', 'admin');
    const before = snapshot();
    for (const body of [{ disabled: true }, { role: 'user' }, { disabled: true, role: 'user' }]) {
      const answer = await call('PATCH', `/api/admin/users/${root}`, { user: root, body });
      assert.equal(answer.status, 409, answer.text);
      assert.equal(errorCode(answer), 'cannot_change_self');
    }
    assert.equal(snapshot(), before);
    store.sqlite.prepare('delete from user where id = ?').run(second);
  });

  test('the last active admin cannot be demoted or disabled, even by a racing admin (409)', async () => {
    const other = await newUser('other-admin', 'admin');
    // root demotes other-admin; other-admin's request, authorised a moment earlier as an
    // admin, then tries to demote root: that would leave no admin.
    const first = await call('PATCH', `/api/admin/users/${other}`, {
      user: root,
      body: { role: 'user' },
    });
    assert.equal(first.status, 200, first.text);
    const before = snapshot();
    for (const body of [{ role: 'user' }, { disabled: true }]) {
      const answer = await call('PATCH', `/api/admin/users/${root}`, {
        user: other,
        role: 'admin',
        body,
      });
      assert.equal(answer.status, 409, answer.text);
      assert.equal(errorCode(answer), 'last_admin');
    }
    assert.equal(snapshot(), before);
    assert.equal(findUser(store, root)?.role, 'admin');
  });

  test('PATCH refuses malformed bodies and unknown users', async () => {
    const before = snapshot();
    const bad: unknown[] = [
      {},
      { disabled: 'yes' },
      { role: 'superuser' },
      { role: 'user', password: 'x' },
      null,
    ];
    for (const body of bad) {
      const answer = await call('PATCH', `/api/admin/users/${carol}`, { user: root, body });
      assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${answer.text}`);
    }
    const unknown = await call('PATCH', '/api/admin/users/no-such-user', {
      user: root,
      body: { disabled: true },
    });
    assert.equal(unknown.status, 404);
    assert.equal(errorCode(unknown), 'user_not_found');
    assert.equal(snapshot(), before);
  });

  test('resets a user’s TOTP', async () => {
    store.sqlite
      .prepare(
        "update user set totp_secret_enc = 'enc$v1$a$b$c', totp_enabled_at = '2026-01-01T00:00:00.000Z' where id = ?",
      )
      .run(carol);
    const answer = await call('POST', `/api/admin/users/${carol}/reset-totp`, {
      user: root,
      body: {},
    });
    assert.equal(answer.status, 200, answer.text);
    assert.equal((answer.json as AdminUser).totp_enabled, false);
    assert.equal(findUser(store, carol)?.totp_secret_enc, null);
    const entry = listAuditEntries(store, { limit: 1 })[0];
    assert.equal(entry?.action, 'user.totp_reset');
    assert.equal(entry?.target, carol);

    const unknown = await call('POST', '/api/admin/users/nobody/reset-totp', {
      user: root,
      body: {},
    });
    assert.equal(unknown.status, 404);
    const extra = await call('POST', `/api/admin/users/${carol}/reset-totp`, {
      user: root,
      body: { also: 'this' },
    });
    assert.equal(extra.status, 400);
  });
});

describe('admin API: instance settings', () => {
  test('require_totp is off by default, switched by PUT, read by isTotpRequired', async () => {
    const initial = await call('GET', '/api/admin/settings', { user: root });
    assert.deepEqual(initial.json, { require_totp: false });
    assert.equal(isTotpRequired(store), false);

    // Not before the admin has it: they would lock themselves out of these pages.
    const early = await call('PUT', '/api/admin/settings', {
      user: root,
      body: { require_totp: true },
    });
    assert.equal(early.status, 409);
    assert.equal(isTotpRequired(store), false);
    store.sqlite
      .prepare('update user set totp_enabled_at = ? where username = ?')
      .run(new Date().toISOString(), 'root');

    const on = await call('PUT', '/api/admin/settings', {
      user: root,
      body: { require_totp: true },
    });
    assert.deepEqual(on.json, { require_totp: true });
    assert.equal(isTotpRequired(store), true);
    const entry = listAuditEntries(store, { limit: 1 })[0];
    assert.equal(entry?.action, 'settings.updated');
    assert.deepEqual(entry?.details, { require_totp: true });

    const before = snapshot();
    for (const body of [{ require_totp: 'yes' }, { require_totp: 1 }, { theme: 'dark' }, []]) {
      const answer = await call('PUT', '/api/admin/settings', { user: root, body });
      assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${answer.text}`);
    }
    assert.equal(snapshot(), before);

    await call('PUT', '/api/admin/settings', { user: root, body: { require_totp: false } });
    assert.equal(isTotpRequired(store), false);
  });
});

describe('admin API: keys', () => {
  test('creates a key answered once, the key ring knows it at once, revokes it', async () => {
    assert.equal(keys.check('pk_' + 'a'.repeat(43)).ok, false, 'ring loaded before the change');
    const created = await call('POST', '/api/admin/keys', {
      user: root,
      body: { name: 'ci-bot', models: ['llama*'], expires: '30d', rpm: 60 },
    });
    assert.equal(created.status, 201, created.text);
    const { key, api_key: info } = created.json as {
      key: string;
      api_key: { id: string; hint: string; expires_at: string | null; models: string[] };
    };
    assert.match(key, /^pk_[A-Za-z0-9_-]{43}$/);
    assert.equal(info.hint, key.slice(-4));
    assert.ok(info.expires_at);
    assert.deepEqual(info.models, ['llama*']);
    assert.equal(keys.check(key).ok, true, 'the ring was invalidated');

    const list = await call('GET', '/api/admin/keys', { user: root });
    assert.ok(!list.text.includes(key), 'a listing never holds the key');
    assert.ok((list.json as { keys: Array<{ id: string }> }).keys.some((k) => k.id === info.id));

    const log = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.ok(!log.includes(key), 'the key is not in the audit log');
    const entry = listAuditEntries(store, { limit: 1 })[0];
    assert.equal(entry?.action, 'key.created');
    assert.equal(entry?.actor, 'user:root');

    const revoked = await call('DELETE', `/api/admin/keys/${info.id}`, { user: root });
    assert.equal(revoked.status, 204);
    const check = keys.check(key);
    assert.equal(check.ok, false);
    assert.equal(check.ok ? undefined : check.reason, 'revoked');
    assert.equal(listAuditEntries(store, { limit: 1 })[0]?.action, 'key.revoked');

    const again = await call('DELETE', `/api/admin/keys/${info.id}`, { user: root });
    assert.equal(again.status, 204, 'revoking twice is fine');
    const unknown = await call('DELETE', '/api/admin/keys/key_nope', { user: root });
    assert.equal(unknown.status, 404);
  });

  test('refuses malformed key requests and taken names', async () => {
    await call('POST', '/api/admin/keys', { user: root, body: { name: 'taken' } });
    const taken = await call('POST', '/api/admin/keys', { user: root, body: { name: 'taken' } });
    assert.equal(taken.status, 409);
    assert.equal(errorCode(taken), 'key_name_taken');

    const before = snapshot();
    const bad: unknown[] = [
      { name: 'bad name' },
      { name: 'x', expires: 'soon' },
      { name: 'x', expires: '0s' },
      { name: 'x', expires: '40000d' },
      { name: 'x', rpm: 0 },
      { name: 'x', rpm: 1.5 },
      { name: 'x', scope: 'root' },
      { name: 'x', models: [] },
      { name: 'x', models: 'llama' },
      { name: 'x', owner: 'someone' },
      {},
    ];
    for (const body of bad) {
      const answer = await call('POST', '/api/admin/keys', { user: root, body });
      assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${answer.text}`);
    }
    assert.equal(snapshot(), before);
  });
});

describe('admin API: upstreams', () => {
  test('lists the live upstreams with health, adds and removes stored ones', async () => {
    const added = await call('POST', '/api/admin/upstreams', {
      user: root,
      body: { name: 'lab', url: 'http://127.0.0.1:1234/v1' },
    });
    assert.equal(added.status, 201, added.text);
    const info = added.json as { name: string; source: string; healthy: boolean };
    assert.equal(info.name, 'lab');
    assert.equal(info.source, 'store');
    assert.equal(typeof info.healthy, 'boolean');
    assert.equal(listAuditEntries(store, { limit: 1 })[0]?.action, 'upstream.added');

    const list = await call('GET', '/api/admin/upstreams', { user: root });
    const upstreams = (list.json as { upstreams: Array<{ name: string; source: string }> })
      .upstreams;
    assert.deepEqual(
      upstreams.filter((u) => u.name === 'configured' || u.name === 'lab').map((u) => u.source),
      ['config', 'store'],
    );

    const dup = await call('POST', '/api/admin/upstreams', {
      user: root,
      body: { name: 'configured', url: 'http://127.0.0.1:5' },
    });
    assert.equal(dup.status, 409);
    const dupStored = await call('POST', '/api/admin/upstreams', {
      user: root,
      body: { name: 'lab', url: 'http://127.0.0.1:5' },
    });
    assert.equal(dupStored.status, 409);

    const configured = await call('DELETE', '/api/admin/upstreams/configured', { user: root });
    assert.equal(configured.status, 409);
    assert.equal(errorCode(configured), 'upstream_not_removable');

    const removed = await call('DELETE', '/api/admin/upstreams/lab', { user: root });
    assert.equal(removed.status, 204);
    assert.equal(listAuditEntries(store, { limit: 1 })[0]?.action, 'upstream.removed');
    const gone = await call('DELETE', '/api/admin/upstreams/lab', { user: root });
    assert.equal(gone.status, 404);
  });

  test('refuses upstream URLs the SSRF guard refuses, and malformed bodies', async () => {
    const before = snapshot();
    const bad: unknown[] = [
      { name: 'meta', url: 'http://169.254.169.254/' },
      { name: 'creds', url: 'http://user:pw@127.0.0.1:1234' },
      { name: 'scheme', url: 'file:///etc/passwd' },
      { name: 'bad name!', url: 'http://127.0.0.1:1234' },
      { name: 'extra', url: 'http://127.0.0.1:1234', api_key: 'sk-x' },
      { name: 'long', url: `http://127.0.0.1/${'x'.repeat(2100)}` },
      { url: 'http://127.0.0.1:1234' },
    ];
    for (const body of bad) {
      const answer = await call('POST', '/api/admin/upstreams', { user: root, body });
      assert.equal(answer.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${answer.text}`);
      assert.ok(!answer.text.includes('pw@'));
    }
    assert.equal(snapshot(), before);
  });
});

describe('admin API: audit log', () => {
  test('filters by action prefix and exact actor, and pages with next_before', async () => {
    const all = await call('GET', '/api/admin/audit?limit=200', { user: root });
    assert.equal(all.status, 200);
    const entries = (all.json as { entries: Array<{ seq: number; action: string }> }).entries;
    assert.ok(entries.length > 5);
    assert.ok(entries.every((e, i) => i === 0 || (entries[i - 1]?.seq ?? 0) > e.seq));

    const users = await call('GET', '/api/admin/audit?action=user.&limit=200', { user: root });
    const userActions = (users.json as { entries: Array<{ action: string }> }).entries;
    assert.ok(userActions.length > 0);
    assert.ok(userActions.every((e) => e.action.startsWith('user.')));

    createAuditLog(store, home).record({ action: 'user.created', actor: 'cli', target: 'x' });
    const byCli = await call('GET', '/api/admin/audit?actor=cli', { user: root });
    const cliEntries = (byCli.json as { entries: Array<{ actor: string }> }).entries;
    assert.deepEqual(
      cliEntries.map((e) => e.actor),
      ['cli'],
    );
    const prefixActor = await call('GET', '/api/admin/audit?actor=user:ro', { user: root });
    assert.deepEqual((prefixActor.json as { entries: unknown[] }).entries, [], 'actor is exact');

    const first = (await call('GET', '/api/admin/audit?limit=2', { user: root })).json as {
      entries: Array<{ seq: number }>;
      next_before: number | null;
    };
    assert.equal(first.entries.length, 2);
    assert.equal(first.next_before, first.entries[1]?.seq);
    const second = (
      await call('GET', `/api/admin/audit?limit=2&before=${first.next_before}`, { user: root })
    ).json as { entries: Array<{ seq: number }> };
    assert.ok(second.entries.every((e) => e.seq < (first.next_before ?? 0)));
    const last = (await call('GET', '/api/admin/audit?limit=200&before=3', { user: root }))
      .json as { entries: unknown[]; next_before: number | null };
    assert.equal(last.entries.length, 2);
    assert.equal(last.next_before, null);
  });

  test('refuses malformed queries', async () => {
    for (const query of [
      'limit=0',
      'limit=201',
      'limit=ten',
      'before=-1',
      'action=USER',
      'action=user.&action=key.',
      'order=asc',
    ]) {
      const answer = await call('GET', `/api/admin/audit?${query}`, { user: root });
      assert.equal(answer.status, 400, `${query}: ${answer.text}`);
    }
  });
});

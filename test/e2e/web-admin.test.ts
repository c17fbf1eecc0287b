import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { totpCode } from '../../src/auth/index.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import {
  assertApiError,
  enrollTotp,
  FAST_SCRYPT_ENV,
  newSignedInUser,
  PASSWORD,
  signIn,
  snapshot,
  userIdOf,
  WebClient,
  type WebResponse,
} from '../support/web.js';

/*
 * The admin pages' API through real sign-in as an admin: users, instance settings, API keys
 * (checked against the real /v1 gateway), upstreams (checked in the model lists at once)
 * and the audit log of all of it.
 */

const ERIN_PASSWORD = 'erin picks a long passphrase';
const FRANK_PASSWORD = 'frank has his own passphrase';

interface AdminUser {
  id: string;
  username: string;
  role: 'admin' | 'user';
  totp_enabled: boolean;
  disabled: boolean;
  created_at: string;
  last_login_at: string | null;
}
interface ApiKeyInfo {
  id: string;
  name: string;
  owner: string | null;
  scope: string;
  hint: string;
  last_used_at: string | null;
  revoked_at: string | null;
}
interface AuditEntry {
  seq: number;
  ts: string;
  action: string;
  actor: string;
  target?: string;
  ip?: string;
  request_id?: string;
  details?: Record<string, unknown>;
}
interface AuditPage {
  entries: AuditEntry[];
  next_before: number | null;
}

/** A client with no session, to call /v1 as an API client would. */
async function v1Models(palisade: TestPalisade, key?: string): Promise<WebResponse> {
  const response = await fetch(`${palisade.url}/v1/models`, {
    headers: key === undefined ? {} : { authorization: `Bearer ${key}` },
  });
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, headers: response.headers, body, text };
}

function modelIds(response: WebResponse): string[] {
  const body = response.body as { data?: Array<{ id: string }>; models?: Array<{ id: string }> };
  return (body.data ?? body.models ?? []).map((m) => m.id);
}

/** A gateway error in OpenAI's shape. */
function assertGatewayError(response: WebResponse, status: number, code: string): void {
  assert.equal(response.status, status, response.text);
  assert.equal((response.body as { error?: { code?: string } }).error?.code, code, response.text);
}

describe('the admin API through real sign-in', () => {
  let palisade: TestPalisade;
  let local: MockUpstream;
  let second: MockUpstream;
  let root: WebClient;
  /** Everything secret seen during the suite, looked for in the logs and audit log at the end. */
  const secrets: string[] = [PASSWORD, ERIN_PASSWORD, FRANK_PASSWORD];
  /** The request id of each change root made, by audit action. */
  const changes: Array<{ action: string; requestId: string; target?: string }> = [];
  let erinId: string;

  function remember(action: string, response: WebResponse, target?: string): void {
    const requestId = response.headers.get('x-request-id');
    assert.ok(requestId, 'a request id');
    changes.push({ action, requestId, ...(target === undefined ? {} : { target }) });
  }

  function rememberSession(client: WebClient): void {
    for (const value of client.cookies.values()) secrets.push(value);
  }

  before(async () => {
    local = await startMockUpstream({ models: ['mock-small'] });
    second = await startMockUpstream({ models: ['second-model-a', 'second-model-b'] });
    palisade = await startPalisade({
      env: {
        ...FAST_SCRYPT_ENV,
        PALISADE_UPSTREAMS: `local=${local.url}`,
        // Far beyond any test: nothing here may wait for a health round.
        PALISADE_HEALTH_INTERVAL: '12h',
      },
    });
    root = await newSignedInUser(palisade, 'root', 'admin');
    rememberSession(root);
  });

  after(async () => {
    await palisade.close();
    await local.close();
    await second.close();
  });

  async function adminUser(id: string): Promise<AdminUser> {
    const list = await root.get('/api/admin/users');
    assert.equal(list.status, 200, list.text);
    const found = (list.body as { users: AdminUser[] }).users.find((u) => u.id === id);
    assert.ok(found, `user ${id} is listed`);
    return found;
  }

  test('an admin creates a user, who can then sign in', async () => {
    const created = await root.post('/api/admin/users', {
      username: 'erin',
      password: ERIN_PASSWORD,
      role: 'user',
    });
    assert.equal(created.status, 201, created.text);
    const erin = created.body as AdminUser;
    erinId = erin.id;
    remember('user.created', created, erin.id);
    assert.deepEqual(
      {
        username: erin.username,
        role: erin.role,
        totp_enabled: erin.totp_enabled,
        disabled: erin.disabled,
      },
      { username: 'erin', role: 'user', totp_enabled: false, disabled: false },
    );
    assert.ok(!created.text.includes(ERIN_PASSWORD) && !/scrypt|hash/i.test(created.text));

    const browser = await signIn(palisade, 'erin', ERIN_PASSWORD);
    rememberSession(browser);
    const me = await browser.get('/api/me');
    assert.equal((me.body as { username: string }).username, 'erin');
    assert.ok((await adminUser(erin.id)).last_login_at, 'the sign-in is shown to admins');
    const list = await root.get('/api/admin/users');
    assert.ok(!/password|scrypt|totp_secret/i.test(list.text), 'no hashes or secrets listed');

    const before = await snapshot(palisade);
    assertApiError(
      await root.post('/api/admin/users', {
        username: 'erin',
        password: ERIN_PASSWORD,
        role: 'user',
      }),
      409,
      'username_taken',
    );
    assertApiError(
      await root.post('/api/admin/users', { username: 'weak', password: 'password', role: 'user' }),
      400,
      'weak_password',
    );
    assertApiError(
      await root.post('/api/admin/users', {
        username: 'x',
        password: ERIN_PASSWORD,
        role: 'owner',
      }),
      400,
      'invalid_request',
    );
    assert.deepEqual(await snapshot(palisade), before, 'refusals store nothing');
  });

  test('disabling a user refuses their live session at once; enabling lets them sign in again', async () => {
    const browser = await signIn(palisade, 'erin', ERIN_PASSWORD);
    rememberSession(browser);
    assert.equal((await browser.get('/api/conversations')).status, 200);

    const disabled = await root.patch(`/api/admin/users/${erinId}`, { disabled: true });
    assert.equal(disabled.status, 200, disabled.text);
    assert.equal((disabled.body as AdminUser).disabled, true);
    remember('user.disabled', disabled, erinId);
    // The very next request of the open session is refused.
    assertApiError(await browser.get('/api/conversations'), 401, 'not_signed_in');
    assertApiError(await browser.get('/api/me'), 401, 'not_signed_in');
    assertApiError(
      await new WebClient(palisade.url).post('/api/auth/login', {
        username: 'erin',
        password: ERIN_PASSWORD,
      }),
      401,
      'invalid_credentials',
    );

    const enabled = await root.patch(`/api/admin/users/${erinId}`, { disabled: false });
    assert.equal(enabled.status, 200, enabled.text);
    assert.equal((enabled.body as AdminUser).disabled, false);
    remember('user.enabled', enabled, erinId);
    // The old session stays ended; a new sign-in works.
    assertApiError(await browser.get('/api/me'), 401, 'not_signed_in');
    const again = await signIn(palisade, 'erin', ERIN_PASSWORD);
    rememberSession(again);
    assert.equal((await again.get('/api/me')).status, 200);
  });

  test('resetting a user’s TOTP lets them sign in with the password alone', async () => {
    const browser = await signIn(palisade, 'erin', ERIN_PASSWORD);
    rememberSession(browser);
    const { secret, recoveryCodes } = await enrollTotp(browser, Date.now(), ERIN_PASSWORD);
    secrets.push(secret, ...recoveryCodes);
    assert.equal((await adminUser(erinId)).totp_enabled, true);
    const step = await new WebClient(palisade.url).post('/api/auth/login', {
      username: 'erin',
      password: ERIN_PASSWORD,
    });
    assert.deepEqual(step.body, { totp_required: true });

    const reset = await root.post(`/api/admin/users/${erinId}/reset-totp`, {});
    assert.equal(reset.status, 200, reset.text);
    assert.equal((reset.body as AdminUser).totp_enabled, false);
    remember('user.totp_reset', reset, erinId);
    const plain = new WebClient(palisade.url);
    const login = await plain.post('/api/auth/login', {
      username: 'erin',
      password: ERIN_PASSWORD,
    });
    assert.equal(login.status, 200, login.text);
    assert.equal((login.body as { user: { totp_enabled: boolean } }).user.totp_enabled, false);
    rememberSession(plain);
    // The old secret's codes no longer matter: there is no TOTP step to give them to.
    assertApiError(
      await plain.post('/api/auth/totp/verify', { code: totpCode(secret, Date.now() + 30_000) }),
      401,
      'login_expired',
    );
  });

  test('a role change applies to the user’s next request', async () => {
    const browser = await signIn(palisade, 'erin', ERIN_PASSWORD);
    rememberSession(browser);
    assertApiError(await browser.get('/api/admin/users'), 403, 'admin_required');
    const promoted = await root.patch(`/api/admin/users/${erinId}`, { role: 'admin' });
    assert.equal(promoted.status, 200, promoted.text);
    assert.equal((promoted.body as AdminUser).role, 'admin');
    remember('user.role_changed', promoted, erinId);
    assert.equal((await browser.get('/api/admin/users')).status, 200, 'an admin at once');

    const demoted = await root.patch(`/api/admin/users/${erinId}`, { role: 'user' });
    assert.equal(demoted.status, 200, demoted.text);
    remember('user.role_changed', demoted, erinId);
    assertApiError(await browser.get('/api/admin/users'), 403, 'admin_required');
  });

  test('an admin cannot disable or demote themselves, nor can two admins demote each other', async () => {
    const rootId = await userIdOf(palisade, 'root');
    const before = await snapshot(palisade);
    assertApiError(
      await root.patch(`/api/admin/users/${rootId}`, { disabled: true }),
      409,
      'cannot_change_self',
    );
    assertApiError(
      await root.patch(`/api/admin/users/${rootId}`, { role: 'user' }),
      409,
      'cannot_change_self',
    );
    assert.deepEqual(await snapshot(palisade), before);
    assert.equal((await root.get('/api/admin/users')).status, 200, 'still an admin');

    // Two admins demoting each other at once: one of them is left an admin.
    const promoted = await root.patch(`/api/admin/users/${erinId}`, { role: 'admin' });
    assert.equal(promoted.status, 200, promoted.text);
    remember('user.role_changed', promoted, erinId);
    const erin = await signIn(palisade, 'erin', ERIN_PASSWORD);
    rememberSession(erin);
    const [byRoot, byErin] = await Promise.all([
      root.patch(`/api/admin/users/${erinId}`, { role: 'user' }),
      erin.patch(`/api/admin/users/${rootId}`, { role: 'user' }),
    ]);
    const statuses = [byRoot.status, byErin.status].sort();
    const loser = byRoot.status === 200 ? byErin : byRoot;
    assert.equal(statuses[0], 200, `${byRoot.text} | ${byErin.text}`);
    assert.ok([403, 409].includes(loser.status), loser.text);
    if (loser.status === 409) assertApiError(loser, 409, 'last_admin');
    else assertApiError(loser, 403, 'admin_required');
    const users = (await (byRoot.status === 200 ? root : erin).get('/api/admin/users')).body as {
      users: AdminUser[];
    };
    const admins = users.users.filter((u) => u.role === 'admin' && !u.disabled);
    assert.equal(admins.length, 1, 'exactly one admin is left');
    if (byRoot.status === 200) {
      remember('user.role_changed', byRoot, erinId);
    } else {
      // Erin won: she gives root the role back, and takes her own away through root.
      const back = await erin.patch(`/api/admin/users/${rootId}`, { role: 'admin' });
      assert.equal(back.status, 200, back.text);
      const down = await root.patch(`/api/admin/users/${erinId}`, { role: 'user' });
      assert.equal(down.status, 200, down.text);
      remember('user.role_changed', down, erinId);
    }
    assert.equal((await adminUser(erinId)).role, 'user');
  });

  test('required TOTP: a user without it may only enroll, then everything works', async () => {
    // Root enrolls first: the requirement applies to admins too.
    const { secret, recoveryCodes } = await enrollTotp(root);
    secrets.push(secret, ...recoveryCodes);
    const on = await root.put('/api/admin/settings', { require_totp: true });
    assert.equal(on.status, 200, on.text);
    assert.deepEqual(on.body, { require_totp: true });
    remember('settings.updated', on);
    try {
      const created = await root.post('/api/admin/users', {
        username: 'frank',
        password: FRANK_PASSWORD,
        role: 'user',
      });
      assert.equal(created.status, 201, created.text);
      remember('user.created', created, (created.body as AdminUser).id);
      const frank = new WebClient(palisade.url);
      const login = await frank.post('/api/auth/login', {
        username: 'frank',
        password: FRANK_PASSWORD,
      });
      assert.equal(login.status, 200, login.text);
      rememberSession(frank);
      assert.equal(
        (login.body as { user: { totp_enrollment_required: boolean } }).user
          .totp_enrollment_required,
        true,
      );
      const before = await snapshot(palisade);
      assertApiError(await frank.get('/api/conversations'), 403, 'totp_enrollment_required');
      assertApiError(
        await frank.post('/api/conversations', { title: 'before enrolling' }),
        403,
        'totp_enrollment_required',
      );
      assertApiError(await frank.get('/api/settings'), 403, 'totp_enrollment_required');
      assert.deepEqual(await snapshot(palisade), before, 'nothing stored before enrolling');
      assert.equal((await frank.get('/api/me')).status, 200);

      const enrolled = await enrollTotp(frank, Date.now(), FRANK_PASSWORD);
      secrets.push(enrolled.secret, ...enrolled.recoveryCodes);
      assert.equal((await frank.get('/api/conversations')).status, 200);
      assert.equal((await frank.post('/api/conversations', { title: 'now' })).status, 201);
      // Root, enrolled before, was never held up.
      assert.equal((await root.get('/api/admin/users')).status, 200);
    } finally {
      const off = await root.put('/api/admin/settings', { require_totp: false });
      assert.equal(off.status, 200, off.text);
      assert.deepEqual(off.body, { require_totp: false });
      remember('settings.updated', off);
    }
  });

  test('API keys: created once, they open /v1 and close it to everyone else; revoked, they stop at once', async () => {
    // On loopback with no key, /v1 is open.
    const open = await v1Models(palisade);
    assert.equal(open.status, 200, open.text);

    const created = await root.post('/api/admin/keys', { name: 'ci-runner', rpm: 600 });
    assert.equal(created.status, 201, created.text);
    const { key, api_key: info } = created.body as { key: string; api_key: ApiKeyInfo };
    secrets.push(key);
    remember('key.created', created, info.id);
    assert.match(key, /^pk_[A-Za-z0-9_-]{43}$/);
    assert.equal(info.owner, 'root');
    assert.equal(info.scope, 'inference');
    assert.equal(info.hint, key.slice(-4));

    // The real gateway: with the key it answers; without one it now refuses.
    const withKey = await v1Models(palisade, key);
    assert.equal(withKey.status, 200, withKey.text);
    assert.ok(modelIds(withKey).includes('mock-small'));
    assertGatewayError(await v1Models(palisade), 401, 'missing_api_key');
    assertGatewayError(await v1Models(palisade, `pk_${'A'.repeat(43)}`), 401, 'invalid_api_key');

    // Listed without the secret.
    const listed = await root.get('/api/admin/keys');
    assert.equal(listed.status, 200, listed.text);
    assert.ok(!listed.text.includes(key) && !listed.text.includes(key.slice(3, -4)));
    const row = (listed.body as { keys: ApiKeyInfo[] }).keys.find((k) => k.id === info.id);
    assert.deepEqual(row, { ...info, last_used_at: row?.last_used_at ?? null });
    assert.equal(row?.revoked_at, null);

    const revoked = await root.delete(`/api/admin/keys/${info.id}`);
    assert.equal(revoked.status, 204, revoked.text);
    remember('key.revoked', revoked, info.id);
    assertGatewayError(await v1Models(palisade, key), 401, 'key_revoked');
    // A revoked key does not reopen the door.
    assertGatewayError(await v1Models(palisade), 401, 'missing_api_key');
    const after = (await root.get('/api/admin/keys')).body as { keys: ApiKeyInfo[] };
    assert.ok(after.keys.find((k) => k.id === info.id)?.revoked_at);
    assertApiError(await root.delete(`/api/admin/keys/no-such-key`), 404, 'key_not_found');
  });

  test('an upstream added through the API serves its models at once; removed, they are gone', async () => {
    const created = await root.post('/api/admin/keys', { name: 'models-check' });
    assert.equal(created.status, 201, created.text);
    const { key, api_key: keyInfo } = created.body as { key: string; api_key: ApiKeyInfo };
    secrets.push(key);
    remember('key.created', created, keyInfo.id);

    const checksBefore = second.requests.length;
    const added = await root.post('/api/admin/upstreams', { name: 'second', url: second.url });
    assert.equal(added.status, 201, added.text);
    remember('upstream.added', added, 'second');
    const info = added.body as { name: string; source: string; healthy: boolean; models: string[] };
    assert.equal(info.name, 'second');
    assert.equal(info.source, 'store');
    assert.ok(second.requests.length > checksBefore, 'the new upstream was asked for its models');

    // No waiting for a health round (12 h away): the models are served now.
    const models = await root.get('/api/models');
    assert.deepEqual((models.body as { models: Array<{ id: string; upstream: string }> }).models, [
      { id: 'mock-small', upstream: 'local' },
      { id: 'second-model-a', upstream: 'second' },
      { id: 'second-model-b', upstream: 'second' },
    ]);
    const v1 = await v1Models(palisade, key);
    assert.deepEqual(modelIds(v1).sort(), ['mock-small', 'second-model-a', 'second-model-b']);
    const listed = (await root.get('/api/admin/upstreams')).body as {
      upstreams: Array<{ name: string; healthy: boolean; models: string[] }>;
    };
    assert.deepEqual(
      listed.upstreams.map((u) => [u.name, u.healthy, u.models]),
      [
        ['local', true, ['mock-small']],
        ['second', true, ['second-model-a', 'second-model-b']],
      ],
    );
    assertApiError(
      await root.post('/api/admin/upstreams', { name: 'second', url: second.url }),
      409,
      'upstream_exists',
    );
    assertApiError(await root.delete('/api/admin/upstreams/local'), 409, 'upstream_not_removable');

    const removed = await root.delete('/api/admin/upstreams/second');
    assert.equal(removed.status, 204, removed.text);
    remember('upstream.removed', removed, 'second');
    const left = await root.get('/api/models');
    assert.deepEqual((left.body as { models: unknown[] }).models, [
      { id: 'mock-small', upstream: 'local' },
    ]);
    assert.deepEqual(modelIds(await v1Models(palisade, key)), ['mock-small']);
    assertApiError(await root.delete('/api/admin/upstreams/second'), 404, 'upstream_not_found');
  });

  test('the audit log holds each change as user:root, filtered and paged', async () => {
    const all = await root.get('/api/admin/audit?limit=200');
    assert.equal(all.status, 200, all.text);
    const entries = (all.body as AuditPage).entries;
    assert.ok(entries.every((e, i) => i === 0 || (entries[i - 1] as AuditEntry).seq > e.seq));

    // Each change root made is there, with root as the actor and the request's own id.
    for (const change of changes) {
      const entry = entries.find(
        (e) => e.request_id === change.requestId && e.action === change.action,
      );
      assert.ok(entry, `${change.action} (${change.requestId}) is audited`);
      assert.equal(entry.actor, 'user:root');
      assert.equal(entry.ip, '127.0.0.1');
      if (change.target !== undefined) assert.equal(entry.target, change.target, change.action);
    }
    const actions = new Set(changes.map((c) => c.action));
    assert.deepEqual([...actions].sort(), [
      'key.created',
      'key.revoked',
      'settings.updated',
      'upstream.added',
      'upstream.removed',
      'user.created',
      'user.disabled',
      'user.enabled',
      'user.role_changed',
      'user.totp_reset',
    ]);

    // Filters: an action prefix, an exact actor, both.
    const keys = (await root.get('/api/admin/audit?action=key.&limit=200')).body as AuditPage;
    assert.deepEqual(
      keys.entries.map((e) => e.action),
      entries.filter((e) => e.action.startsWith('key.')).map((e) => e.action),
    );
    assert.deepEqual(
      new Set(keys.entries.map((e) => e.action)),
      new Set(['key.created', 'key.revoked']),
    );
    const byRoot = (await root.get('/api/admin/audit?actor=user:root&limit=200')).body as AuditPage;
    assert.ok(byRoot.entries.length >= changes.length);
    assert.ok(byRoot.entries.every((e) => e.actor === 'user:root'));
    const byErin = (await root.get('/api/admin/audit?actor=user:erin&limit=200')).body as AuditPage;
    assert.ok(byErin.entries.length > 0, 'erin’s own sign-ins are audited as hers');
    assert.ok(byErin.entries.every((e) => e.actor === 'user:erin'));
    const rootUsers = (await root.get('/api/admin/audit?action=user.&actor=user:root&limit=200'))
      .body as AuditPage;
    assert.deepEqual(
      rootUsers.entries.map((e) => e.seq),
      byRoot.entries.filter((e) => e.action.startsWith('user.')).map((e) => e.seq),
    );
    assert.deepEqual(
      ((await root.get('/api/admin/audit?actor=user:ro')).body as AuditPage).entries,
      [],
      'the actor is matched exactly',
    );

    // Paging with next_before walks the same entries, newest first, each once.
    const walked: AuditEntry[] = [];
    let before: number | null = null;
    let pages = 0;
    do {
      const query = before === null ? '' : `&before=${before}`;
      const page = (await root.get(`/api/admin/audit?actor=user:root&limit=3${query}`))
        .body as AuditPage;
      assert.ok(page.entries.length <= 3);
      walked.push(...page.entries);
      before = page.next_before;
      if (before !== null) assert.equal(before, page.entries.at(-1)?.seq);
      pages += 1;
      assert.ok(pages < 100, 'paging ends');
    } while (before !== null);
    assert.deepEqual(walked, byRoot.entries);
    assert.ok(pages > 1, 'more than one page');
  });

  test('no password, key, token or TOTP secret is in the audit log or the log lines', async () => {
    // The bodies of every audit answer too: an admin reads them.
    const answer = await root.get('/api/admin/audit?limit=200');
    const audit = readFileSync(join(palisade.home, 'audit.jsonl'), 'utf8');
    assert.match(audit, /"user\.created"/);
    const logs = palisade.logs.join('');
    assert.match(logs, /"path":"\/api\/admin\/users"/, 'requests are logged');
    for (const value of secrets) {
      assert.ok(value.length >= 8, 'a secret worth looking for');
      const shown = `${value.slice(0, 4)}…`;
      assert.ok(!audit.includes(value), `not in audit.jsonl: ${shown}`);
      assert.ok(!logs.includes(value), `not in the log: ${shown}`);
      assert.ok(!answer.text.includes(value), `not in the audit answer: ${shown}`);
    }
  });
  test('disabling a user also revokes the API keys they own: no access outlives the account', async () => {
    const created = await root.post('/api/admin/users', {
      username: 'hank',
      password: 'hank keeps a long passphrase',
      role: 'user',
    });
    assert.equal(created.status, 201, created.text);
    const hank = created.body as AdminUser;
    const key = await palisade.createKey({ name: 'hank-laptop', owner: 'hank' });
    const other = await palisade.createKey({ name: 'someone-else', owner: 'root' });
    assert.equal((await v1Models(palisade, key)).status, 200);

    const disabled = await root.patch(`/api/admin/users/${hank.id}`, { disabled: true });
    assert.equal(disabled.status, 200, disabled.text);
    assertGatewayError(await v1Models(palisade, key), 401, 'key_revoked');
    assert.equal((await v1Models(palisade, other)).status, 200, 'other owners keep theirs');
    const audit = (await root.get('/api/admin/audit?action=user.disabled&limit=1'))
      .body as AuditPage;
    assert.equal(audit.entries[0]?.details?.count, 1);
    // Enabling the user again does not bring the key back.
    assert.equal(
      (await root.patch(`/api/admin/users/${hank.id}`, { disabled: false })).status,
      200,
    );
    assertGatewayError(await v1Models(palisade, key), 401, 'key_revoked');
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  startApiHarness,
  testUserById,
  type ApiAnswer,
  type ApiHarness,
  type CallOptions,
} from '../../test/support/api-harness.js';
import { createAuditLog, listAuditEntries } from '../audit/index.js';
import { createUser } from '../auth/index.js';
import { openStore, type Store, type UserSecretRow } from '../store/index.js';
import {
  createUserSecrets,
  MAX_MCP_SERVERS,
  MAX_UPSTREAM_KEYS,
  settings,
  type UserSecrets,
} from './index.js';

interface Settings {
  default_model: string | null;
  upstream_keys: Array<{ upstream: string; masked: string; created_at: string }>;
  mcp_servers: Array<{
    id: string;
    name: string;
    url: string;
    token_masked: string | null;
    created_at: string;
  }>;
}

type Answer = ApiAnswer;

const SCRYPT = { n: 1024, r: 8, p: 1 };
const PASSWORD = 'correct horse battery staple';
const KEY = 'sk-or-v1-0123456789abcdef0123456789abcdef';
const TOKEN = 'mcp-token-fedcba9876543210';

let home: string;
let store: Store;
let secrets: UserSecrets;
let harness: ApiHarness;
let alice: string;
let bob: string;

before(async () => {
  home = mkdtempSync(join(tmpdir(), 'palisade-settings-'));
  store = await openStore(home);
  const masterKey = randomBytes(32);
  const audit = createAuditLog(store, home);
  secrets = createUserSecrets({ store, masterKey });
  alice = (await createUser(store, { username: 'alice', password: PASSWORD, role: 'user' }, SCRYPT))
    .id;
  bob = (await createUser(store, { username: 'bob', password: PASSWORD, role: 'user' }, SCRYPT)).id;

  harness = await startApiHarness({
    user: testUserById(store),
    routes: (api) => api.register(settings, { store, audit, secrets }),
  });
});

after(async () => {
  await harness.close();
  await store.close();
});

const call = (method: string, path: string, options?: CallOptions) =>
  harness.call(method, path, options);

function rows(userId?: string): UserSecretRow[] {
  return userId === undefined
    ? store.sqlite.prepare<[], UserSecretRow>('select * from user_secret order by id').all()
    : store.sqlite
        .prepare<[string], UserSecretRow>('select * from user_secret where user_id = ? order by id')
        .all(userId);
}

function errorCode(answer: Answer): string {
  return (answer.json as { error: { code: string } }).error.code;
}

function clearSecrets(): void {
  store.sqlite.prepare('delete from user_secret').run();
  store.sqlite.prepare('delete from user_setting').run();
}

describe('settings API', () => {
  test('signed out, every route answers 401 and stores nothing', async () => {
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/api/settings'],
      ['PUT', '/api/settings', { default_model: 'x' }],
      ['PUT', '/api/settings/upstream-keys/lab', { key: KEY }],
      ['DELETE', '/api/settings/upstream-keys/lab'],
      ['POST', '/api/settings/mcp-servers', { name: 'n', url: 'https://mcp.example.com/' }],
      ['DELETE', '/api/settings/mcp-servers/abc'],
    ];
    for (const [method, path, body] of routes) {
      const answer = await call(method, path, { body });
      assert.equal(answer.status, 401, `${method} ${path}: ${answer.text}`);
      assert.equal(errorCode(answer), 'not_signed_in');
      assert.match((answer.json as { request_id: string }).request_id, /\S/);
    }
    assert.equal(rows().length, 0);
    assert.equal(store.sqlite.prepare('select count(*) from user_setting').pluck().get(), 0);
  });

  test('the default model is set, answered with the whole settings, and cleared with null', async () => {
    clearSecrets();
    const empty = await call('GET', '/api/settings', { user: alice });
    assert.equal(empty.status, 200);
    assert.deepEqual(empty.json, { default_model: null, upstream_keys: [], mcp_servers: [] });

    const set = await call('PUT', '/api/settings', {
      user: alice,
      body: { default_model: 'qwen3:8b' },
    });
    assert.equal(set.status, 200, set.text);
    assert.equal((set.json as Settings).default_model, 'qwen3:8b');
    assert.equal(
      ((await call('GET', '/api/settings', { user: bob })).json as Settings).default_model,
      null,
      "bob does not get alice's setting",
    );

    const untouched = await call('PUT', '/api/settings', { user: alice, body: {} });
    assert.equal((untouched.json as Settings).default_model, 'qwen3:8b');

    const cleared = await call('PUT', '/api/settings', {
      user: alice,
      body: { default_model: null },
    });
    assert.equal((cleared.json as Settings).default_model, null);
  });

  test('malformed settings bodies are 400 and change nothing', async () => {
    clearSecrets();
    await call('PUT', '/api/settings', { user: alice, body: { default_model: 'keep' } });
    const bad: Array<{ body?: unknown; raw?: string }> = [
      { body: { default_model: 42 } },
      { body: { default_model: '' } },
      { body: { default_model: 'a\u0000b' } },
      { body: { default_model: 'x'.repeat(257) } },
      { body: { default_model: 'ok', theme: 'dark' } },
      { body: ['default_model'] },
      { raw: '{"default_model": ' },
    ];
    for (const input of bad) {
      const answer = await call('PUT', '/api/settings', { user: alice, ...input });
      assert.equal(answer.status, 400, `${JSON.stringify(input)}: ${answer.text}`);
    }
    const now = (await call('GET', '/api/settings', { user: alice })).json as Settings;
    assert.equal(now.default_model, 'keep');
  });

  test('an upstream key is stored sealed, answered masked and never returned', async () => {
    clearSecrets();
    const answer = await call('PUT', '/api/settings/upstream-keys/openrouter', {
      user: alice,
      body: { key: KEY },
    });
    assert.equal(answer.status, 200, answer.text);
    assert.ok(!answer.text.includes(KEY.slice(0, -4)), 'the key is not in the answer');
    const body = answer.json as Settings;
    assert.equal(body.upstream_keys.length, 1);
    assert.equal(body.upstream_keys[0]?.upstream, 'openrouter');
    assert.equal(body.upstream_keys[0]?.masked, `••••${KEY.slice(-4)}`);

    const [row] = rows(alice);
    assert.ok(row?.secret_enc);
    assert.ok(row.secret_enc.startsWith('enc$v1$'), 'sealed in the row');
    assert.ok(!row.secret_enc.includes(KEY), 'the row does not hold the key');
    assert.ok(!JSON.stringify(row).includes(KEY.slice(0, 12)));
    assert.equal(row.kind, 'upstream_key');
    assert.equal(secrets.upstreamKeyFor(alice, 'openrouter'), KEY);
    assert.equal(secrets.upstreamKeyFor(bob, 'openrouter'), undefined);

    const replaced = await call('PUT', '/api/settings/upstream-keys/openrouter', {
      user: alice,
      body: { key: `${KEY}-v2zz` },
    });
    assert.equal(replaced.status, 200);
    assert.equal(rows(alice).length, 1, 'replaced, not added');
    assert.equal((replaced.json as Settings).upstream_keys[0]?.masked, '••••v2zz');
    assert.equal(secrets.upstreamKeyFor(alice, 'openrouter'), `${KEY}-v2zz`);

    const removed = await call('DELETE', '/api/settings/upstream-keys/openrouter', {
      user: alice,
    });
    assert.equal(removed.status, 200);
    assert.deepEqual((removed.json as Settings).upstream_keys, []);
    assert.equal(rows(alice).length, 0);
    const again = await call('DELETE', '/api/settings/upstream-keys/openrouter', { user: alice });
    assert.equal(again.status, 404);
  });

  test('a short key shows no characters at all', async () => {
    clearSecrets();
    const answer = await call('PUT', '/api/settings/upstream-keys/lab', {
      user: alice,
      body: { key: 'abc123' },
    });
    assert.equal((answer.json as Settings).upstream_keys[0]?.masked, '••••');
    assert.ok(!answer.text.includes('abc123'));
  });

  test('malformed or oversized keys are 400 and store nothing', async () => {
    clearSecrets();
    const bad: Array<{ path?: string; body?: unknown; raw?: string }> = [
      { body: { key: '' } },
      { body: { key: 'has a space' } },
      { body: { key: 'tab\there' } },
      { body: { key: 'é-not-ascii' } },
      { body: { key: 'k'.repeat(4097) } },
      { body: { key: 12345 } },
      { body: { key: KEY, extra: true } },
      { body: {} },
      { raw: 'not json' },
      { path: '/api/settings/upstream-keys/bad%20name', body: { key: KEY } },
      { path: `/api/settings/upstream-keys/${'u'.repeat(65)}`, body: { key: KEY } },
    ];
    for (const input of bad) {
      const answer = await call('PUT', input.path ?? '/api/settings/upstream-keys/lab', {
        user: alice,
        body: input.body,
        ...(input.raw !== undefined ? { raw: input.raw } : {}),
      });
      assert.equal(answer.status, 400, `${JSON.stringify(input).slice(0, 80)}: ${answer.text}`);
    }
    const longest = await call('PUT', '/api/settings/upstream-keys/lab', {
      user: alice,
      body: { key: 'k'.repeat(4096) },
    });
    assert.equal(longest.status, 200, 'exactly 4096 characters is allowed');
    assert.equal(rows().length, 1);
  });

  test('an MCP server is stored with its token sealed and shown masked', async () => {
    clearSecrets();
    const answer = await call('POST', '/api/settings/mcp-servers', {
      user: alice,
      body: { name: 'Docs search', url: 'https://mcp.example.com/mcp', token: TOKEN },
    });
    assert.equal(answer.status, 201, answer.text);
    assert.ok(!answer.text.includes(TOKEN.slice(0, -4)));
    const server = (answer.json as Settings).mcp_servers[0];
    assert.ok(server);
    assert.equal(server.name, 'Docs search');
    // The path may hold a credential: only the origin is shown back.
    assert.equal(server.url, 'https://mcp.example.com/…');
    assert.equal(server.token_masked, `••••${TOKEN.slice(-4)}`);
    const [row] = rows(alice);
    assert.ok(row?.secret_enc);
    assert.ok(row.secret_enc.startsWith('enc$v1$'));
    assert.ok(!row.secret_enc.includes(TOKEN));
    assert.deepEqual(secrets.mcpServersFor(alice), [
      { id: server.id, name: 'Docs search', url: 'https://mcp.example.com/mcp', token: TOKEN },
    ]);

    const keyed = await call('POST', '/api/settings/mcp-servers', {
      user: alice,
      body: { name: 'Hosted', url: 'https://tools.example.org/mcp/k-0123456789abcdef/sse' },
    });
    assert.equal(keyed.status, 201, keyed.text);
    assert.ok(!keyed.text.includes('k-0123456789abcdef'), 'a key in the path is not shown back');
    const hosted = (keyed.json as Settings).mcp_servers.find((s) => s.name === 'Hosted');
    assert.equal(hosted?.url, 'https://tools.example.org/…/sse');
    // Stored sealed too: the row holds the masked form only.
    const hostedRow = rows(alice).find((r) => r.name === 'Hosted');
    assert.ok(hostedRow?.secret_enc?.startsWith('enc$v1$'));
    assert.ok(!JSON.stringify(hostedRow).includes('k-0123456789abcdef'));
    assert.equal(
      secrets.mcpServersFor(alice).find((m) => m.name === 'Hosted')?.url,
      'https://tools.example.org/mcp/k-0123456789abcdef/sse',
    );

    const plain = await call('POST', '/api/settings/mcp-servers', {
      user: alice,
      body: { name: 'Local tools', url: 'http://tools.example.net:9000/mcp' },
    });
    assert.equal(plain.status, 201, plain.text);
    const local = (plain.json as Settings).mcp_servers.find((s) => s.name === 'Local tools');
    assert.equal(local?.token_masked, null);

    const duplicate = await call('POST', '/api/settings/mcp-servers', {
      user: alice,
      body: { name: 'Docs search', url: 'https://other.example.com/' },
    });
    assert.equal(duplicate.status, 409);
    assert.equal(errorCode(duplicate), 'name_taken');

    const removed = await call('DELETE', `/api/settings/mcp-servers/${server.id}`, {
      user: alice,
    });
    assert.equal(removed.status, 200);
    assert.deepEqual(
      (removed.json as Settings).mcp_servers.map((s) => s.name),
      ['Hosted', 'Local tools'],
    );
  });

  test('MCP server URLs that are not plain http(s) addresses are 400 and store nothing', async () => {
    clearSecrets();
    const urls = [
      'ftp://mcp.example.com/',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'https://user:pass@mcp.example.com/',
      'https://mcp.example.com/?token=abc',
      'https://mcp.example.com/#x',
      'http://169.254.169.254/latest/meta-data/',
      'http://metadata.google.internal/',
      'http://0.0.0.0:80/',
      `https://mcp.example.com/${'p'.repeat(2048)}`,
      'not a url',
      '',
    ];
    for (const url of urls) {
      const answer = await call('POST', '/api/settings/mcp-servers', {
        user: alice,
        body: { name: 'x', url },
      });
      assert.equal(answer.status, 400, `${url.slice(0, 60)}: ${answer.text}`);
      assert.ok(!answer.text.includes('pass@'), 'the URL credentials are not echoed');
    }
    const bodies: unknown[] = [
      { name: '', url: 'https://mcp.example.com/' },
      { name: 'a\nb', url: 'https://mcp.example.com/' },
      { name: 'n'.repeat(65), url: 'https://mcp.example.com/' },
      { name: 'ok', url: 'https://mcp.example.com/', token: '' },
      { name: 'ok', url: 'https://mcp.example.com/', token: 't'.repeat(4097) },
      { name: 'ok', url: 'https://mcp.example.com/', token: 42 },
      { name: 'ok', url: 'https://mcp.example.com/', headers: { a: 'b' } },
      { name: 'ok' },
    ];
    for (const body of bodies) {
      const answer = await call('POST', '/api/settings/mcp-servers', { user: alice, body });
      assert.equal(answer.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${answer.text}`);
    }
    assert.equal(rows().length, 0);
  });

  test("another user's secrets are invisible: 404 like unknown ids, and nothing changes", async () => {
    clearSecrets();
    await call('PUT', '/api/settings/upstream-keys/openrouter', {
      user: alice,
      body: { key: KEY },
    });
    const added = await call('POST', '/api/settings/mcp-servers', {
      user: alice,
      body: { name: 'Docs', url: 'https://mcp.example.com/', token: TOKEN },
    });
    const id = (added.json as Settings).mcp_servers[0]?.id;
    assert.ok(id);
    const before = JSON.stringify(rows());

    const seen = (await call('GET', '/api/settings', { user: bob })).json as Settings;
    assert.deepEqual(seen, { default_model: null, upstream_keys: [], mcp_servers: [] });

    const theirs = await call('DELETE', `/api/settings/mcp-servers/${id}`, { user: bob });
    const unknown = await call('DELETE', '/api/settings/mcp-servers/no-such-id', { user: bob });
    assert.equal(theirs.status, 404);
    assert.equal(unknown.status, 404);
    assert.deepEqual(
      (theirs.json as { error: unknown }).error,
      (unknown.json as { error: unknown }).error,
      "the same answer for a stranger's id and a made-up one",
    );
    const key = await call('DELETE', '/api/settings/upstream-keys/openrouter', { user: bob });
    assert.equal(key.status, 404);
    assert.equal(JSON.stringify(rows()), before, 'nothing changed');

    // Bob setting his own key for the same upstream leaves alice's alone.
    await call('PUT', '/api/settings/upstream-keys/openrouter', {
      user: bob,
      body: { key: 'bob-key-0000000000000000' },
    });
    assert.equal(secrets.upstreamKeyFor(alice, 'openrouter'), KEY);
    assert.equal(secrets.upstreamKeyFor(bob, 'openrouter'), 'bob-key-0000000000000000');
  });

  test('a sealed value copied to another user or row does not open', async () => {
    clearSecrets();
    secrets.setUpstreamKey(alice, 'openrouter', KEY);
    secrets.setUpstreamKey(bob, 'openrouter', 'bob-key-0000000000000000');
    secrets.setUpstreamKey(alice, 'other', 'other-key-000000000000');
    const [mine] = rows(alice).filter((r) => r.name === 'openrouter');
    assert.ok(mine?.secret_enc);
    store.sqlite
      .prepare('update user_secret set secret_enc = ? where user_id = ? and name = ?')
      .run(mine.secret_enc, bob, 'openrouter');
    store.sqlite
      .prepare('update user_secret set secret_enc = ? where user_id = ? and name = ?')
      .run(mine.secret_enc, alice, 'other');
    assert.throws(() => secrets.upstreamKeyFor(bob, 'openrouter'));
    assert.throws(() => secrets.upstreamKeyFor(alice, 'other'));
    assert.equal(secrets.upstreamKeyFor(alice, 'openrouter'), KEY);
  });

  test('at most 50 upstream keys and 20 MCP servers per user (409 past it)', async () => {
    clearSecrets();
    for (let i = 0; i < MAX_UPSTREAM_KEYS; i++) secrets.setUpstreamKey(alice, `u${i}`, KEY);
    const over = await call('PUT', '/api/settings/upstream-keys/one-more', {
      user: alice,
      body: { key: KEY },
    });
    assert.equal(over.status, 409, over.text);
    assert.equal(errorCode(over), 'too_many_secrets');
    const replace = await call('PUT', '/api/settings/upstream-keys/u0', {
      user: alice,
      body: { key: `${KEY}x` },
    });
    assert.equal(replace.status, 200, 'replacing one is still allowed');

    for (let i = 0; i < MAX_MCP_SERVERS; i++) {
      secrets.addMcpServer(alice, { name: `s${i}`, url: 'https://mcp.example.com/' });
    }
    const tooMany = await call('POST', '/api/settings/mcp-servers', {
      user: alice,
      body: { name: 'one more', url: 'https://mcp.example.com/' },
    });
    assert.equal(tooMany.status, 409);
    assert.equal(rows(alice).length, MAX_UPSTREAM_KEYS + MAX_MCP_SERVERS);
    const forBob = await call('PUT', '/api/settings/upstream-keys/one-more', {
      user: bob,
      body: { key: KEY },
    });
    assert.equal(forBob.status, 200, "alice's count is hers alone");
  });

  test('changes are audited with kind and name, never the secret', async () => {
    clearSecrets();
    await call('PUT', '/api/settings/upstream-keys/audited', { user: alice, body: { key: KEY } });
    await call('POST', '/api/settings/mcp-servers', {
      user: alice,
      body: { name: 'Audited', url: 'https://mcp.example.com/', token: TOKEN },
    });
    await call('DELETE', '/api/settings/upstream-keys/audited', { user: alice });
    const entries = listAuditEntries(store, { limit: 3 });
    assert.deepEqual(
      entries.map((e) => [e.action, e.actor, e.details?.kind, e.details?.name]),
      [
        ['secret.removed', 'user:alice', 'upstream_key', 'audited'],
        ['secret.set', 'user:alice', 'mcp_server', 'Audited'],
        ['secret.set', 'user:alice', 'upstream_key', 'audited'],
      ],
    );
    assert.ok(entries.every((e) => e.ip === '127.0.0.1' && typeof e.request_id === 'string'));
    const log = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    for (const secret of [KEY, TOKEN, KEY.slice(0, 16), TOKEN.slice(0, 12)]) {
      assert.ok(!log.includes(secret), 'no secret in audit.jsonl');
    }
  });
});

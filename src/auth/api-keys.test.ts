import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore } from '../store/index.js';
import {
  API_KEY_PATTERN,
  compileGlob,
  createApiKey,
  createKeyRing,
  listApiKeys,
  readPresentedKey,
  revokeApiKey,
} from './index.js';

/** Polls until `read` gives `want` (the ring sees other processes' commits on the next turns). */
async function settle<T>(read: () => T, want: T): Promise<T> {
  for (let i = 0; i < 120 && read() !== want; i++) await sleep(10);
  return read();
}

async function tempStore() {
  return openStore(mkdtempSync(join(tmpdir(), 'palisade-keys-')));
}

test('a key is pk_ + 43 base64url characters and only its hash is stored', async () => {
  const store = await tempStore();
  const { key, apiKey } = await createApiKey(store, { name: 'laptop' });
  assert.match(key, API_KEY_PATTERN);
  const row = store.sqlite.prepare('SELECT * FROM api_key').get() as Record<string, unknown>;
  assert.ok(!JSON.stringify(row).includes(key), 'the key itself is never stored');
  assert.equal(row.hint, key.slice(-4));
  assert.equal(apiKey.scope, 'inference');
  await store.close();
});

test('names are unique and validated', async () => {
  const store = await tempStore();
  await createApiKey(store, { name: 'a' });
  await assert.rejects(createApiKey(store, { name: 'a' }), /already exists/);
  await assert.rejects(createApiKey(store, { name: '../etc' }), /not allowed/);
  await store.close();
});

test('the key ring tells unknown, revoked and expired keys apart', async () => {
  const store = await tempStore();
  const ring = createKeyRing(store);
  assert.equal(ring.hasKeys(), false);
  const good = await createApiKey(store, { name: 'good' });
  const gone = await createApiKey(store, { name: 'gone' });
  const old = await createApiKey(store, { name: 'old', expiresInMs: -1000 });
  await revokeApiKey(store, 'gone');
  ring.invalidate();
  assert.equal(ring.hasKeys(), true);
  assert.equal(ring.check(good.key).ok, true);
  assert.deepEqual(ring.check(gone.key), {
    ok: false,
    reason: 'revoked',
    apiKey: ring.check(gone.key).apiKey,
  });
  assert.equal((ring.check(old.key) as { reason: string }).reason, 'expired');
  assert.equal((ring.check('pk_' + 'x'.repeat(43)) as { reason: string }).reason, 'unknown');
  assert.equal((ring.check('garbage') as { reason: string }).reason, 'unknown');
  ring.close();
  await store.close();
});

test('another process creating a key is seen without a restart', async () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-keys-'));
  const server = await openStore(home);
  const cli = await openStore(home);
  const ring = createKeyRing(server);
  assert.equal(ring.hasKeys(), false);
  const { key } = await createApiKey(cli, { name: 'from-cli' });
  assert.equal(await settle(() => ring.check(key).ok, true), true);
  await revokeApiKey(cli, 'from-cli');
  assert.equal(await settle(() => ring.check(key).ok, false), false);
  ring.close();
  await cli.close();
  await server.close();
});

test('last-used times are written in batches', async () => {
  const store = await tempStore();
  const ring = createKeyRing(store);
  const { key } = await createApiKey(store, { name: 'k' });
  ring.check(key);
  ring.flush();
  const [listed] = await listApiKeys(store);
  assert.ok(listed?.lastUsedAt instanceof Date);
  ring.close();
  await store.close();
});

test('globs match model names with slashes and colons', () => {
  assert.ok(compileGlob('llama*').test('llama-3.1-8b'));
  assert.ok(compileGlob('meta-llama/*').test('meta-llama/Llama-3'));
  assert.ok(compileGlob('qwen3:?b').test('qwen3:8b'));
  assert.ok(!compileGlob('qwen3:?b').test('qwen3:14b'));
  assert.ok(!compileGlob('a.b').test('axb'), 'dots are literal');
});

test('keys are read from Authorization: Bearer or x-api-key', () => {
  assert.equal(readPresentedKey({ authorization: 'Bearer abc' }), 'abc');
  assert.equal(readPresentedKey({ authorization: 'bearer   abc ' }), 'abc');
  assert.equal(readPresentedKey({ 'x-api-key': 'xyz' }), 'xyz');
  assert.equal(readPresentedKey({ authorization: 'Basic abc' }), undefined);
  assert.equal(readPresentedKey({}), undefined);
});

test('globs match in linear time, whatever the pattern and name', () => {
  const hostile = compileGlob('*-*-*-*-*-*-*-*-*-*-*-*x');
  const stars = compileGlob(`${'*'.repeat(46)}a`);
  const name = '-'.repeat(256);
  // These took seconds to minutes with a backtracking regular expression.
  assert.equal(hostile.test(name), false);
  assert.equal(stars.test(name), false);
  assert.equal(stars.test(`${name}a`), true);
  assert.ok(compileGlob('Qwen*').test('qwen3:8b'), 'case-insensitive');
  assert.ok(compileGlob('*').test(''));
  assert.ok(!compileGlob('a?').test('a'));
});

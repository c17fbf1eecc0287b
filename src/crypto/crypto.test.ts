import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { deriveKey, isSealed, loadMasterKey, secretBox } from './index.js';

const home = () => mkdtempSync(join(tmpdir(), 'palisade-crypto-'));

test('the master key is created once, 32 bytes, mode 0600', () => {
  const dir = home();
  const first = loadMasterKey(dir);
  const second = loadMasterKey(dir);
  assert.equal(first.length, 32);
  assert.deepEqual(first, second);
  assert.equal(statSync(join(dir, 'secret.key')).mode & 0o777, 0o600);
  assert.deepEqual(readFileSync(join(dir, 'secret.key')), first);
});

test('PALISADE_SECRET overrides the key file', () => {
  const key = loadMasterKey(home(), 'ab'.repeat(32));
  assert.equal(key.toString('hex'), 'ab'.repeat(32));
});

test('a truncated key file is refused with the fix named', () => {
  const dir = home();
  writeFileSync(join(dir, 'secret.key'), Buffer.alloc(5), { mode: 0o600 });
  assert.throws(() => loadMasterKey(dir), /holds 5 bytes.*restore it/);
});

test('sealed values round-trip and carry the enc$v1$ prefix', () => {
  const box = secretBox(deriveKey(Buffer.alloc(32, 1), 'upstream-keys'));
  const sealed = box.seal('sk-very-secret', 'upstream:a');
  assert.ok(isSealed(sealed));
  assert.ok(sealed.startsWith('enc$v1$'));
  assert.ok(!sealed.includes('sk-very-secret'));
  assert.equal(box.open(sealed, 'upstream:a'), 'sk-very-secret');
  assert.notEqual(box.seal('x'), box.seal('x'), 'fresh IV every time');
});

test('tampering, another key, another purpose or another context all fail', () => {
  const master = Buffer.alloc(32, 1);
  const box = secretBox(deriveKey(master, 'upstream-keys'));
  const sealed = box.seal('secret', 'ctx');
  const parts = sealed.split('$');
  const body = Buffer.from(parts[3] as string, 'base64url');
  body[0] = (body[0] as number) ^ 1;
  parts[3] = body.toString('base64url');
  assert.throws(() => box.open(parts.join('$'), 'ctx'));
  assert.throws(() => secretBox(deriveKey(master, 'totp')).open(sealed, 'ctx'));
  assert.throws(() =>
    secretBox(deriveKey(Buffer.alloc(32, 2), 'upstream-keys')).open(sealed, 'ctx'),
  );
  assert.throws(() => box.open(sealed, 'other'));
  assert.throws(() => box.open('enc$v1$a$b$c'));
});

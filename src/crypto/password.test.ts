import assert from 'node:assert/strict';
import nodeCrypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { test, type TestContext } from 'node:test';
import { COMMON_PASSWORDS } from './common-passwords.js';
import {
  burnPasswordCheck,
  DEFAULT_SCRYPT,
  hashPassword,
  needsRehash,
  passwordProblem,
  PASSWORD_MAX_BYTES,
  PASSWORD_MIN_LENGTH,
  verifyPassword,
  type ScryptParams,
} from './index.js';

/** Cheap parameters so the suite stays fast; DEFAULT_SCRYPT gets one test of its own. */
const FAST: ScryptParams = { n: 1024, r: 8, p: 1 };
const GOOD = 'correct horse battery';

/** Counts calls to crypto.scrypt, as password.ts sees it through its named import. */
function spyOnScrypt(t: TestContext) {
  const spy = t.mock.method(nodeCrypto, 'scrypt');
  syncBuiltinESMExports();
  t.after(() => {
    spy.mock.restore();
    syncBuiltinESMExports();
  });
  return spy;
}

test('a hash is self-describing and verifies the password it was made from', async () => {
  const stored = await hashPassword(GOOD, FAST);
  const [scheme, n, r, p, salt, key, ...rest] = stored.split('$');
  assert.deepEqual([scheme, n, r, p, rest], ['scrypt', 'n=1024', 'r=8', 'p=1', []]);
  assert.equal(Buffer.from(salt ?? '', 'base64url').length, 16);
  assert.equal(Buffer.from(key ?? '', 'base64url').length, 32);
  assert.match(stored, /^scrypt\$n=1024\$r=8\$p=1\$[\w-]{22}\$[\w-]{43}$/);
  assert.equal(await verifyPassword(GOOD, stored), true);
});

test('each hash has its own salt', async () => {
  const [a, b] = await Promise.all([hashPassword(GOOD, FAST), hashPassword(GOOD, FAST)]);
  assert.notEqual(a, b);
});

test('a wrong password is refused', async () => {
  const stored = await hashPassword(GOOD, FAST);
  assert.equal(await verifyPassword('correct horse battery!', stored), false);
  assert.equal(await verifyPassword('Correct horse battery', stored), false);
  assert.equal(await verifyPassword('', stored), false);
});

test('the same text in another Unicode form verifies (NFC before hashing)', async () => {
  const composed = 'caf\u00e9 au lait, s\u2019il vous pla\u00eet';
  const stored = await hashPassword(composed, FAST);
  assert.equal(await verifyPassword(composed.normalize('NFD'), stored), true);
});

test('DEFAULT_SCRYPT hashes and verifies (the real cost, once)', async () => {
  assert.deepEqual(DEFAULT_SCRYPT, { n: 131072, r: 8, p: 1 });
  const stored = await hashPassword(GOOD, DEFAULT_SCRYPT);
  assert.match(stored, /^scrypt\$n=131072\$r=8\$p=1\$/);
  assert.equal(await verifyPassword(GOOD, stored), true);
  assert.equal(needsRehash(stored, DEFAULT_SCRYPT), false);
});

test('malformed and absurd stored hashes are refused without hashing', async (t) => {
  const scrypt = spyOnScrypt(t);
  const good = await hashPassword(GOOD, FAST);
  scrypt.mock.resetCalls();
  const [, , , , salt, key] = good.split('$');
  const tail = `${salt}$${key}`;
  const malformed = [
    '',
    'nonsense',
    good.replace('scrypt$', 'bcrypt$'),
    `${good}$extra`,
    good.slice(0, -1),
    `scrypt$n=1024$r=8$p=1$${salt}`,
    `scrypt$n=1024$r=8$p=1$${salt}$${key}==`,
    `scrypt$n=1024$r=8$p=1$${salt}!$${key}`,
    `scrypt$r=8$n=1024$p=1$${tail}`,
    `scrypt$n=01024$r=8$p=1$${tail}`,
    `scrypt$n=1e3$r=8$p=1$${tail}`,
    `scrypt$n=-1024$r=8$p=1$${tail}`,
    `scrypt$n=1000$r=8$p=1$${tail}`,
    `scrypt$n=1$r=8$p=1$${tail}`,
    `scrypt$n=2097152$r=8$p=1$${tail}`,
    `scrypt$n=1024$r=65$p=1$${tail}`,
    `scrypt$n=1024$r=8$p=17$${tail}`,
    `scrypt$n=1024$r=0$p=1$${tail}`,
    `scrypt$n=1048576$r=64$p=16$${tail}`,
    `scrypt$n=1024$r=8$p=1$${tail}`.padEnd(10_000, 'A'),
  ];
  for (const stored of malformed) {
    assert.equal(await verifyPassword(GOOD, stored), false, stored.slice(0, 80));
    assert.equal(needsRehash(stored, FAST), true, stored.slice(0, 80));
  }
  assert.equal(scrypt.mock.callCount(), 0, 'no malformed hash reached scrypt');
});

test('a password over 256 UTF-8 bytes is refused by verify before hashing', async (t) => {
  const stored = await hashPassword('a'.repeat(PASSWORD_MAX_BYTES), FAST);
  const scrypt = spyOnScrypt(t);
  assert.equal(await verifyPassword('a'.repeat(PASSWORD_MAX_BYTES + 1), stored), false);
  assert.equal(await verifyPassword('é'.repeat(129), stored), false, '258 bytes in 129 chars');
  assert.equal(await verifyPassword('a'.repeat(10_000_000), stored), false);
  assert.equal(scrypt.mock.callCount(), 0);
  await burnPasswordCheck('a'.repeat(PASSWORD_MAX_BYTES + 1), FAST);
  assert.equal(scrypt.mock.callCount(), 0, 'the decoy check skips what verify skips');

  assert.equal(await verifyPassword('a'.repeat(PASSWORD_MAX_BYTES), stored), true, '256 is fine');
  await assert.rejects(hashPassword('a'.repeat(PASSWORD_MAX_BYTES + 1), FAST), RangeError);
});

test('hashPassword refuses parameters verify would refuse', async () => {
  for (const params of [
    { n: 1000, r: 8, p: 1 },
    { n: 2 ** 21, r: 8, p: 1 },
    { n: 1024, r: 65, p: 1 },
    { n: 1024, r: 8, p: 0 },
    { n: 1024, r: 1.5, p: 1 },
    { n: 2 ** 20, r: 16, p: 1 }, // 2 GiB of scratch
  ]) {
    await assert.rejects(hashPassword(GOOD, params), RangeError, JSON.stringify(params));
  }
});

test('needsRehash: true for any weaker parameter, false for equal or stronger', async () => {
  const stored = await hashPassword(GOOD, { n: 2048, r: 8, p: 2 });
  assert.equal(needsRehash(stored, { n: 2048, r: 8, p: 2 }), false);
  assert.equal(needsRehash(stored, { n: 1024, r: 4, p: 1 }), false);
  assert.equal(needsRehash(stored, { n: 4096, r: 8, p: 2 }), true);
  assert.equal(needsRehash(stored, { n: 2048, r: 16, p: 2 }), true);
  assert.equal(needsRehash(stored, { n: 2048, r: 8, p: 3 }), true);
});

test('burnPasswordCheck runs one scrypt with the given parameters and resolves', async (t) => {
  const scrypt = spyOnScrypt(t);
  await burnPasswordCheck(GOOD, FAST);
  await burnPasswordCheck('another password', FAST);
  assert.equal(scrypt.mock.callCount(), 2);
  const options = scrypt.mock.calls[0]?.arguments[3] as { N: number; r: number; p: number };
  assert.deepEqual([options.N, options.r, options.p], [1024, 8, 1]);
});

test('passwordProblem: length counts code points, so 12 emoji are long enough', () => {
  assert.equal(PASSWORD_MIN_LENGTH, 12);
  assert.equal(passwordProblem('🔒'.repeat(12)), undefined);
  assert.match(passwordProblem('🔒'.repeat(11)) ?? '', /at least 12 characters/);
  assert.match(passwordProblem('short') ?? '', /at least 12 characters/);
  assert.equal(passwordProblem('eleven char'.padEnd(12, 's')), undefined);
});

test('passwordProblem: over 256 UTF-8 bytes is refused', () => {
  assert.equal(passwordProblem('x'.repeat(256)), undefined);
  assert.match(passwordProblem('x'.repeat(257)) ?? '', /at most 256 bytes/);
  assert.match(passwordProblem('🔒'.repeat(65)) ?? '', /at most 256 bytes/, '65 emoji, 260 bytes');
});

test('passwordProblem: common passwords are refused, whatever their case', () => {
  for (const common of ['123456789012', 'password1234', 'qwertyuiop12', 'PasswordPassword']) {
    assert.match(passwordProblem(common) ?? '', /most common/, common);
  }
  assert.equal(passwordProblem('purple monkey dishwasher'), undefined);
});

test('passwordProblem: the username is refused as a password, whatever its case', () => {
  assert.match(passwordProblem('Alice.Liddell', 'alice.liddell') ?? '', /username/);
  assert.equal(passwordProblem('Alice.Liddell!', 'alice.liddell'), undefined);
  assert.equal(passwordProblem('purple monkey dishwasher', ''), undefined);
});

test('the common-password list is lower case, long entries only, a few hundred at most', () => {
  assert.ok(COMMON_PASSWORDS.size >= 100 && COMMON_PASSWORDS.size <= 500);
  for (const entry of COMMON_PASSWORDS) {
    assert.equal(entry, entry.toLowerCase(), entry);
    assert.ok([...entry].length >= PASSWORD_MIN_LENGTH, entry);
  }
});

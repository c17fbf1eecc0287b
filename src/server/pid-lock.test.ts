import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { acquirePidLock } from './pid-lock.js';

test('the lock is exclusive, 0600, and released', () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-pid-'));
  const release = acquirePidLock(home);
  const path = join(home, 'palisade.pid');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  release();
  assert.equal(existsSync(path), false);
});

test('a live holder is refused with a clear message', () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-pid-'));
  writeFileSync(join(home, 'palisade.pid'), String(process.ppid));
  assert.throws(() => acquirePidLock(home), /already serving from .*stop it first/);
});

test('a stale pid file from a dead process is recovered', () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-pid-'));
  writeFileSync(join(home, 'palisade.pid'), '2147483646\n');
  const release = acquirePidLock(home);
  release();
});

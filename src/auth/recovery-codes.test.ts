import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  hashRecoveryCode,
  looksLikeRecoveryCode,
  newRecoveryCodes,
  RECOVERY_CODE_COUNT,
} from './index.js';

test('10 distinct codes, dash-grouped, from an alphabet without look-alikes', () => {
  const codes = newRecoveryCodes();
  assert.equal(RECOVERY_CODE_COUNT, 10);
  assert.equal(codes.length, 10);
  assert.equal(new Set(codes).size, 10);
  for (const code of codes) {
    assert.match(code, /^[2-9a-z]{4}(-[2-9a-z]{4}){3}$/, code);
    assert.doesNotMatch(code, /[01oli]/, code);
  }
  assert.equal(newRecoveryCodes(3).length, 3);
});

test('each code carries at least 60 random bits', () => {
  const [code = ''] = newRecoveryCodes(1);
  const symbols = code.replaceAll('-', '').length;
  assert.ok(symbols * Math.log2(31) >= 60, `${symbols} symbols of 31`);
});

test('every symbol of the alphabet turns up, so draws cover it', () => {
  const seen = new Set(newRecoveryCodes(200).join('').replaceAll('-', ''));
  assert.equal(seen.size, 31);
});

test('hashing normalises case, spaces and dashes', () => {
  const hash = hashRecoveryCode('k7qd-9xm2-4hpa');
  assert.match(hash, /^[0-9a-f]{64}$/);
  assert.equal(hashRecoveryCode('K7QD 9XM2-4HPA'), hash);
  assert.equal(hashRecoveryCode(' k7qd9xm24hpa '), hash);
  assert.notEqual(hashRecoveryCode('k7qd-9xm2-4hpb'), hash);
});

test('recovery codes are told apart from TOTP codes', () => {
  for (const code of newRecoveryCodes()) {
    assert.equal(looksLikeRecoveryCode(code), true, code);
    assert.equal(looksLikeRecoveryCode(code.toUpperCase().replaceAll('-', ' ')), true, code);
  }
  for (const other of [
    '123456',
    '123 456',
    '',
    'k7qd-9xm2',
    'k7qd-9xm2-4hpa-3bc0',
    'x'.repeat(100),
  ]) {
    assert.equal(looksLikeRecoveryCode(other), false, other);
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { acceptTotp, newTotpSecret, totpCode, totpQrSvg, totpUrl, TOTP_PERIOD_S } from './index.js';

/** A fixed instant in the middle of a step, and its step number. */
const NOW = Date.UTC(2025, 0, 1, 12, 0, 15);
const STEP = Math.floor(NOW / 1000 / TOTP_PERIOD_S);
const at = (deltaSteps: number) => NOW + deltaSteps * TOTP_PERIOD_S * 1000;

test('a secret is 160 random bits: 32 base32 characters, new each time', () => {
  const secret = newTotpSecret();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  assert.notEqual(newTotpSecret(), secret);
});

test('RFC 6238 test vector: SHA1, 6 digits, 30 s', () => {
  // The RFC's secret is ASCII "12345678901234567890"; its 8-digit code at 59 s is 94287082.
  const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
  assert.equal(totpCode(secret, 59_000), '287082');
  assert.equal(totpCode(secret, 1_111_111_109_000), '081804');
});

test('the code for now, the step before and the step after are accepted', () => {
  const secret = newTotpSecret();
  assert.equal(acceptTotp(secret, totpCode(secret, NOW), null, NOW), STEP);
  assert.equal(acceptTotp(secret, totpCode(secret, at(-1)), null, NOW), STEP - 1);
  assert.equal(acceptTotp(secret, totpCode(secret, at(1)), null, NOW), STEP + 1);
});

test('codes two steps away are refused', () => {
  const secret = newTotpSecret();
  for (const delta of [-2, 2]) {
    const code = totpCode(secret, at(delta));
    // A code of another step may equal one in the window by chance (1 in 10^6 per step).
    const collides = [-1, 0, 1].some((d) => totpCode(secret, at(d)) === code);
    if (!collides) assert.equal(acceptTotp(secret, code, null, NOW), null, `delta ${delta}`);
  }
});

test('a code is usable once: the returned step, passed back, refuses it', () => {
  const secret = newTotpSecret();
  const code = totpCode(secret, NOW);
  const step = acceptTotp(secret, code, null, NOW);
  assert.equal(step, STEP);
  assert.equal(acceptTotp(secret, code, step, NOW), null);
  assert.equal(acceptTotp(secret, code, step, NOW + 10_000), null, 'later in the same step');
  assert.equal(acceptTotp(secret, totpCode(secret, at(1)), step, at(1)), STEP + 1, 'next step');
});

test('an older code is refused once a newer one was accepted', () => {
  const secret = newTotpSecret();
  const newer = acceptTotp(secret, totpCode(secret, at(1)), null, NOW);
  assert.equal(newer, STEP + 1);
  assert.equal(acceptTotp(secret, totpCode(secret, NOW), newer, NOW), null);
  assert.equal(acceptTotp(secret, totpCode(secret, at(-1)), newer, NOW), null);
});

test('spaces are ignored; non-digits and other lengths are refused', () => {
  const secret = newTotpSecret();
  const code = totpCode(secret, NOW);
  assert.equal(acceptTotp(secret, ` ${code.slice(0, 3)} ${code.slice(3)} `, null, NOW), STEP);
  for (const bad of [
    '',
    code.slice(0, 5),
    `${code}0`,
    `0${code}`,
    `${code.slice(0, 5)}a`,
    code.replace(/[0-9]/, 'x'),
    `${code.slice(0, 3)}-${code.slice(3)}`,
    '１２３４５６',
    '12345６',
  ]) {
    assert.equal(acceptTotp(secret, bad, null, NOW), null, JSON.stringify(bad));
  }
});

test('the otpauth URL names the issuer, the account and the secret', () => {
  const secret = newTotpSecret();
  const url = new URL(totpUrl(secret, 'alice'));
  assert.equal(url.protocol, 'otpauth:');
  assert.equal(url.host, 'totp');
  assert.equal(decodeURIComponent(url.pathname), '/Palisade:alice');
  assert.equal(url.searchParams.get('issuer'), 'Palisade');
  assert.equal(url.searchParams.get('secret'), secret);
  assert.equal(url.searchParams.get('algorithm'), 'SHA1');
  assert.equal(url.searchParams.get('digits'), '6');
  assert.equal(url.searchParams.get('period'), '30');
});

test('the QR code is an SVG document without scripts', async () => {
  const svg = await totpQrSvg(totpUrl(newTotpSecret(), 'alice'));
  assert.ok(svg.startsWith('<svg'), svg.slice(0, 40));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.doesNotMatch(svg, /<script/i);
  assert.doesNotMatch(svg, /\son\w+=/i, 'no event handler attributes');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLoginThrottle, type LoginThrottle } from './index.js';
import { clientKey } from './login-throttle.js';

const MINUTE = 60_000;

/** The default throttle (5 per 15 min) on a clock the test moves. */
function throttle() {
  const clock = { now: 1_000_000 };
  return { limits: createLoginThrottle({ now: () => clock.now }), clock };
}

function fail(limits: LoginThrottle, times: number, ip: string, user: string) {
  for (let i = 0; i < times; i += 1) limits.recordFailure(ip, user);
}

test('5 failures are allowed, then attempts wait, with a Retry-After in (0, 900]', () => {
  const { limits } = throttle();
  for (let i = 0; i < 5; i += 1) {
    assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 0, `attempt ${i + 1}`);
    limits.recordFailure('203.0.113.7', 'alice');
  }
  const wait = limits.retryAfter('203.0.113.7', 'alice');
  assert.ok(wait > 0 && wait <= 900, `Retry-After ${wait}`);
  assert.equal(wait, 900, 'all five just now: the whole window');
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), wait, 'asking counts nothing');
});

test('an account refused after 5 failures is refused from another address too', () => {
  const { limits } = throttle();
  for (let i = 0; i < 5; i += 1) limits.recordFailure(`198.51.100.${i}`, 'alice');
  assert.ok(limits.retryAfter('192.0.2.99', 'alice') > 0);
  assert.ok(limits.retryAfter('192.0.2.99', 'ALICE') > 0, 'usernames count lower-cased');
  assert.equal(limits.retryAfter('192.0.2.99', 'bob'), 0, 'other accounts are untouched');
});

test('an address refused after 5 failures is refused for another username too', () => {
  const { limits } = throttle();
  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) {
    limits.recordFailure('203.0.113.7', user);
  }
  assert.ok(limits.retryAfter('203.0.113.7', 'mallory') > 0);
  assert.equal(limits.retryAfter('203.0.113.8', 'mallory'), 0, 'other addresses are untouched');
});

test('the window slides: each failure stops counting 15 minutes after it', () => {
  const { limits, clock } = throttle();
  const start = clock.now;
  for (let i = 0; i < 5; i += 1) {
    clock.now = start + i * MINUTE;
    limits.recordFailure('203.0.113.7', 'alice');
  }
  clock.now = start + 5 * MINUTE;
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 600, 'the first leaves at 15 min');
  clock.now = start + 15 * MINUTE;
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 0);
  limits.recordFailure('203.0.113.7', 'alice');
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 60, 'the second leaves at 16 min');
  clock.now = start + 16 * MINUTE;
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 0);
});

test('the limits are options', () => {
  const clock = { now: 0 };
  const limits = createLoginThrottle({ maxFailures: 2, windowMs: 10_000, now: () => clock.now });
  fail(limits, 2, '203.0.113.7', 'alice');
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 10);
  clock.now = 10_000;
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 0);
});

test('an IPv6 client counts by its /64; IPv4-mapped addresses count as IPv4', () => {
  const { limits } = throttle();
  for (let i = 1; i <= 5; i += 1) limits.recordFailure(`2001:db8:1:2::${i}`, `user${i}`);
  assert.ok(limits.retryAfter('2001:db8:1:2:ffff:ffff:ffff:ffff', 'someone') > 0);
  assert.equal(limits.retryAfter('2001:db8:1:3::1', 'someone'), 0);

  fail(limits, 5, '::ffff:192.0.2.1', 'x');
  assert.ok(limits.retryAfter('192.0.2.1', 'y') > 0);

  assert.equal(clientKey('2001:DB8:0001:0002:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(clientKey('::1'), '0:0:0:0::/64');
  assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(clientKey('1::4:5:6:1.2.3.4'), '1:0:0:4::/64');
  assert.equal(clientKey('0:0:0:0:0:ffff:c000:201'), '192.0.2.1');
  assert.equal(clientKey('192.0.2.1'), '192.0.2.1');
  assert.equal(clientKey('not an address'), 'not an address');
});

test('memory is capped: past maxIds the least recently failed ids are forgotten', () => {
  const clock = { now: 0 };
  const limits = createLoginThrottle({ maxIds: 10, now: () => clock.now });
  fail(limits, 5, '203.0.113.7', 'alice');
  for (let i = 0; i < 10; i += 1) limits.recordFailure(`198.51.100.${i}`, `user${i}`);
  assert.equal(limits.retryAfter('203.0.113.7', 'alice'), 0);
});

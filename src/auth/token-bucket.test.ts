import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRateLimiter } from './token-bucket.js';

test('a burst is allowed, then the sustained rate applies with a Retry-After', () => {
  let clock = 0;
  const limiter = createRateLimiter({ perSecond: 2, burst: 3 }, { now: () => clock });
  assert.equal(limiter.take('a'), 0);
  assert.equal(limiter.take('a'), 0);
  assert.equal(limiter.take('a'), 0);
  assert.equal(limiter.take('a'), 1);
  clock += 500;
  assert.equal(limiter.take('a'), 0, 'half a second refills one token at 2/s');
  assert.equal(limiter.take('a'), 1);
  assert.equal(limiter.take('b'), 0, 'buckets are independent');
});

test('per-key limits override the defaults', () => {
  let clock = 0;
  const limiter = createRateLimiter({ perSecond: 100, burst: 100 }, { now: () => clock });
  const slow = { perSecond: 1 / 60, burst: 1 };
  assert.equal(limiter.take('k', slow), 0);
  assert.equal(limiter.take('k', slow), 60);
  clock += 60_000;
  assert.equal(limiter.take('k', slow), 0);
});

test('memory stays bounded under many ids', () => {
  let clock = 0;
  const limiter = createRateLimiter({ perSecond: 1, burst: 5 }, { maxIds: 100, now: () => clock });
  for (let i = 0; i < 10_000; i++) {
    clock += 1;
    limiter.take(`ip:${i}`);
  }
  assert.ok(limiter.size() <= 100, `size ${limiter.size()}`);
});

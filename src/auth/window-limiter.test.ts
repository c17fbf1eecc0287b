import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createWindowLimiter } from './window-limiter.js';

/** A limiter of 100 per 10 s on a clock the test moves. */
function limiter(options: { maxIds?: number } = {}) {
  const clock = { now: 1_000_000 };
  const limit = createWindowLimiter({
    limit: 100,
    windowMs: 10_000,
    now: () => clock.now,
    ...options,
  });
  return { limit, clock };
}

function takeMany(take: () => number, count: number): number[] {
  return Array.from({ length: count }, take);
}

test('exactly 100 requests are allowed at once; the 101st waits the whole window', () => {
  const { limit } = limiter();
  assert.deepEqual(
    takeMany(() => limit.take('peer'), 100),
    Array.from({ length: 100 }, () => 0),
  );
  assert.equal(limit.take('peer'), 10);
  assert.equal(limit.take('peer'), 10, 'still refused; a refusal is not counted');
});

test('100 in any 10 s however they are spread; Retry-After is whole seconds, at least 1', () => {
  const { limit, clock } = limiter();
  const start = clock.now;
  // One every 99 ms: the hundredth lands at 9.801 s.
  for (let i = 0; i < 100; i++) {
    clock.now = start + i * 99;
    assert.equal(limit.take('peer'), 0, `request ${i + 1}`);
  }
  clock.now = start + 9_950;
  assert.equal(limit.take('peer'), 1, '50 ms to wait is 1 s');
  clock.now = start + 9_999;
  assert.equal(limit.take('peer'), 1, '1 ms to wait is still 1 s');

  // The first request leaves the window at exactly 10 s: one more may come, then not.
  clock.now = start + 10_000;
  assert.equal(limit.take('peer'), 0);
  assert.equal(limit.take('peer'), 1, 'the second request (at 99 ms) is still inside');
  clock.now = start + 10_099;
  assert.equal(limit.take('peer'), 0);
});

test('the window slides: no burst of 200 across a fixed window boundary', () => {
  const { limit, clock } = limiter();
  const start = clock.now;
  assert.equal(limit.take('peer'), 0);
  clock.now = start + 9_900;
  assert.deepEqual(
    takeMany(() => limit.take('peer'), 99),
    Array.from({ length: 99 }, () => 0),
  );
  // A fixed window starting at `start` would reset here and allow 100 more.
  clock.now = start + 10_050;
  assert.equal(limit.take('peer'), 0, 'only the request at 0 s has left the window');
  const wait = limit.take('peer');
  assert.equal(wait, 10, 'the rest were made at 9.9 s: 9.85 s to wait, rounded up');
  clock.now = start + 19_899;
  assert.ok(limit.take('peer') > 0);
  clock.now = start + 19_900;
  assert.deepEqual(
    takeMany(() => limit.take('peer'), 99),
    Array.from({ length: 99 }, () => 0),
  );
  assert.ok(limit.take('peer') > 0);
});

test('ids are counted apart', () => {
  const { limit } = limiter();
  takeMany(() => limit.take('a'), 100);
  assert.ok(limit.take('a') > 0);
  assert.equal(limit.take('b'), 0);
  assert.deepEqual(
    takeMany(() => limit.take('b'), 99),
    Array.from({ length: 99 }, () => 0),
  );
  assert.ok(limit.take('b') > 0);
  assert.ok(limit.take('a') > 0, 'b did not use up or free any of a');
  assert.equal(limit.size(), 2);
});

test('past maxIds, the id used least recently is forgotten, and starts afresh', () => {
  const { limit, clock } = limiter({ maxIds: 3 });
  takeMany(() => limit.take('a'), 100);
  limit.take('b');
  limit.take('c');
  assert.ok(limit.take('a') > 0, 'a is at its limit (and now the most recently used)');
  assert.equal(limit.size(), 3);

  limit.take('d');
  assert.equal(limit.size(), 3, 'never more than maxIds');
  // b was used least recently and went; a stayed, still at its limit.
  assert.ok(limit.take('a') > 0, 'a kept its count');

  limit.take('e'); // c goes
  limit.take('f'); // d goes
  limit.take('g'); // a goes at last
  assert.deepEqual(
    takeMany(() => limit.take('a'), 100),
    Array.from({ length: 100 }, () => 0),
    'a forgotten id starts afresh',
  );
  assert.ok(limit.take('a') > 0);
  clock.now += 10_000;
  assert.equal(limit.take('a'), 0, 'a whole window later it may go again');
});

test('a limit of ten million, as benchmarks set, works at 1,000 requests a second', () => {
  const clock = { now: 0 };
  const limit = createWindowLimiter({ limit: 10_000_000, windowMs: 10_000, now: () => clock.now });
  for (let i = 0; i < 50_000; i += 1) {
    clock.now += 1; // 1,000 requests a second for 50 s
    assert.equal(limit.take('busy'), 0);
  }
  assert.equal(limit.size(), 1);
});

test('thousands of distinct ids cost constant time each', () => {
  const { limit } = limiter({ maxIds: 1000 });
  for (let i = 0; i < 100_000; i += 1) limit.take(`id-${i}`);
  assert.equal(limit.size(), 1000);
});

test('peek answers what take would, and counts nothing', () => {
  const { limit, clock } = limiter();
  assert.equal(limit.peek('peer'), 0);
  assert.equal(limit.size(), 0, 'peeking at an unknown id does not remember it');
  takeMany(() => limit.take('peer'), 99);
  for (let i = 0; i < 1000; i += 1) assert.equal(limit.peek('peer'), 0);
  assert.equal(limit.take('peer'), 0, 'the 100th is still allowed after all those peeks');
  assert.equal(limit.peek('peer'), 10);
  assert.equal(limit.take('peer'), 10);
  clock.now += 9_001;
  assert.equal(limit.peek('peer'), 1);
  clock.now += 999;
  assert.equal(limit.peek('peer'), 0, 'the window has passed');
  assert.equal(limit.take('peer'), 0);
});

test('peek does not count as a use: a peeked id is still the least recently used', () => {
  const { limit } = limiter({ maxIds: 2 });
  takeMany(() => limit.take('a'), 100);
  limit.take('b');
  assert.ok(limit.peek('a') > 0);
  limit.take('c'); // a goes, though it was peeked after b was used
  assert.equal(limit.peek('a'), 0);
  assert.equal(limit.size(), 2);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDuration, parseBytes, parseDuration } from './units.js';

test('parseDuration reads the documented units', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('12h'), 43_200_000);
  assert.equal(parseDuration('30d'), 2_592_000_000);
  assert.equal(parseDuration('250ms'), 250);
});

test('parseDuration refuses what is not a duration', () => {
  for (const bad of ['', '10', '-5s', '1w', 's', '1.5.5m', '10 s', 'NaNs']) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
});

test('parseBytes reads sizes and refuses nonsense', () => {
  assert.equal(parseBytes('10mb'), 10 * 1024 * 1024);
  assert.equal(parseBytes('512KB'), 512 * 1024);
  assert.equal(parseBytes('1234'), 1234);
  assert.equal(parseBytes('ten'), undefined);
  assert.equal(parseBytes('-1'), undefined);
});

test('formatDuration picks the largest whole unit', () => {
  assert.equal(formatDuration(86_400_000), '1d');
  assert.equal(formatDuration(90_000), '90s');
  assert.equal(formatDuration(1500), '1500ms');
});

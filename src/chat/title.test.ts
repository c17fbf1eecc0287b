import assert from 'node:assert/strict';
import { test } from 'node:test';
import { autoTitle } from './title.js';

test('a title is the first non-blank line with its whitespace collapsed', () => {
  assert.equal(
    autoTitle('\n   \n  How   do I\treverse  a list?  \nin Python'),
    'How do I reverse a list?',
  );
  assert.equal(autoTitle('one\r\ntwo'), 'one');
  assert.equal(autoTitle(' \n\t '), undefined);
});

test('a long line is cut at a word boundary with an ellipsis, 60 characters at most', () => {
  const words = 'The quick brown fox jumps over the lazy dog and keeps running far away';
  const title = autoTitle(words);
  assert.equal(title, 'The quick brown fox jumps over the lazy dog and keeps…');
  assert.ok([...(title ?? '')].length <= 60);
  assert.ok(words.startsWith((title ?? '').slice(0, -1)));
});

test('a cut right before a space keeps the whole last word', () => {
  const line = `${'a'.repeat(29)} ${'b'.repeat(29)} tail`;
  assert.equal(autoTitle(line), `${'a'.repeat(29)} ${'b'.repeat(29)}…`);
});

test('exactly 60 characters are kept whole; one long word is cut inside it', () => {
  assert.equal(autoTitle('x'.repeat(60)), 'x'.repeat(60));
  assert.equal(autoTitle('y'.repeat(100)), `${'y'.repeat(59)}…`);
});

test('characters outside the BMP count once and are never split', () => {
  const title = autoTitle('😀'.repeat(70)) ?? '';
  assert.equal([...title].length, 60);
  assert.ok(title.endsWith('😀…'));
});

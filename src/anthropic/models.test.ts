import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createModelMap, parseModelMapSpec, toAnthropicModelList } from './models.js';

const local = new Set(['qwen3:8b', 'llama3.2:3b', 'claude-local']);
const isLocal = (name: string) => local.has(name);

test('exact entries win, then local names, then globs in order, then the fallback', () => {
  const map = createModelMap(
    {
      'claude-3-haiku-20240307': 'llama3.2:3b',
      'claude-*-haiku-*': 'llama3.2:3b',
      'claude-*': 'qwen3:8b',
      'qwen3:8b': 'should-not-shadow?',
    },
    'fallback-model',
  );
  assert.equal(map.resolve('claude-3-haiku-20240307', isLocal), 'llama3.2:3b');
  assert.equal(map.resolve('CLAUDE-3-HAIKU-20240307', isLocal), 'llama3.2:3b');
  assert.equal(map.resolve('claude-3-5-haiku-20241022', isLocal), 'llama3.2:3b');
  assert.equal(map.resolve('claude-sonnet-4-5', isLocal), 'qwen3:8b');
  assert.equal(map.resolve('claude-local', isLocal), 'claude-local', 'a local model beats a glob');
  assert.equal(
    map.resolve('qwen3:8b', isLocal),
    'should-not-shadow?',
    'explicit entries beat local names',
  );
  assert.equal(map.resolve('gpt-4o', isLocal), 'fallback-model');
  assert.equal(map.resolve('llama3.2:3b'), 'fallback-model', 'no local check given');
});

test('without a fallback an unknown name resolves to undefined', () => {
  const map = createModelMap([['claude-opus-*', 'big']]);
  assert.equal(map.resolve('claude-opus-4-1'), 'big');
  assert.equal(map.resolve('claude-sonnet-4'), undefined);
  assert.equal(map.resolve('__proto__'), undefined);
  assert.equal(map.resolve('constructor'), undefined);
  assert.equal(map.fallback, undefined);
  assert.deepEqual(map.entries, [['claude-opus-*', 'big']]);
});

test('glob characters other than * and ? are literal', () => {
  const map = createModelMap({ 'claude-3.5-*': 'a', 'claude-?': 'b' });
  assert.equal(map.resolve('claude-3.5-sonnet'), 'a');
  assert.equal(map.resolve('claude-3x5-sonnet'), undefined);
  assert.equal(map.resolve('claude-4'), 'b');
});

test('parseModelMapSpec reads NAME=MODEL lists with one optional fallback', () => {
  assert.deepEqual(parseModelMapSpec('claude-*=qwen3:8b, claude-3-haiku=llama3 ,,'), {
    entries: [
      ['claude-*', 'qwen3:8b'],
      ['claude-3-haiku', 'llama3'],
    ],
  });
  assert.deepEqual(parseModelMapSpec('claude-opus-*=org/Big=Model,qwen3:8b'), {
    entries: [['claude-opus-*', 'org/Big=Model']],
    fallback: 'qwen3:8b',
  });
  assert.deepEqual(parseModelMapSpec(''), { entries: [] });
  const spec = parseModelMapSpec('claude-*-haiku-*=small,*=big');
  assert.equal(createModelMap(spec.entries, spec.fallback).resolve('claude-3-haiku-x'), 'small');
  assert.equal(createModelMap(spec.entries, spec.fallback).resolve('anything'), 'big');
});

test('parseModelMapSpec names the bad entry', () => {
  assert.throws(() => parseModelMapSpec('=qwen'), /"=qwen" must be NAME=MODEL/);
  assert.throws(() => parseModelMapSpec('claude-*='), /"claude-\*=" must be NAME=MODEL/);
  assert.throws(() => parseModelMapSpec('a,b'), /"b" is a second fallback model/);
  assert.throws(() => parseModelMapSpec('claude x=q'), /spaces, control characters/);
  assert.throws(() => parseModelMapSpec(`c=${'m'.repeat(257)}`), /over 256 characters/);
});

test('toAnthropicModelList answers in Anthropic list format', () => {
  assert.deepEqual(
    toAnthropicModelList([
      { id: 'qwen3:8b', created: 1_700_000_000 },
      { id: 'llama3', created: Number.NaN },
      { id: 'x' },
    ]),
    {
      data: [
        {
          type: 'model',
          id: 'qwen3:8b',
          display_name: 'qwen3:8b',
          created_at: '2023-11-14T22:13:20.000Z',
        },
        {
          type: 'model',
          id: 'llama3',
          display_name: 'llama3',
          created_at: '1970-01-01T00:00:00.000Z',
        },
        { type: 'model', id: 'x', display_name: 'x', created_at: '1970-01-01T00:00:00.000Z' },
      ],
      has_more: false,
      first_id: 'qwen3:8b',
      last_id: 'x',
    },
  );
  assert.deepEqual(toAnthropicModelList([]), {
    data: [],
    has_more: false,
    first_id: null,
    last_id: null,
  });
  assert.doesNotThrow(() => toAnthropicModelList([{ id: 'far', created: 1e20 }]));
});

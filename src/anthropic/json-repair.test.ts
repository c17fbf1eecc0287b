import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createJsonRepairStream,
  MAX_JSON_DEPTH,
  nestsDeeperThan,
  parseToolArguments,
  RAW_ARGUMENTS_KEY,
  repairJson,
} from './json-repair.js';

/** A small deterministic PRNG (mulberry32) so fuzz failures reproduce. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function repaired(text: string): { value: unknown; lossy: boolean } {
  const { json, lossy } = repairJson(text);
  return { value: JSON.parse(json), lossy };
}

/** Splits text at random points and pushes the pieces; returns every output and the end. */
function pushSplit(text: string, rand: () => number) {
  const stream = createJsonRepairStream();
  const outputs: string[] = [];
  let at = 0;
  while (at < text.length) {
    const size = 1 + Math.floor(rand() * 8);
    outputs.push(stream.push(text.slice(at, at + size)));
    at += size;
  }
  return { outputs, end: stream.end(), lossy: stream.lossy };
}

test('valid objects pass through unchanged in meaning and are not lossy', () => {
  const samples = [
    {},
    { a: 1 },
    { city: 'Paris', unit: 'c', days: [1, 2, 3], nested: { deep: [{ x: null }, true, false] } },
    { text: 'quote " backslash \\ slash / tab \t newline \n unicode é \u2028 😀' },
    { n: -0.5e-7, big: 9007199254740991, zero: 0, neg: -12 },
    { 'key with spaces': '', '': 'empty key', arr: [[], {}, [[]]] },
  ];
  for (const sample of samples) {
    const text = JSON.stringify(sample, null, 2);
    assert.deepEqual(repaired(text), { value: sample, lossy: false }, text);
  }
  assert.deepEqual(repaired('{"u": "\\u00e9\\ud83d\\ude00"}').value, { u: 'é😀' });
});

test('meaning-preserving repairs are silent', () => {
  const cases: Array<[string, unknown]> = [
    ['```json\n{"city": "Paris"}\n```', { city: 'Paris' }],
    ['```{"a":1}```', { a: 1 }],
    ['{"a": 1, "b": [1, 2,],}', { a: 1, b: [1, 2] }],
    [
      "{'city': 'Rome', 'q': 'say \"hi\"', 'it': 'it\\'s'}",
      { city: 'Rome', q: 'say "hi"', it: "it's" },
    ],
    ['{city: "Bern", max_days: 3}', { city: 'Bern', max_days: 3 }],
    ['{"a": True, "b": False, "c": None, "d": undefined}', { a: true, b: false, c: null, d: null }],
    ['{"text": "line 1\nline 2\ttab"}', { text: 'line 1\nline 2\ttab' }],
    ['{"path": "C:\\Users\\x"}', { path: 'C:\\Users\\x' }],
    ['{"a": 1 "b": 2}', { a: 1, b: 2 }],
    ['{"a": [1 2 3]}', { a: [1, 2, 3] }],
    ['{"a": 1., "b": +2, "c": .5}', { a: 1, b: 2, c: 0.5 }],
    ['{"a": 1}}', { a: 1 }],
    ['  \n {"a": {"b": [1]}} \n', { a: { b: [1] } }],
    ['{"a": {"b": 1,}, }', { a: { b: 1 } }],
    ['', {}],
    ['   ', {}],
    ['null', {}],
  ];
  for (const [text, value] of cases) {
    assert.deepEqual(repaired(text), { value, lossy: false }, text);
  }
});

test('lossy repairs close the object and add the raw text', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['{"path": "a.ts", "content": "hel', { path: 'a.ts', content: 'hel' }],
    ['{"a": {"b": [1, 2', { a: { b: [1, 2] } }],
    ['{"a":', { a: null }],
    ['{"a"', { a: null }],
    ['{"ab', { ab: null }],
    ['{', {}],
    ['{"n": 12', { n: 12 }],
    ['{"n": -', { n: null }],
    ['{"v": tr', { v: 'tr' }],
    ['just some words', {}],
    ['[1, 2]', {}],
    ['"a string"', {}],
    ['42', {}],
    ['{"a": 1}{"b": 2}', { a: 1 }],
    ['{"a": 1} and more', { a: 1 }],
    ['{"a": hello}', { a: 'hello' }],
    ['{"a": NaN}', { a: 'NaN' }],
    ['{"a": 1-2}', { a: null }],
    ['{"a": }', { a: null }],
    ['{"a": [1, }', { a: [1] }],
    ['{"a": [1}', { a: [1] }],
    ['{"a": @}', { a: null }],
  ];
  for (const [text, expected] of cases) {
    const { value, lossy } = repaired(text);
    assert.equal(lossy, true, text);
    assert.deepEqual(value, { ...expected, [RAW_ARGUMENTS_KEY]: text }, text);
  }
});

test('nesting deeper than the limit is cut, not a crash', () => {
  const deep = `{"a":${'['.repeat(200_000)}1${']'.repeat(200_000)}}`;
  const { value, lossy } = repaired(deep);
  assert.equal(lossy, true);
  assert.ok(!nestsDeeperThan(value, MAX_JSON_DEPTH + 1));
  assert.equal((value as Record<string, unknown>)[RAW_ARGUMENTS_KEY], deep);

  const atLimit = `{"a":${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`;
  assert.equal(repaired(atLimit).lossy, false);
});

test('output is always a valid prefix, whatever the split', () => {
  const texts = [
    '{"query": "palisade", "limit": 5, "tags": ["a", "b"], "nested": {"x": -1.5e3, "y": null}}',
    "```json\n{'a': True, b: [1, 2,], 'c': 'x\\'y',}\n```",
    '{"text": "\\u00e9\\n\\"quoted\\"", "esc": "\\q"}',
    '{"a": {"b": {"c": [1, 2, {"d": "e"}]}}}',
  ];
  const rand = random(7);
  for (const text of texts) {
    const whole = repairJson(text);
    for (let round = 0; round < 30; round++) {
      const { outputs, end, lossy } = pushSplit(text, rand);
      assert.equal(outputs.join('') + end, whole.json, text);
      assert.equal(lossy, whole.lossy);
    }
    // every prefix of the input yields output that the end turns into an object
    for (let k = 0; k <= text.length; k++) {
      const stream = createJsonRepairStream();
      const out = stream.push(text.slice(0, k));
      assert.ok(whole.json.startsWith(out), `prefix ${k} of ${text}`);
      const value: unknown = JSON.parse(out + stream.end());
      assert.equal(typeof value, 'object');
    }
  }
});

test('fuzz: any text becomes a JSON object, never an exception', () => {
  const alphabet = [
    '{',
    '}',
    '[',
    ']',
    '"',
    "'",
    ':',
    ',',
    ' ',
    '\n',
    '\\',
    'a',
    '1',
    '-',
    '.',
    'e',
    'T',
    'u',
    '`',
    'ä',
    '\u0000',
    '😀',
  ];
  const rand = random(42);
  for (let round = 0; round < 3000; round++) {
    const length = Math.floor(rand() * 40);
    let text = rand() < 0.7 ? '{' : '';
    for (let i = 0; i < length; i++) text += alphabet[Math.floor(rand() * alphabet.length)];
    const { outputs, end } = pushSplit(text, rand);
    const json = outputs.join('') + end;
    let value: unknown;
    assert.doesNotThrow(
      () => {
        value = JSON.parse(json);
      },
      `${JSON.stringify(text)} -> ${json}`,
    );
    assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), json);
  }
});

test('fuzz: generated valid objects survive any split exactly', () => {
  const rand = random(3);
  const pick = <T>(items: T[]): T => items[Math.floor(rand() * items.length)] as T;
  function generate(depth: number): unknown {
    const kind = depth > 4 ? pick(['s', 'n', 'b']) : pick(['s', 'n', 'b', 'o', 'a', 'z']);
    if (kind === 's')
      return pick(['', 'x', 'with "quotes"', 'back\\slash', 'new\nline', 'ünï', '😀']);
    if (kind === 'n') return pick([0, -1, 3.25, 1e21, -2.5e-8, 42]);
    if (kind === 'b') return rand() < 0.5;
    if (kind === 'z') return null;
    if (kind === 'a')
      return Array.from({ length: Math.floor(rand() * 4) }, () => generate(depth + 1));
    const object: Record<string, unknown> = {};
    for (let i = Math.floor(rand() * 4); i > 0; i--)
      object[pick(['a', 'b', 'key', 'k"q', ''])] = generate(depth + 1);
    return object;
  }
  for (let round = 0; round < 500; round++) {
    const object: Record<string, unknown> = { root: generate(0) };
    const text = JSON.stringify(object, null, rand() < 0.5 ? 2 : undefined);
    const { outputs, end, lossy } = pushSplit(text, rand);
    assert.equal(lossy, false, text);
    assert.deepEqual(JSON.parse(outputs.join('') + end), object, text);
  }
});

test('complete turns true when the top-level object closes, before end()', () => {
  const stream = createJsonRepairStream();
  assert.equal(stream.push('{"a": {"b": 1}'), '{"a":{"b":1}');
  assert.equal(stream.complete, false);
  assert.equal(stream.push('}'), '');
  assert.equal(stream.complete, true);
  assert.equal(stream.push('  '), '');
  assert.equal(stream.end(), '}');
  assert.equal(stream.end(), '');
  assert.equal(stream.push('more'), '');
});

test('long string content streams in runs, not character by character', () => {
  const content = 'x'.repeat(1_000_000);
  const stream = createJsonRepairStream();
  const out = stream.push(`{"content": "${content}`) + stream.push('"}') + stream.end();
  assert.equal((JSON.parse(out) as { content: string }).content.length, 1_000_000);
});

test('parseToolArguments accepts strings, objects and nothing', () => {
  assert.deepEqual(parseToolArguments('{"a": 1}'), { a: 1 });
  assert.deepEqual(parseToolArguments({ a: 1 }), { a: 1 });
  assert.deepEqual(parseToolArguments(undefined), {});
  assert.deepEqual(parseToolArguments(null), {});
  assert.deepEqual(parseToolArguments(''), {});
  assert.deepEqual(parseToolArguments("{'a': 1,}"), { a: 1 });
  assert.deepEqual(parseToolArguments('[1]'), { [RAW_ARGUMENTS_KEY]: '[1]' });
  assert.deepEqual(parseToolArguments(5), { [RAW_ARGUMENTS_KEY]: '5' });
  assert.deepEqual(parseToolArguments('"{\\"a\\":1}"'), { a: 1 }, 'encoded twice');
  assert.equal(parseToolArguments('"{\\"a\\""')[RAW_ARGUMENTS_KEY], '"{\\"a\\""');
});

test('parseToolArguments cuts deep objects from JSON.parse or the upstream', () => {
  let deep: Record<string, unknown> = {};
  const root = deep;
  for (let i = 0; i < 10_000; i++) {
    const next: Record<string, unknown> = {};
    deep.a = next;
    deep = next;
  }
  const fromObject = parseToolArguments(root);
  assert.ok(!nestsDeeperThan(fromObject, MAX_JSON_DEPTH + 1));
  const text = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
  const fromText = parseToolArguments(text);
  assert.ok(!nestsDeeperThan(fromText, MAX_JSON_DEPTH + 1));
  assert.equal(fromText[RAW_ARGUMENTS_KEY], text);
});

test('nestsDeeperThan counts objects and arrays iteratively', () => {
  assert.equal(nestsDeeperThan({ a: [{ b: 1 }] }, 3), false);
  assert.equal(nestsDeeperThan({ a: [{ b: {} }] }, 3), true);
  assert.equal(nestsDeeperThan('text', 0), false);
  let deep: unknown[] = [];
  const root = deep;
  for (let i = 0; i < 1_000_000; i++) {
    const next: unknown[] = [];
    deep.push(next);
    deep = next;
  }
  assert.equal(nestsDeeperThan(root, 100), true);
});

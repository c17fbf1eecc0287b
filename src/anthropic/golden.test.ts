/**
 * Golden files: translation inputs and the exact expected outputs, both directions.
 * `UPDATE_GOLDEN=1 npx tsx --test src/anthropic/golden.test.ts` rewrites the expected files;
 * review the diff before committing it.
 *
 * - golden/requests/<case>.anthropic.json -> <case>.openai.json (local model "qwen3:8b")
 * - golden/responses/<case>.openai.json -> <case>.anthropic.json
 * - golden/streams/<case>.chunks.json (OpenAI chunks) -> <case>.events.txt (exact SSE text)
 * Response and stream cases may add <case>.options.json (translator options).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseMessagesRequest, toChatCompletions } from './request.js';
import { fromChatCompletion } from './response.js';
import { createStreamTranslator, type StreamTranslatorOptions } from './stream.js';

const GOLDEN = fileURLToPath(new URL('./golden/', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const LOCAL_MODEL = 'qwen3:8b';

const DEFAULT_OPTIONS: StreamTranslatorOptions = {
  requestModel: 'claude-sonnet-4-5',
  thinking: false,
  messageId: 'msg_golden',
};

function cases(dir: string, suffix: string): string[] {
  return readdirSync(join(GOLDEN, dir))
    .filter((f) => f.endsWith(suffix))
    .map((f) => f.slice(0, -suffix.length))
    .sort();
}

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

function options(dir: string, name: string): StreamTranslatorOptions {
  const path = join(GOLDEN, dir, `${name}.options.json`);
  return existsSync(path)
    ? { ...DEFAULT_OPTIONS, ...(readJson(path) as Partial<StreamTranslatorOptions>) }
    : DEFAULT_OPTIONS;
}

function compareJson(path: string, actual: unknown) {
  if (UPDATE) writeFileSync(path, `${JSON.stringify(actual, null, 2)}\n`);
  assert.deepEqual(actual, readJson(path));
}

for (const name of cases('requests', '.anthropic.json')) {
  test(`golden request: ${name}`, () => {
    const input = readJson(join(GOLDEN, 'requests', `${name}.anthropic.json`));
    const actual = toChatCompletions(parseMessagesRequest(input), LOCAL_MODEL);
    compareJson(join(GOLDEN, 'requests', `${name}.openai.json`), actual);
  });
}

for (const name of cases('responses', '.openai.json')) {
  test(`golden response: ${name}`, () => {
    const input = readJson(join(GOLDEN, 'responses', `${name}.openai.json`));
    const actual = fromChatCompletion(input, options('responses', name));
    compareJson(join(GOLDEN, 'responses', `${name}.anthropic.json`), actual);
  });
}

/** Runs a chunk file through a translator; an `{"__error": "..."}` entry calls `error()`. */
function translateChunks(chunks: unknown[], opts: StreamTranslatorOptions): string {
  const translator = createStreamTranslator(opts);
  let text = translator.start().join('');
  for (const chunk of chunks) {
    const error = (chunk as { __error?: unknown }).__error;
    if (typeof error === 'string') text += translator.error(error).join('');
    else text += translator.push(chunk).join('');
  }
  return text + translator.finish().join('');
}

for (const name of cases('streams', '.chunks.json')) {
  test(`golden stream: ${name}`, () => {
    const chunks = readJson(join(GOLDEN, 'streams', `${name}.chunks.json`)) as unknown[];
    const actual = translateChunks(chunks, options('streams', name));
    const path = join(GOLDEN, 'streams', `${name}.events.txt`);
    if (UPDATE) writeFileSync(path, actual);
    assert.equal(actual, readFileSync(path, 'utf8'));
  });
}
